//! Directories of regular files that have not changed since berth listed them.
//!
//! A local origin's look walks every directory under `refs/` and `objects/` before each
//! lock operation (seven or so a landing), and a loose-object fan-out directory holds
//! only regular files that stay as they are: listing each of up to 256 again, or even
//! `statx`ing each, is most of a look. So berth watches every directory it lists (one
//! inotify instance for the process) and keeps the listing of one that held only regular
//! files: while no event has come for it, it is not listed again, and its entries are
//! charged to the look's budget as if listed.
//!
//! A kept listing is named by its parent's watch, the mount the walk reached the parent
//! through (one directory seen through a bind mount is another view: a mount over one of
//! its entries may be in one view only, review 50) and its name there, and is dropped by
//! any event after the moment (taken before the directory was opened from its parent)
//! it was made from: an entry added, removed or renamed in or out of it, its own
//! attributes changed (a `chmod` that closes it to berth), it deleted or unmounted; and
//! an entry of that name added, removed or renamed in its parent (another directory
//! renamed in its place). The kernel queues an event before the change's system call
//! returns, whoever made it, and each walk reads every event queued ([`Pass::begin`]):
//! a kept directory is judged as of the start of the walk that reaches it, as a fresh
//! listing is as of its own read. A change of the mount table seen by the walking thread
//! (a mount over a kept directory) drops every listing kept for its mount namespace,
//! and a full event queue drops them all. A watch is added through the descriptor the
//! walk holds (`/proc/self/fd/N`), never by a path resolved again.
//!
//! Only directories on the filesystems in [`KEEPS_ON`] are watched: on them every
//! change to a directory's entries is made here, by this kernel, through the VFS that
//! queues the events. A union filesystem (overlay) shows a lower layer's entries with no
//! event on the merged directory, and a network filesystem another client's: neither is
//! in [`KEEPS_ON`], and their directories are listed every time. Left outside: writes to
//! the block device under a mounted filesystem (root's doing). What a listing cannot see
//! (that, or a node planted after the look) the local-origin deadline covers, as for a
//! listing made afresh. When anything here cannot be had (no inotify instance, no
//! `/proc`, the watch budget spent) nothing is kept and every directory is listed.
//!
//! Only a process that asks keeps listings ([`keep_listings`]: `berth run`, whose looks
//! repeat for as long as it runs); a command that looks once or twice lists afresh and
//! spends none of the user's watches.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::Read as _;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use nix::sys::statfs::{EXT4_SUPER_MAGIC, FsType, TMPFS_MAGIC, XFS_SUPER_MAGIC, fstatfs};

/// The most listings kept; past it every kept listing is dropped (the next looks list
/// them again). A kept listing is about 80 bytes in a hash map of at most twice as many
/// slots: at most ~2.6 MB. A local origin has up to 256 loose-object directories (and as
/// many in each alternate): room for 64 such origins at once.
pub const MAX_SETTLED_DIRS: usize = 16_384;

/// The most directories watched at once, when the system's `fs.inotify.max_user_watches`
/// is at least eight times as many (else an eighth of it: the daemon's queue watcher, the
/// user's other programs and other berth daemons draw on the same budget). Past it every watch and kept
/// listing is dropped and watching starts afresh. Each watch holds its directory's inode
/// in the kernel's memory: about 1 KB, so at most ~16 MB of kernel memory.
pub const MAX_WATCHED_DIRS: usize = 16_384;

/// The filesystems on which every change to a directory's entries goes through this
/// kernel's VFS, which queues the inotify events: ext2/3/4 (one magic number), xfs,
/// tmpfs. A directory elsewhere (an overlay, a network filesystem) is listed at every
/// look.
const KEEPS_ON: [FsType; 3] = [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, TMPFS_MAGIC];

/// What a watched directory's events say: what would change a listing of it or a name
/// bound in it.
fn watched_events() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

/// A directory the walk has watched before listing it: its watch, in which instance, the
/// unique id of the mount the walk reached it through, and the event count just before
/// the walk opened it.
#[derive(Clone, Copy)]
pub(super) struct Watch {
    instance: u64,
    wd: WatchDescriptor,
    mount: u64,
    since: u64,
}

/// Whether this process keeps listings ([`keep_listings`]); always in unit tests.
static KEEPING: AtomicBool = AtomicBool::new(cfg!(test));

/// Makes this process keep the listings of directories that did not change between its
/// looks: for a process whose looks repeat (`berth run`).
pub fn keep_listings() {
    KEEPING.store(true, Ordering::Relaxed);
}

/// One walk's view: the mount namespace its thread sees, with every event read at its
/// start.
pub(super) struct Pass {
    namespace: u64,
}

/// A mount namespace and the unique id of a mount in it: how a walk saw a directory.
type View = (u64, u64);

/// A kept listing: the directory's watch, the event count its listing is as of, and how
/// many entries (all regular files) it held.
struct Kept {
    child: WatchDescriptor,
    since: u64,
    entries: usize,
}

/// The process's watches and what they have said.
struct Watcher {
    inotify: Inotify,
    /// Which instance this is: a watch descriptor names a directory only in its own.
    instance: u64,
    /// The watched directories, and the event count at their last event.
    dirs: HashMap<WatchDescriptor, u64>,
    /// Kept listings by parent's watch, name, and mount namespace and parent's mount.
    kept: HashMap<WatchDescriptor, HashMap<CString, Vec<(View, Kept)>>>,
    /// How many listings `kept` holds.
    kept_count: usize,
    /// Each mount namespace a walk ran in.
    namespaces: HashMap<u64, Namespace>,
    cap: usize,
}

/// Events read so far by any instance (the clock every [`Watch::since`] is on), the last
/// instance's number, and the instance, when one could be made.
struct State {
    events: u64,
    instances: u64,
    /// The event count below which nothing may be kept: the last reset.
    reset_at: u64,
    watcher: Option<Watcher>,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    Mutex::new(State {
        events: 0,
        instances: 0,
        reset_at: 0,
        watcher: None,
    })
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A mount namespace as the walks that ran in it saw it.
struct Namespace {
    /// Its `/proc/thread-self/mountinfo`, polled for changes of its mount table.
    mountinfo: File,
    /// The event count when its mount table last changed.
    changed: u64,
    /// Its mounts' ids as its `mountinfo` lists them, read at that change: a directory
    /// reached through a mount not among them (through `/proc/<pid>/root` into another
    /// namespace) is under a mount table this namespace's poll does not see, and nothing
    /// is kept of it (review 51).
    mounts: HashSet<u64>,
}

impl Namespace {
    /// The walking thread's mount namespace as it is now, its changes counted from
    /// `changed`; `None` without `/proc`.
    fn now(changed: u64) -> Option<Namespace> {
        let mountinfo = File::open("/proc/thread-self/mountinfo").ok()?;
        Some(Namespace {
            mounts: mount_ids(&mountinfo),
            mountinfo,
            changed,
        })
    }
}

/// The most bytes of a `mountinfo` read for its mount ids; past them none is taken, and
/// nothing is kept in that namespace (a host of tens of thousands of mounts).
const MAX_MOUNTINFO_BYTES: u64 = 4 << 20;

/// The mount ids (each line's first field) `mountinfo`, just opened, lists. Reading it
/// leaves its polling as it was: the kernel flags a change against the table as it was
/// when the file was opened.
fn mount_ids(mountinfo: &File) -> HashSet<u64> {
    let mut text = String::new();
    let read = mountinfo
        .take(MAX_MOUNTINFO_BYTES + 1)
        .read_to_string(&mut text);
    if read.is_err() || text.len() as u64 > MAX_MOUNTINFO_BYTES {
        return HashSet::new();
    }
    text.lines()
        .filter_map(|line| line.split(' ').next()?.parse().ok())
        .collect()
}

/// The most mount namespaces followed at once; past it every kept listing is dropped
/// with the namespaces (a test thread's own namespace, say, gone with the thread).
const MAX_NAMESPACES: usize = 64;

impl Pass {
    /// Reads every event queued so far and sees whether the walking thread's mount table
    /// changed; `None` when nothing can be kept for this walk.
    pub(super) fn begin() -> Option<Pass> {
        if !KEEPING.load(Ordering::Relaxed) {
            return None;
        }
        let namespace = std::fs::metadata("/proc/thread-self/ns/mnt").ok()?.ino();
        let mut state = state();
        if state.instances == 0 {
            state.start_watching();
        }
        state.catch_up();
        let State {
            events, watcher, ..
        } = &mut *state;
        let watcher = watcher.as_mut()?;
        match watcher.namespaces.get(&namespace) {
            Some(seen) if !mount_table_changed(&seen.mountinfo) => {}
            Some(_) => {
                *events += 1;
                watcher.forget_namespace(namespace);
                watcher.namespaces.remove(&namespace);
                watcher
                    .namespaces
                    .insert(namespace, Namespace::now(*events)?);
            }
            None => {
                if watcher.namespaces.len() >= MAX_NAMESPACES {
                    watcher.namespaces.clear();
                    watcher.forget_all();
                }
                *events += 1;
                watcher
                    .namespaces
                    .insert(namespace, Namespace::now(*events)?);
            }
        }
        Some(Pass { namespace })
    }

    /// The event count now: taken before a directory is opened from its parent, so any
    /// change after it drops what is kept of that directory.
    pub(super) fn now(&self) -> u64 {
        state().events
    }

    /// Watches the directory `dir` (opened, not yet listed) when it is on a filesystem in
    /// [`KEEPS_ON`]; `since` is [`Pass::now`] from before it was opened.
    pub(super) fn watch(&self, dir: &impl AsFd, since: u64) -> Option<Watch> {
        if !on_a_filesystem_kept(dir) {
            return None;
        }
        let mount = mount_id(dir, nix::libc::STATX_MNT_ID_UNIQUE)?;
        let listed_mount = mount_id(dir, nix::libc::STATX_MNT_ID)?;
        let path = format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd());
        let mut state = state();
        let reset = state
            .watcher
            .as_ref()
            .is_some_and(|w| w.dirs.len() >= w.cap);
        if reset {
            state.start_watching();
        }
        let watcher = state.watcher.as_mut()?;
        if !watcher
            .namespaces
            .get(&self.namespace)
            .is_some_and(|ns| ns.mounts.contains(&listed_mount))
        {
            return None;
        }
        let wd = watcher
            .inotify
            .add_watch(path.as_str(), watched_events())
            .ok()?;
        watcher.dirs.entry(wd).or_insert(0);
        Some(Watch {
            instance: watcher.instance,
            wd,
            mount,
            since,
        })
    }

    /// How many entries the directory `name` in the directory `parent` watches holds, all
    /// regular files, when its listing is kept and nothing changed it since; `None`: list
    /// it.
    pub(super) fn unchanged(&self, parent: &Watch, name: &CStr) -> Option<usize> {
        let state = state();
        let watcher = state.watcher.as_ref()?;
        if watcher.instance != parent.instance || !watcher.dirs.contains_key(&parent.wd) {
            return None;
        }
        let (_, kept) = watcher
            .kept
            .get(&parent.wd)?
            .get(name)?
            .iter()
            .find(|(view, _)| *view == (self.namespace, parent.mount))?;
        let child_changed = *watcher.dirs.get(&kept.child)?;
        let mounts_changed = watcher.namespaces.get(&self.namespace)?.changed;
        (child_changed <= kept.since && mounts_changed <= kept.since).then_some(kept.entries)
    }

    /// Keeps the listing of `dir` (`name` in the directory `parent` watches, watched as
    /// `own`): `entries` regular files and nothing else. Not kept when any event since
    /// `own.since` came for it or its parent, or watching was reset meanwhile.
    pub(super) fn remember(&self, parent: &Watch, name: &CStr, own: &Watch, entries: usize) {
        let mut state = state();
        let reset_at = state.reset_at;
        let Some(watcher) = state.watcher.as_mut() else {
            return;
        };
        let changed = |wd: &WatchDescriptor| watcher.dirs.get(wd).is_none_or(|at| *at > own.since);
        let current = watcher.instance == parent.instance && watcher.instance == own.instance;
        let mounts_changed = watcher
            .namespaces
            .get(&self.namespace)
            .is_none_or(|ns| ns.changed > own.since);
        if !current
            || own.since < reset_at
            || changed(&parent.wd)
            || changed(&own.wd)
            || mounts_changed
        {
            return;
        }
        if watcher.kept_count >= MAX_SETTLED_DIRS {
            watcher.forget_all();
        }
        let kept = Kept {
            child: own.wd,
            since: own.since,
            entries,
        };
        let under_name = watcher
            .kept
            .entry(parent.wd)
            .or_default()
            .entry(name.to_owned())
            .or_default();
        let view = (self.namespace, parent.mount);
        match under_name.iter_mut().find(|(seen_as, _)| *seen_as == view) {
            Some((_, was)) => *was = kept,
            None => {
                under_name.push((view, kept));
                watcher.kept_count += 1;
            }
        }
    }
}

impl State {
    /// A new instance in place of the last (its watches go with its descriptor), nothing
    /// kept; none when the system gives none.
    fn start_watching(&mut self) {
        self.instances += 1;
        self.events += 1;
        self.reset_at = self.events;
        let cap = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .map_or(0, |limit| (limit / 8).min(MAX_WATCHED_DIRS));
        self.watcher = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .filter(|_| cap > 0)
            .map(|inotify| Watcher {
                inotify,
                instance: self.instances,
                dirs: HashMap::new(),
                kept: HashMap::new(),
                kept_count: 0,
                namespaces: HashMap::new(),
                cap,
            });
    }

    /// Reads every queued event, each counted; an instance that cannot be read is
    /// replaced.
    fn catch_up(&mut self) {
        loop {
            let Some(watcher) = self.watcher.as_mut() else {
                return;
            };
            match watcher.inotify.read_events() {
                Ok(events) => {
                    for event in events {
                        self.events += 1;
                        watcher.note(&event, self.events);
                    }
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(_) => {
                    self.start_watching();
                    return;
                }
            }
        }
    }
}

impl Watcher {
    /// What `event`, the `at`th, changes: a full queue drops everything kept; any other
    /// event marks its directory changed at `at`, and one naming an entry drops the
    /// listing kept under that name.
    fn note(&mut self, event: &InotifyEvent, at: u64) {
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            self.forget_all();
            for changed in self.dirs.values_mut() {
                *changed = at;
            }
            return;
        }
        if event.mask.contains(AddWatchFlags::IN_IGNORED) {
            self.dirs.remove(&event.wd);
            if let Some(children) = self.kept.remove(&event.wd) {
                self.kept_count -= children.values().map(Vec::len).sum::<usize>();
            }
        } else if let Some(changed) = self.dirs.get_mut(&event.wd) {
            *changed = at;
        }
        let Some(name) = &event.name else {
            return;
        };
        let Ok(name) = CString::new(OsStr::as_bytes(name)) else {
            return;
        };
        if let Some(dropped) = self.kept.get_mut(&event.wd).and_then(|c| c.remove(&name)) {
            self.kept_count -= dropped.len();
        }
    }

    /// Drops every listing kept for the mount namespace `namespace`.
    fn forget_namespace(&mut self, namespace: u64) {
        for children in self.kept.values_mut() {
            for under_name in children.values_mut() {
                let before = under_name.len();
                under_name.retain(|((ns, _), _)| *ns != namespace);
                self.kept_count -= before - under_name.len();
            }
        }
    }

    fn forget_all(&mut self) {
        self.kept.clear();
        self.kept_count = 0;
    }
}

/// Whether the mount table `mountinfo` shows changed since it was last asked: the
/// kernel flags `POLLPRI` once for each change.
fn mount_table_changed(mountinfo: &File) -> bool {
    let mut fds = [PollFd::new(mountinfo.as_fd(), PollFlags::POLLPRI)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_none_or(|r| r.intersects(PollFlags::POLLPRI | PollFlags::POLLERR)),
        Err(_) => true,
    }
}

/// The id of the mount `dir` is seen through: `STATX_MNT_ID_UNIQUE` (Linux 6.8; never
/// reused) or `STATX_MNT_ID` (as `mountinfo` lists it); `None` when the kernel gives
/// none, and then nothing is kept.
fn mount_id(dir: &impl AsFd, which: u32) -> Option<u64> {
    let mut out = MaybeUninit::<nix::libc::statx>::zeroed();
    // SAFETY: an empty NUL-terminated name with AT_EMPTY_PATH names `dir` itself, and the
    // buffer is of the size statx fills.
    let done = unsafe {
        nix::libc::statx(
            dir.as_fd().as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH,
            which,
            out.as_mut_ptr(),
        )
    };
    // SAFETY: statx returned 0, so it filled the (zeroed) buffer.
    let stx = (done == 0).then(|| unsafe { out.assume_init() })?;
    (stx.stx_mask & which != 0).then_some(stx.stx_mnt_id)
}

/// Whether `dir` is on a filesystem in [`KEEPS_ON`].
fn on_a_filesystem_kept(dir: &impl AsFd) -> bool {
    fstatfs(dir).is_ok_and(|fs| KEEPS_ON.contains(&fs.filesystem_type()))
}

/// Whether the listing of the directory at `path` is kept, as it is now.
#[cfg(test)]
pub(super) fn kept(path: &std::path::Path) -> bool {
    let Some(pass) = Pass::begin() else {
        return false;
    };
    let Ok(parent) = std::fs::File::open(path.parent().unwrap_or(path)) else {
        return false;
    };
    let Some(watch) = pass.watch(&parent, pass.now()) else {
        return false;
    };
    let name = super::path_cstring(path.file_name().map_or(path, std::path::Path::new));
    pass.unchanged(&watch, &name).is_some()
}

/// Whether listings of directories on the filesystem holding `path` are kept at all.
#[cfg(test)]
pub(super) fn keeps_on(path: &std::path::Path) -> bool {
    let Ok(dir) = std::fs::File::open(path) else {
        return false;
    };
    let pass = Pass::begin();
    on_a_filesystem_kept(&dir) && pass.is_some_and(|p| p.watch(&dir, p.now()).is_some())
}
