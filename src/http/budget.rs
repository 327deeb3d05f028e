//! The memory of answers being written. A connection holds its answer's body until the
//! client has read it, or the write timeout ends the connection, so clients that ask and
//! then read slowly would hold connections × the largest answer (64 × 8 MiB of
//! `/api/queue`). The bodies held at once are kept within a budget: an answer past it is
//! dropped as soon as it is built and the client gets a 503 at once.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The bytes of answer bodies being written, and how many may be.
#[derive(Debug)]
pub struct AnswerBudget {
    limit: usize,
    held: AtomicUsize,
}

/// One answer's share of the budget, given back when dropped (written, or its connection
/// closed).
#[derive(Debug)]
pub struct Held<'b> {
    held: &'b AtomicUsize,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl AnswerBudget {
    pub fn new(limit: usize) -> AnswerBudget {
        AnswerBudget {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// The most bytes held at once (but for one answer alone).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A share of `bytes` for one answer, if it fits. While nothing else is held any answer
    /// fits, so one larger than the whole budget is still served, alone; an empty body
    /// (a `HEAD`) always fits.
    pub fn take(&self, bytes: usize) -> Option<Held<'_>> {
        let taken = self
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                let after = held.checked_add(bytes)?;
                (held == 0 || bytes == 0 || after <= self.limit).then_some(after)
            });
        taken.ok().map(|_| Held {
            held: &self.held,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_past_the_budget_are_refused_until_one_is_given_back() {
        let budget = AnswerBudget::new(10);
        let first = budget.take(6).unwrap();
        let second = budget.take(4).unwrap();
        assert!(budget.take(1).is_none(), "10 of 10 bytes are held");
        drop(first);
        assert!(budget.take(7).is_none(), "4 + 7 is past 10");
        let third = budget.take(6).unwrap();
        drop((second, third));
        let alone = budget
            .take(100)
            .expect("an answer larger than the budget, alone");
        assert!(budget.take(0).is_some() && budget.take(1).is_none());
        drop(alone);
        assert!(budget.take(10).is_some());
    }
}
