//! Time that counts a suspend: `CLOCK_BOOTTIME`.
//!
//! `Instant` (and tokio's timers) read `CLOCK_MONOTONIC`, which stops while the machine
//! sleeps. A lane lock's `expiresAt` is wall-clock time on the origin, so it runs on while
//! a laptop is suspended: a deadline measured on the monotonic clock would come too late by
//! the length of the suspend. `CLOCK_BOOTTIME` is monotonic too (a wall-clock step never
//! moves it) and also counts the time asleep.

use std::time::Duration;

use nix::libc;

/// A point on `CLOCK_BOOTTIME`: time since boot, suspends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BootTime(Duration);

impl BootTime {
    /// Now. Linux has `CLOCK_BOOTTIME` since 2.6.39; reading it cannot fail there.
    pub fn now() -> BootTime {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let read = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut ts) };
        assert_eq!(read, 0, "CLOCK_BOOTTIME cannot be read");
        BootTime(Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        ))
    }

    /// `self + d`, saturating.
    pub fn after(self, d: Duration) -> BootTime {
        BootTime(self.0.saturating_add(d))
    }

    /// `self - d`, saturating at boot.
    pub fn before(self, d: Duration) -> BootTime {
        BootTime(self.0.saturating_sub(d))
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: BootTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// The point `nanos` after boot ([`BootTime::as_nanos`]); a negative one is boot.
    pub fn from_nanos(nanos: i64) -> BootTime {
        BootTime(Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
    }

    /// Nanoseconds since boot, as the guard's pipe and `timerfd` carry them.
    pub fn as_nanos(self) -> i64 {
        i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX)
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`; empty when it cannot be read): a
/// [`BootTime`] kept past a reboot means nothing.
pub fn boot_id() -> &'static str {
    static ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_owned())
            .unwrap_or_default()
    });
    &ID
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_moves_forward_and_saturates() {
        let a = BootTime::now();
        let b = BootTime::now();
        assert!(b >= a);
        assert_eq!(a.before(Duration::MAX), BootTime(Duration::ZERO));
        assert_eq!(a.since(a.after(Duration::from_secs(1))), Duration::ZERO);
        assert_eq!(
            a.after(Duration::from_secs(2)).since(a),
            Duration::from_secs(2)
        );
        assert_eq!(BootTime(Duration::MAX).as_nanos(), i64::MAX);
    }
}
