//! Directories of regular files that have not changed since berth listed them.
//!
//! A local origin's look walks every directory under `refs/` and `objects/` before each
//! lock operation (seven or so a landing), and a loose-object fan-out directory holds
//! only regular files that stay as they are: listing each of up to 256 again is most of
//! a look. On the filesystems in [`KEEPS_ON`], a directory's change time moves whenever
//! an entry in it is added, removed or renamed over (a FIFO planted, a file replaced by
//! one), no writer without root can set it back, and no new directory can take an old
//! one's identity with its change time; so a directory found holding only
//! regular files, whose change time was already [`SETTLED_AGE`] old when that listing
//! began, is not listed again while one `statx` finds the same directory (mount, device,
//! inode) with the same change time: its entries are charged to the look's budget as if
//! listed. A directory that changed later than that is listed again every time (a change
//! in the same timestamp tick as the listing could leave its change time as it was).
//!
//! What the key leaves out is what those filesystems don't promise. A union filesystem
//! (overlay) shows a lower layer's entries under the upper directory's change time, a
//! network filesystem another client's under cached attributes, and on btrfs a snapshot
//! made by the directory's owner copies its source's change time into a subvolume whose
//! top is always inode 256 and whose device number is a deleted one's (review 43): none is
//! in [`KEEPS_ON`], and their directories are listed every time. A filesystem unmounted,
//! changed offline and mounted again keeps its device, inodes and change times, but is
//! another mount: the mount's unique id (`STATX_MNT_ID_UNIQUE`, Linux 6.8; on an older
//! kernel nothing is kept) is in the key, so everything on it is listed anew. A mount
//! over a directory, or another directory renamed in, is another key too. Left outside:
//! writes to the block device under a mounted filesystem, and a wall clock set back by
//! more than [`SETTLED_AGE`] while a listing runs (root's doing, both). A kept directory
//! is looked at when the walk reaches it, the moment a fresh one would be listed. What a
//! listing cannot see (those, a node planted after the look) the local-origin deadline
//! covers, as for a listing made afresh.

use std::collections::HashMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd as _};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use nix::libc;
use nix::sys::statfs::{EXT4_SUPER_MAGIC, FsType, TMPFS_MAGIC, XFS_SUPER_MAGIC, fstatfs};

/// How long before its listing began a directory's last change must be for the listing to
/// be kept: more than the coarsest change-time granularity of a filesystem in
/// [`KEEPS_ON`] (ext4 with 128-byte inodes: 1 s; the others stamp with the kernel's tick).
pub const SETTLED_AGE: Duration = Duration::from_secs(3);

/// The most directories kept; past it every kept listing is dropped (the next looks list
/// them again). A kept directory is 48 bytes in a hash map of at most twice as many slots:
/// at most ~1.6 MB. A local origin has up to 256 loose-object directories (and as many in
/// each alternate): room for 64 such origins at once.
pub const MAX_SETTLED_DIRS: usize = 16_384;

/// The filesystems whose directories' change time moves with every entry added, removed
/// or renamed in them, as any mount of them shows it, and where a directory's change time
/// is never copied to another: ext2/3/4 (one magic number), xfs, tmpfs. A directory
/// elsewhere (btrfs, whose snapshots copy it; an overlay; a network filesystem) is listed
/// at every look.
const KEEPS_ON: [FsType; 3] = [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, TMPFS_MAGIC];

/// A directory as `statx` sees it: which one (mount, device, inode), and its change time.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    key: Key,
    ctime: (i64, u32),
}

/// A directory's identity: the unique id of the mount it is seen through, its device and
/// inode.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    mount: u64,
    dev: (u32, u32),
    ino: u64,
}

impl Seen {
    /// `name` in `dir` (not followed), or `dir` itself for `c""`: `None` when it is no
    /// directory, or the kernel gives no unique mount id.
    fn of(dir: &impl AsFd, name: &CStr) -> Option<Seen> {
        let flags = libc::AT_SYMLINK_NOFOLLOW
            | if name.is_empty() {
                libc::AT_EMPTY_PATH
            } else {
                0
            };
        let wanted = libc::STATX_TYPE | libc::STATX_INO | libc::STATX_CTIME;
        let mut out = MaybeUninit::<libc::statx>::zeroed();
        // SAFETY: a NUL-terminated name and a buffer of the size statx fills.
        let done = unsafe {
            libc::statx(
                dir.as_fd().as_raw_fd(),
                name.as_ptr(),
                flags,
                wanted | libc::STATX_MNT_ID_UNIQUE,
                out.as_mut_ptr(),
            )
        };
        if done != 0 {
            return None;
        }
        // SAFETY: statx returned 0, so it filled the buffer (zeroed before).
        let stx = unsafe { out.assume_init() };
        let has = |mask: u32| stx.stx_mask & mask == mask;
        let is_dir = u32::from(stx.stx_mode) & libc::S_IFMT == libc::S_IFDIR;
        (has(wanted | libc::STATX_MNT_ID_UNIQUE) && is_dir).then_some(Seen {
            key: Key {
                mount: stx.stx_mnt_id,
                dev: (stx.stx_dev_major, stx.stx_dev_minor),
                ino: stx.stx_ino,
            },
            ctime: (stx.stx_ctime.tv_sec, stx.stx_ctime.tv_nsec),
        })
    }

    /// Whether the last change was [`SETTLED_AGE`] or more before `listed_at`.
    fn settled_before(&self, listed_at: SystemTime) -> bool {
        let Ok(since_epoch) = listed_at.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let Some(cutoff) = since_epoch.checked_sub(SETTLED_AGE) else {
            return false;
        };
        let Ok(secs) = i64::try_from(cutoff.as_secs()) else {
            return false;
        };
        self.ctime < (secs, cutoff.subsec_nanos())
    }
}

/// A kept listing: the directory's change time when listed, and how many entries (all
/// regular files) it held.
#[derive(Clone, Copy)]
struct Kept {
    ctime: (i64, u32),
    entries: usize,
}

static SETTLED: LazyLock<Mutex<HashMap<Key, Kept>>> = LazyLock::new(Default::default);

fn settled() -> std::sync::MutexGuard<'static, HashMap<Key, Kept>> {
    SETTLED.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many entries the directory `name` in `parent` holds, all regular files, when it is
/// the directory listed before and has not changed since; `None`: list it.
pub(super) fn unchanged(parent: &impl AsFd, name: &CStr) -> Option<usize> {
    let seen = Seen::of(parent, name)?;
    let kept = *settled().get(&seen.key)?;
    (kept.ctime == seen.ctime).then_some(kept.entries)
}

/// Keeps the listing of `dir` (opened, and read from `listed_at` on): `entries` regular
/// files and nothing else. Kept only on a filesystem in [`KEEPS_ON`] and when the
/// directory's last change was [`SETTLED_AGE`] before the listing began.
pub(super) fn remember(dir: &impl AsFd, entries: usize, listed_at: SystemTime) {
    let keeps = on_a_filesystem_kept(dir);
    let Some(seen) = Seen::of(dir, c"").filter(|seen| keeps && seen.settled_before(listed_at))
    else {
        return;
    };
    let mut kept = settled();
    if kept.len() >= MAX_SETTLED_DIRS {
        kept.clear();
    }
    kept.insert(
        seen.key,
        Kept {
            ctime: seen.ctime,
            entries,
        },
    );
}

/// Whether `dir` is on a filesystem in [`KEEPS_ON`].
fn on_a_filesystem_kept(dir: &impl AsFd) -> bool {
    fstatfs(dir).is_ok_and(|fs| KEEPS_ON.contains(&fs.filesystem_type()))
}

/// Whether the listing of the directory at `path` is kept, as it is now.
#[cfg(test)]
pub(super) fn kept(path: &std::path::Path) -> bool {
    let Ok(parent) = std::fs::File::open(path.parent().unwrap_or(path)) else {
        return false;
    };
    let name = super::path_cstring(path.file_name().map_or(path, std::path::Path::new));
    unchanged(&parent, &name).is_some()
}

/// Whether listings of directories on the filesystem holding `path` are kept at all.
#[cfg(test)]
pub(super) fn keeps_on(path: &std::path::Path) -> bool {
    let Ok(dir) = std::fs::File::open(path) else {
        return false;
    };
    on_a_filesystem_kept(&dir) && Seen::of(&dir, c"").is_some()
}
