//! The open connections, and which one a new connection past the cap closes.
//!
//! A connection waiting for a request head (idle, or sending one slowly) costs the server
//! nothing to close: the oldest such one gives its slot to the newcomer, so a flood of
//! connections that send nothing never locks out a scrape. A connection whose request is
//! being answered is never closed for a newcomer: its answer is already being built, and
//! closing it would let a flood that connects faster than `/metrics` renders throw away
//! every scrape. When every slot is answering, the newcomer queues for the first slot an
//! answer frees: a keep-alive connection whose answer ends gives its slot up then (a head it
//! already read from a pipelining client is dropped with it), because a client that
//! pipelines is never seen waiting and would otherwise hold its slot for all its requests.
//! At most a quarter as many newcomers as slots queue (each holds a descriptor); the next is
//! refused (a `503` it may retry).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// One open connection.
struct Slot {
    id: u64,
    /// Closes the connection's task.
    close: CancellationToken,
    /// Between requests (or before the first): no request head read yet.
    waiting: bool,
}

/// A newcomer queued for the next slot an answer frees.
struct Queued {
    slot: oneshot::Sender<Held>,
    /// What the slot's close token is a child of.
    parent: CancellationToken,
}

/// The open connections, oldest first, and the newcomers queued for one.
#[derive(Default)]
pub(super) struct Slots {
    next: u64,
    open: VecDeque<Slot>,
    queued: VecDeque<Queued>,
}

/// What a new connection gets.
pub(super) enum Admission {
    Now(Held),
    /// Every slot is answering: the slot the first to end frees (a newcomer that stops
    /// waiting drops this, and the slot goes to the next one queued).
    Queued(oneshot::Receiver<Held>),
    /// As many newcomers as may queue are queued already.
    Refused,
}

/// A connection's slot, given back when dropped.
pub(super) struct Held {
    slots: Arc<Mutex<Slots>>,
    id: u64,
    /// Cancelled when a newcomer takes the slot (or the server stops).
    pub close: CancellationToken,
}

/// How many newcomers may queue for a slot when `max` are open: one answer ending serves
/// one, so a few keep a scrape from a `503` while every slot answers.
pub(super) fn queued_max(max: usize) -> usize {
    (max / 4).max(1)
}

fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slots {
    /// A slot for a new connection (waiting for its first head). With all `max` taken, the
    /// oldest connection waiting for a head is closed for it; when every one is answering
    /// it queues (at most [`queued_max`] do) for the slot the first answer to end frees.
    pub(super) fn admit(
        slots: &Arc<Mutex<Slots>>,
        max: usize,
        parent: &CancellationToken,
    ) -> Admission {
        let mut open = lock(slots);
        while open.open.len() >= max {
            let Some(idle) = open.open.iter().position(|slot| slot.waiting) else {
                open.queued.retain(|queued| !queued.slot.is_closed());
                if open.queued.len() >= queued_max(max) {
                    return Admission::Refused;
                }
                let (slot, receiver) = oneshot::channel();
                let parent = parent.clone();
                open.queued.push_back(Queued { slot, parent });
                return Admission::Queued(receiver);
            };
            if let Some(slot) = open.open.remove(idle) {
                slot.close.cancel();
            }
        }
        Admission::Now(open.push(slots, parent))
    }

    /// Opens a slot, waiting for its first head.
    fn push(&mut self, slots: &Arc<Mutex<Slots>>, parent: &CancellationToken) -> Held {
        let id = self.next;
        self.next += 1;
        let close = parent.child_token();
        self.open.push_back(Slot {
            id,
            close: close.clone(),
            waiting: true,
        });
        Held {
            slots: Arc::clone(slots),
            id,
            close,
        }
    }
}

impl Held {
    /// Marks the connection as waiting for a request head (`true`) or answering one.
    pub(super) fn waiting(&self, waiting: bool) {
        if let Some(slot) = lock(&self.slots).open.iter_mut().find(|s| s.id == self.id) {
            slot.waiting = waiting;
        }
    }

    /// Whether a newcomer is queued for a slot: asked when an answer has ended, this
    /// connection then closes and its slot goes to the newcomer.
    pub(super) fn wanted(&self) -> bool {
        let mut open = lock(&self.slots);
        open.queued.retain(|queued| !queued.slot.is_closed());
        !open.queued.is_empty()
    }
}

impl Drop for Held {
    /// Gives the slot back, to the oldest newcomer still queued if any.
    fn drop(&mut self) {
        let mut open = lock(&self.slots);
        open.open.retain(|slot| slot.id != self.id);
        while let Some(queued) = open.queued.pop_front() {
            if queued.slot.is_closed() {
                continue;
            }
            let held = open.push(&self.slots, &queued.parent);
            drop(open);
            // A newcomer that stopped waiting just now drops the slot, and its drop hands
            // it on (the lock is released first).
            let _ = queued.slot.send(held);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(admission: Admission) -> Held {
        match admission {
            Admission::Now(held) => held,
            _ => panic!("no slot at once"),
        }
    }

    fn queued(admission: Admission) -> oneshot::Receiver<Held> {
        match admission {
            Admission::Queued(slot) => slot,
            _ => panic!("not queued"),
        }
    }

    #[test]
    fn past_the_cap_the_oldest_waiting_connection_goes_and_an_answering_one_stays() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let stop = CancellationToken::new();
        let answering = now(Slots::admit(&slots, 2, &stop));
        answering.waiting(false);
        let idle = now(Slots::admit(&slots, 2, &stop));
        let newcomer = now(Slots::admit(&slots, 2, &stop));
        assert!(idle.close.is_cancelled() && !answering.close.is_cancelled());
        newcomer.waiting(false);
        assert!(!answering.wanted(), "nobody queued yet");
        let mut gave_up = queued(Slots::admit(&slots, 2, &stop));
        assert!(
            matches!(Slots::admit(&slots, 2, &stop), Admission::Refused),
            "every slot answers and as many newcomers as may are queued: refused"
        );
        assert!(answering.wanted(), "an answer that ends gives its slot up");
        gave_up.close();
        assert!(
            !answering.wanted(),
            "the newcomer that gave up is not waited for"
        );
        let mut first = queued(Slots::admit(&slots, 2, &stop));
        assert!(first.try_recv().is_err(), "no slot freed yet");
        drop(answering);
        let first = first
            .try_recv()
            .expect("the freed slot goes to the first queued");
        assert!(!first.close.is_cancelled() && !newcomer.close.is_cancelled());
        assert_eq!(lock(&slots).open.len(), 2);
    }
}
