//! The open connections, and which one a new connection past the cap closes.
//!
//! A connection waiting for a request head (idle, or sending one slowly) costs the server
//! nothing to close: the oldest such one gives its slot to the newcomer, so a flood of
//! connections that send nothing never locks out a scrape. A connection whose request is
//! being answered is never closed for a newcomer: its answer is already being built, and
//! closing it would let a flood that connects faster than `/metrics` renders throw away
//! every scrape. When every slot is answering, the newcomer is refused instead (a `503` it
//! may retry); each answer ends within the handler's run and the write timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// One open connection.
struct Slot {
    id: u64,
    /// Closes the connection's task.
    close: CancellationToken,
    /// Between requests (or before the first): no request head read yet.
    waiting: bool,
}

/// The open connections, oldest first.
#[derive(Default)]
pub(super) struct Slots {
    next: u64,
    open: VecDeque<Slot>,
}

/// A connection's slot, given back when dropped.
pub(super) struct Held {
    slots: Arc<Mutex<Slots>>,
    id: u64,
    /// Cancelled when a newcomer takes the slot (or the server stops).
    pub close: CancellationToken,
}

fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slots {
    /// A slot for a new connection (waiting for its first head). With all `max` taken, the
    /// oldest connection waiting for a head is closed for it; `None` when every one is
    /// answering a request.
    pub(super) fn admit(
        slots: &Arc<Mutex<Slots>>,
        max: usize,
        parent: &CancellationToken,
    ) -> Option<Held> {
        let mut open = lock(slots);
        while open.open.len() >= max {
            let idle = open.open.iter().position(|slot| slot.waiting)?;
            if let Some(slot) = open.open.remove(idle) {
                slot.close.cancel();
            }
        }
        let id = open.next;
        open.next += 1;
        let close = parent.child_token();
        open.open.push_back(Slot {
            id,
            close: close.clone(),
            waiting: true,
        });
        Some(Held {
            slots: Arc::clone(slots),
            id,
            close,
        })
    }
}

impl Held {
    /// Marks the connection as waiting for a request head (`true`) or answering one.
    pub(super) fn waiting(&self, waiting: bool) {
        if let Some(slot) = lock(&self.slots).open.iter_mut().find(|s| s.id == self.id) {
            slot.waiting = waiting;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        lock(&self.slots).open.retain(|slot| slot.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_the_oldest_waiting_connection_goes_and_an_answering_one_stays() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let stop = CancellationToken::new();
        let answering = Slots::admit(&slots, 2, &stop).unwrap();
        answering.waiting(false);
        let idle = Slots::admit(&slots, 2, &stop).unwrap();
        let newcomer = Slots::admit(&slots, 2, &stop).unwrap();
        assert!(idle.close.is_cancelled() && !answering.close.is_cancelled());
        newcomer.waiting(false);
        assert!(
            Slots::admit(&slots, 2, &stop).is_none(),
            "every slot answers: refused"
        );
        drop(answering);
        assert!(
            Slots::admit(&slots, 2, &stop).is_some(),
            "a slot given back"
        );
    }
}
