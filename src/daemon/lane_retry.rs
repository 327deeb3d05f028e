//! Lanes left alone for a while: one whose lane lock another owner holds, whose record
//! went back for a transient reason (forge or lock error), or whose landing task failed.
//! Each such lane is tried again on its own exponential backoff with jitter, from
//! [`FIRST_DELAY`] up to the poll interval, so a lock released 250 ms later is taken
//! within about that, not at the next poll; a lane that reaches a verdict again starts
//! over from the shortest delay.

use std::collections::HashMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

/// The first retry's delay (before jitter, which adds up to as much again).
pub const FIRST_DELAY: Duration = Duration::from_millis(100);

/// The lanes waiting for their next try, keyed by lock ref.
pub struct LaneRetry {
    waiting: HashMap<String, Waiting>,
    longest: Duration,
}

struct Waiting {
    due: Instant,
    delays: ExponentialBackoff,
}

impl LaneRetry {
    /// Delays double from [`FIRST_DELAY`] up to `longest` (the poll interval).
    pub fn new(longest: Duration) -> LaneRetry {
        LaneRetry {
            waiting: HashMap::new(),
            longest: longest.max(FIRST_DELAY),
        }
    }

    /// The lane could not land now: leave it alone for its next delay.
    pub fn defer(&mut self, lane: String, now: Instant) {
        let longest = self.longest;
        let entry = self.waiting.entry(lane).or_insert_with(|| Waiting {
            due: now,
            delays: ExponentialBuilder::default()
                .with_min_delay(FIRST_DELAY)
                .with_max_delay(longest)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build(),
        });
        // Jitter can push a delay past the longest one; never past it.
        let delay = entry.delays.next().unwrap_or(longest).min(longest);
        entry.due = now + delay;
    }

    /// The lane reached a verdict: its next trouble starts from the shortest delay.
    pub fn forget(&mut self, lane: &str) {
        self.waiting.remove(lane);
    }

    /// The lanes whose next try has not come yet.
    pub fn not_yet(&self, now: Instant) -> impl Iterator<Item = &String> {
        self.waiting
            .iter()
            .filter(move |(_, w)| w.due > now)
            .map(|(lane, _)| lane)
    }

    /// The earliest time a waiting lane may be tried again, if one still waits.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.waiting
            .values()
            .map(|w| w.due)
            .filter(|&due| due > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_lane_waits_longer_each_time_up_to_the_longest_delay() {
        let now = Instant::now();
        let longest = Duration::from_secs(2);
        let mut retry = LaneRetry::new(longest);
        let mut waits = Vec::new();
        for _ in 0..8 {
            retry.defer("lane".into(), now);
            waits.push(retry.next_due(now).unwrap() - now);
        }
        assert!(
            waits[0] >= FIRST_DELAY && waits[0] <= 2 * FIRST_DELAY,
            "{waits:?}"
        );
        assert!(waits.iter().all(|w| *w <= longest), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), longest, "{waits:?}");
        assert_eq!(retry.not_yet(now).count(), 1);
        assert_eq!(
            retry.not_yet(now + longest).count(),
            0,
            "due at the latest then"
        );
        assert_eq!(retry.next_due(now + longest), None);
    }

    #[test]
    fn a_lane_that_reached_a_verdict_starts_over_from_the_shortest_delay() {
        let now = Instant::now();
        let mut retry = LaneRetry::new(Duration::from_secs(30));
        for _ in 0..6 {
            retry.defer("lane".into(), now);
        }
        retry.forget("lane");
        assert_eq!(retry.next_due(now), None);
        retry.defer("lane".into(), now);
        assert!(retry.next_due(now).unwrap() - now <= 2 * FIRST_DELAY);
    }
}
