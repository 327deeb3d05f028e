//! The order the landing policy last put the queued records in, as the daemon's tick asked
//! it (`order`), published for the queue page: the page shows the daemon's answer, never a
//! second one. Empty until a tick with queued records ran.

use std::sync::{Mutex, PoisonError};

#[derive(Debug, Default)]
pub struct QueueOrder {
    ids: Mutex<Vec<String>>,
}

impl QueueOrder {
    /// The tick's answer: record ids, first to land first.
    pub fn publish(&self, ids: Vec<String>) {
        *self.ids.lock().unwrap_or_else(PoisonError::into_inner) = ids;
    }

    pub fn get(&self) -> Vec<String> {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
