//! The records this process is landing right now, each with the copy it claimed. The tick
//! tells this daemon's real landings from a record planted in its name by it, and a signal
//! revives a record whose file vanished mid-landing from this copy (gstack test 44).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::gates::Identity;
use crate::record::Record;

#[derive(Debug, Default)]
pub struct Active {
    landing: Mutex<HashMap<String, Claimed>>,
}

/// A record as claimed, with the repo identity its lane was gated with: a legacy record
/// (no `repoIdentity`) is filed under its origin's identity, which the copy alone cannot
/// tell.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub record: Record,
    pub identity: Identity,
}

impl Active {
    /// Whether this process is landing `id` right now.
    pub fn holds(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }

    /// The copy of `id` this process claimed, if it is landing it.
    pub fn copy_of(&self, id: &str) -> Option<Claimed> {
        self.map().get(id).cloned()
    }

    /// Registers a landing until the returned guard drops (on every path out of it).
    pub fn register(&self, id: &str, record: Record, identity: &Identity) -> Registered<'_> {
        let identity = identity.clone();
        self.map()
            .insert(id.to_owned(), Claimed { record, identity });
        Registered {
            active: self,
            id: id.to_owned(),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Claimed>> {
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
