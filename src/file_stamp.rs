//! What identifies a file's content on disk without reading it: device, inode, size, and
//! mtime and ctime to the nanosecond. The queue view, the learned patterns and the fault
//! watch's state files are each re-read only when the stamp of what is at the path moved.
//!
//! A stamp read within [`RACY_NS`] of the file's last change is not trusted (the kernel's
//! timestamps are coarse, so a second write in the same few milliseconds could leave every
//! field equal): a caller reads such a file again next time. The change is dated by the
//! ctime, which only the kernel sets (a producer can put its mtime anywhere, a year ahead
//! included, and is then judged by its ctime alone). A ctime the wall clock cannot place
//! (ahead of it: a clock stepped back, a file server's clock ahead of this host's) is judged
//! by berth's own monotonic clock instead: a stamp berth saw [`RACY_NS`] before the read
//! began was already there then, so the read began after its writes' timestamp granule.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// How close to its read a file's ctime may be before its stamp stops proving anything.
pub const RACY_NS: i128 = 100_000_000;
const RACY: Duration = Duration::from_nanos(RACY_NS as u64);

/// What identifies a file's content on disk without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }

    /// The stamp of what a `stat` without opening the file saw (a name berth refused to
    /// open, or could not).
    pub fn of_stat(st: &nix::sys::stat::FileStat) -> FileStamp {
        FileStamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
        }
    }

    /// Whether, read at wall-clock `now_ns`, the file changed too recently for this stamp
    /// to prove its content ([`RACY_NS`]). A future mtime dates nothing; a future ctime
    /// cannot be placed, so it is racy here ([`ReadStart::judge`] then asks the monotonic
    /// clock).
    fn is_racy_at(&self, now_ns: i128) -> bool {
        let changed = if self.mtime_ns <= now_ns {
            self.ctime_ns.max(self.mtime_ns)
        } else {
            self.ctime_ns
        };
        now_ns - changed < RACY_NS
    }
}

/// A stamp, and when berth (by its monotonic clock) first saw the file at a path carry it.
#[derive(Clone, Copy, Debug)]
pub struct Sighting {
    pub stamp: FileStamp,
    since: Instant,
}

/// Both clocks just before a read opens a file: what [`ReadStart::judge`] dates it by.
#[derive(Clone, Copy, Debug)]
pub struct ReadStart {
    wall_ns: i128,
    at: Instant,
}

impl ReadStart {
    pub fn now() -> ReadStart {
        ReadStart {
            wall_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0),
            at: Instant::now(),
        }
    }

    /// After the read: the sighting of `stamp` (the stamp of the file the read opened),
    /// carrying forward `last` (this path's previous sighting) when the stamp is the same,
    /// and whether the stamp is racy, so that the content read must be read again.
    pub fn judge(&self, stamp: FileStamp, last: Option<&Sighting>) -> (Sighting, bool) {
        let since = last
            .filter(|last| last.stamp == stamp)
            .map_or_else(Instant::now, |last| last.since);
        let seen_long_enough = self.at.checked_duration_since(since) >= Some(RACY);
        let racy = stamp.is_racy_at(self.wall_ns) && !seen_long_enough;
        (Sighting { stamp, since }, racy)
    }
}

/// Test support: lets every stamp taken now age past the racy window (a stamp that young
/// proves nothing, so what it stamps is read again).
#[cfg(test)]
pub(crate) fn age_past_racy_window() {
    std::thread::sleep(RACY + Duration::from_millis(20));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime_ns: i128, ctime_ns: i128) -> FileStamp {
        FileStamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns,
            ctime_ns,
        }
    }

    #[test]
    fn racy_is_dated_by_the_ctime_and_a_past_mtime_only() {
        let now = 1_000 * 1_000_000_000;
        assert!(stamp(now - 1_000_000_000, now - 1_000).is_racy_at(now));
        assert!(stamp(now - 1_000, now - 1_000_000_000).is_racy_at(now));
        assert!(!stamp(now - 1_000_000_000, now - 1_000_000_000).is_racy_at(now));
        // An mtime a year ahead says nothing about when the file changed.
        assert!(!stamp(now + 365 * 86_400 * 1_000_000_000, now - 1_000_000_000).is_racy_at(now));
        // A ctime ahead of the clock cannot be placed.
        assert!(stamp(now - 1_000_000_000, now + 60 * 1_000_000_000).is_racy_at(now));
    }

    #[test]
    fn a_stamp_the_clock_cannot_place_is_trusted_once_seen_long_enough_before_a_read() {
        let future = stamp(0, i128::MAX / 2);
        let first = ReadStart::now();
        let (seen, racy) = first.judge(future, None);
        assert!(racy, "first sight");
        let (again, racy) = ReadStart::now().judge(future, Some(&seen));
        assert!(racy, "seen for less than the racy window");
        std::thread::sleep(RACY + Duration::from_millis(10));
        let (_, racy) = ReadStart::now().judge(future, Some(&again));
        assert!(
            !racy,
            "seen unchanged for the racy window before this read began"
        );
        // Another stamp at the path starts over.
        let moved = stamp(0, i128::MAX / 3);
        assert!(ReadStart::now().judge(moved, Some(&again)).1);
    }
}
