//! The calls a forge has running, so that a stopping daemon ends them before it exits:
//! nothing berth starts outlives it (docs/security.md). A call counts as running from
//! before its process starts until that process is reaped. [`InFlight::stop`] refuses new
//! calls; each running one sees it within one look of its wait loop, kills its process
//! group and reaps it, and `stop` returns once none runs.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct InFlight {
    state: Mutex<State>,
    ended: Condvar,
}

#[derive(Debug, Default)]
struct State {
    stopping: bool,
    running: usize,
}

/// One running call; it stops counting when dropped.
pub struct Running<'a>(&'a InFlight);

impl InFlight {
    /// Counts a call as running until the returned guard drops; `None` once stopping (the
    /// call must not start).
    pub fn start(&self) -> Option<Running<'_>> {
        let mut state = self.lock();
        if state.stopping {
            return None;
        }
        state.running += 1;
        Some(Running(self))
    }

    /// Whether the running calls must end now.
    pub fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Refuses new calls and waits up to `within` for the running ones to end; whether none
    /// runs any more.
    pub fn stop(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut state = self.lock();
        state.stopping = true;
        while state.running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .ended
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        self.0.ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_refuses_new_calls_and_waits_only_for_running_ones() {
        let in_flight = std::sync::Arc::new(InFlight::default());
        let running = in_flight.start().unwrap();
        assert!(!in_flight.stop(Duration::from_millis(20)), "one still runs");
        assert!(in_flight.stopping());
        assert!(in_flight.start().is_none(), "no call starts once stopping");
        let waiter = {
            let in_flight = std::sync::Arc::clone(&in_flight);
            std::thread::spawn(move || in_flight.stop(Duration::from_secs(60)))
        };
        drop(running);
        assert!(waiter.join().unwrap());
    }
}
