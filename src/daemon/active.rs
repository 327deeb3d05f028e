//! The records this process is landing right now, each with the copy it claimed. The tick
//! tells this daemon's real landings from a record planted in its name by it, and a signal
//! revives a record whose file vanished mid-landing from this copy (gstack test 44).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::record::Record;

#[derive(Debug, Default)]
pub struct Active {
    landing: Mutex<HashMap<String, Record>>,
}

impl Active {
    /// Whether this process is landing `id` right now.
    pub fn holds(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }

    /// The copy of `id` this process claimed, if it is landing it.
    pub fn copy_of(&self, id: &str) -> Option<Record> {
        self.map().get(id).cloned()
    }

    /// Registers a landing until the returned guard drops (on every path out of it).
    pub fn register(&self, id: &str, record: Record) -> Registered<'_> {
        self.map().insert(id.to_owned(), record);
        Registered {
            active: self,
            id: id.to_owned(),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        self.landing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A landing's registration in [`Active`], removed when it drops.
pub struct Registered<'a> {
    active: &'a Active,
    id: String,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.active.map().remove(&self.id);
    }
}
