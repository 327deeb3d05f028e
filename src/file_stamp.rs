//! What identifies a file's content on disk without reading it: device, inode, size, and
//! mtime and ctime to the nanosecond. The queue view, the learned patterns and the fault
//! watch's state files are each re-read only when the stamp of what is at the path moved.
//!
//! A stamp taken within [`RACY_NS`] of the read is not trusted (the kernel's timestamps are
//! coarse, so a second write in the same few milliseconds could leave every field equal):
//! a caller reads such a file again next time, once its stamp has aged.

use std::os::unix::fs::MetadataExt;

/// How close to its read a file's ctime may be before its stamp stops proving anything.
pub const RACY_NS: i128 = 100_000_000;

/// What identifies a file's content on disk without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

    /// Whether the file changed so recently that a later write could leave this stamp as
    /// it is ([`RACY_NS`]).
    pub fn is_racy(&self) -> bool {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        now_ns - self.ctime_ns.max(self.mtime_ns) < RACY_NS
    }
}
