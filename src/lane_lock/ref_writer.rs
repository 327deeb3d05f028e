//! A local origin's lock ref is written by a short-lived `git update-ref` in a session of
//! its own, never by berth's process.
//!
//! Whoever writes a ref holds its `<ref>.lock` file from the exclusive create to the
//! rename over the ref, and berth's writers also hold the writers' lock
//! ([`super::leftover::WRITERS_LOCK`]) around that. Written from the daemon's own process,
//! a daemon stopped inside that window (Ctrl-Z, SIGSTOP, a debugger) would hold both for as
//! long as it stays stopped: no other writer could write the ref, and none may remove the
//! `.lock` file (continued, the stopped writer renames whatever `<ref>.lock` then is over
//! the ref, another writer's fresh one included). So berth forks a child that leaves
//! berth's session and process group (a terminal's Ctrl-Z and a signal to berth's group
//! miss it), arms an alarm of [`WRITE_LIMIT`] (kept across exec: past it the kernel ends
//! the child whatever berth does), takes the writers' lock (waiting at most
//! [`WRITERS_WAIT`]), removes the one leftover berth judged dead (if it is still that
//! file), and execs `git update-ref`, which compares the old value under the `.lock` file
//! and renames. The child runs for milliseconds; one still running [`TERM_LEAD`] before
//! its alarm is sent SIGTERM by berth (git removes its `.lock` files on it, where the
//! alarm's SIGALRM and a SIGKILL leave them), and SIGKILLed [`WRITE_GRACE`] past
//! [`WRITE_LIMIT`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git2::Oid;
use nix::libc;

use super::leftover::{FileId, LockFile, Prepared};
use super::origin_owner as owner;
use super::trail::{Moved, Trail};

mod stop;

/// How long a writer child may live. Shorter than [`super::LEFTOVER_AGE`], so a berth
/// writer's `.lock` file is gone (renamed, or its writer killed) before anyone may take it
/// for a dead writer's.
pub const WRITE_LIMIT: Duration = Duration::from_secs(8);

/// How long berth waits past [`WRITE_LIMIT`] before it SIGKILLs a writer child still there
/// (a stopped child takes its alarm only when continued).
const WRITE_GRACE: Duration = Duration::from_secs(1);

/// How long before [`WRITE_LIMIT`] (from its spawn) berth sends a writer child still
/// running SIGTERM. git removes every `.lock` file it holds on SIGTERM, and on no signal
/// the alarm or berth's kill sends: a writer hung appending to `logs/HEAD` (a FIFO there,
/// `HEAD` naming the lock ref) would leave `HEAD.lock`, which berth judges as no ref's
/// leftover, and every later write of the lane would fail on it.
const TERM_LEAD: Duration = Duration::from_secs(1);

/// The longest a writer child runs from its spawn to its reaping: berth kills it then.
pub(super) const WRITER_BOUND: Duration = WRITE_LIMIT.saturating_add(WRITE_GRACE);

/// How long one write of a ref on a local origin may take, given its reads' deadline: its
/// git children (the objects' unpack, the ref's update) have bounds of their own on top.
pub(super) const fn local_write_deadline(reads: Duration) -> Duration {
    reads.saturating_add(WRITER_BOUND.saturating_mul(2))
}

/// How long a writer child waits for the writers' lock before it writes without it.
pub const WRITERS_WAIT: Duration = Duration::from_secs(5);

/// How often the child retries the writers' lock, and how often berth looks at the child
/// where it cannot be told of its exit.
const RETRY: Duration = Duration::from_millis(2);

/// The most of the child's error output kept for the message.
const STDERR_CAP: u64 = 4096;

/// One-byte reports the child writes before it execs `git`.
const REPORT_BUSY: u8 = b'b';
const REPORT_UNOPENED: u8 = b'u';
const REPORT_REMOVED: u8 = b'r';
/// Followed by one byte: the step of the ref's path found changed ([`Moved`]).
const REPORT_MOVED: u8 = b'm';
/// The git dir's `commondir` names another directory ([`Trail::commondir_is_own`]).
const REPORT_COMMONDIR: u8 = b'c';

/// The most report bytes read: one for the writers' lock, one for a removal, two for a
/// changed path.
const REPORTS_CAP: usize = 8;

/// The ref's new state.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change {
    /// Point it at `new` if it holds `old` (the zero id: only if it is absent).
    Set { new: Oid, old: Oid },
    /// Delete it if it holds `old`.
    Delete { old: Oid },
}

/// How the writers' lock went for the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writers {
    Held,
    /// Another process held it past [`WRITERS_WAIT`]: written without it.
    Busy,
    /// It could not be opened: written without it.
    Unopened,
}

/// What one writer child did.
#[derive(Debug)]
pub(super) struct Written {
    /// `git update-ref` succeeded: the ref moved.
    pub applied: bool,
    /// `git`'s error output (or why the child ended), when it did not.
    pub said: String,
    pub writers: Writers,
    /// The judged leftover `.lock` file was removed first.
    pub removed_leftover: bool,
    /// The child found this step of the ref's path changed since berth walked it, and
    /// wrote nothing.
    pub moved: Option<Moved>,
    /// The git dir's `commondir` named another directory right before the write
    /// ([`Trail::commondir_is_own`]): nothing was written.
    pub commondir_planted: bool,
}

/// Runs one writer child for `ref_name` in the bare repository `prepared` opened, through
/// the path `trail` recorded.
pub(super) fn write(
    prepared: &Prepared,
    trail: &Trail,
    ref_name: &str,
    change: Change,
) -> io::Result<Written> {
    let (report_read, report_write) = report_pipe()?;
    let mut command = git_update_ref(&prepared.git_dir, ref_name, change);
    if let Some(owner) = owner::of(&prepared.git_dir_fd) {
        owner.take_over(&prepared.git_dir_fd, &prepared.git_dir, ref_name);
        owner.apply(&mut command);
    }
    let git_dir = prepared.git_dir_fd.as_raw_fd();
    let before_exec = BeforeExec {
        writers_lock: c_path(&prepared.writers_lock)?,
        leftovers: prepared
            .locks
            .iter()
            .map(|lock| Leftover::of(git_dir, lock))
            .collect::<io::Result<_>>()?,
        trail: trail.clone(),
        report: report_write.as_raw_fd(),
    };
    // SAFETY: `BeforeExec::run` makes only async-signal-safe system calls and allocates
    // nothing (its paths were made here, before the fork); the directories it clears in
    // are `prepared`'s descriptors, open (close-on-exec) until the child has exited.
    unsafe {
        command.pre_exec(move || before_exec.run());
    }
    let started = Instant::now();
    let spawned = command.spawn();
    drop(report_write);
    let reports = || read_reports(&report_read);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            // The child refused to exec `git` when the path moved or a `commondir` names
            // another directory; anything else is a failure to run it.
            let reports = reports();
            let refused = written(&reports, false, String::new(), true);
            return match (refused.moved, refused.commondir_planted) {
                (None, false) => Err(e),
                _ => Ok(refused),
            };
        }
    };
    let (applied, said) = finish(&mut child, started, "git update-ref")?;
    Ok(written(&reports(), applied, said, false))
}

/// Waits for a `git` child (`what` it runs, for the message) spawned at `started`: past
/// [`WRITE_LIMIT`] less [`TERM_LEAD`] it is sent SIGTERM, past [`WRITER_BOUND`] SIGKILL.
/// Whether it succeeded, and else what it said (or why it ended).
pub(super) fn finish(
    child: &mut std::process::Child,
    started: Instant,
    what: &str,
) -> io::Result<(bool, String)> {
    let kill_at = started + WRITER_BOUND;
    let status = stop::wait_within(child, started + (WRITE_LIMIT - TERM_LEAD), kill_at)?;
    let mut said = child
        .stderr
        .take()
        .map(|stderr| stop::read_within(stderr, STDERR_CAP, kill_at))
        .unwrap_or_default();
    let applied = status.is_some_and(|status| status.success());
    if status.is_none() {
        said = format!(
            "the writer ({what}) ran past {} s and was stopped (SIGTERM, then SIGKILL past {} s)",
            (WRITE_LIMIT - TERM_LEAD).as_secs(),
            WRITER_BOUND.as_secs()
        );
    } else if !applied && said.trim().is_empty() {
        said = format!("{what} ended with {}", status.unwrap_or_default());
    }
    Ok((applied, said))
}

/// What the child reported; `refused`: it ran no `git` (a changed step or `commondir`).
fn written(reports: &[u8], applied: bool, said: String, refused: bool) -> Written {
    let moved = refused.then(|| moved_in(reports)).flatten();
    let writers = if reports.contains(&REPORT_BUSY) {
        Writers::Busy
    } else if reports.contains(&REPORT_UNOPENED) {
        Writers::Unopened
    } else {
        Writers::Held
    };
    Written {
        applied,
        said: said.trim().to_owned(),
        writers,
        removed_leftover: reports.contains(&REPORT_REMOVED),
        moved,
        commondir_planted: refused && moved.is_none() && reports.contains(&REPORT_COMMONDIR),
    }
}

/// The step the child reported changed, if it did.
fn moved_in(reports: &[u8]) -> Option<Moved> {
    let at = reports.iter().position(|byte| *byte == REPORT_MOVED)?;
    reports.get(at + 1).map(|step| Moved(usize::from(*step)))
}

/// `git update-ref` with no hooks, no deref of a symbolic ref, no `GIT_*` variables of
/// berth's environment, and messages in English.
fn git_update_ref(git_dir: &Path, ref_name: &str, change: Change) -> Command {
    let mut command = git_in(git_dir);
    command.args(["update-ref", "--no-deref", "-m", "berth lane lock"]);
    match change {
        Change::Set { new, old } => command.args([ref_name, &new.to_string(), &old.to_string()]),
        Change::Delete { old } => command.args(["-d", ref_name, &old.to_string()]),
    };
    command.stdin(Stdio::null());
    command
}

/// `git --git-dir <git_dir>` with no hooks, no `GIT_*` variables of berth's environment
/// but `GIT_COMMON_DIR=<git_dir>`, messages in English, no output but its error output
/// (piped); its subcommand and stdin are the caller's. git reads a `commondir` file again
/// at exec, after berth looked; the variable takes precedence over it for the objects and
/// config git uses (`git unpack-objects` writes where berth looked), though not for git's
/// ref store, which the writer child guards itself ([`Trail::commondir_is_own`]).
pub(super) fn git_in(git_dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-c")
        .arg("core.hooksPath=/dev/null")
        .arg("--git-dir")
        .arg(git_dir);
    for (name, _) in std::env::vars_os() {
        if name.as_bytes().starts_with(b"GIT_") {
            command.env_remove(name);
        }
    }
    command
        .env("GIT_COMMON_DIR", git_dir)
        .env("LC_ALL", "C")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A close-on-exec, non-blocking pipe: `git` never inherits its write end.
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just opened both, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn read_reports(read_end: &OwnedFd) -> Vec<u8> {
    let mut bytes = [0u8; REPORTS_CAP];
    // SAFETY: `bytes` is a valid buffer of its length.
    let n = unsafe { libc::read(read_end.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
    bytes[..usize::try_from(n).unwrap_or(0)].to_vec()
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// A `.lock` the child clears, by its name in its directory opened without following a
/// symlink ([`super::lock_dir`]), if it still holds the node judged a leftover.
struct Leftover {
    /// Its directory's descriptor; -1: none (nothing is cleared).
    dir: libc::c_int,
    name: CString,
    judged: Option<FileId>,
    /// The git dir's descriptor, where a judged directory is moved under `aside`
    /// ([`FileId::aside_in`]).
    git_dir: libc::c_int,
    aside: CString,
}

impl Leftover {
    fn of(git_dir: libc::c_int, lock: &LockFile) -> io::Result<Leftover> {
        let judged = lock.leftover.map(|judged| judged.file);
        let aside = judged.map_or_else(String::new, |file| file.aside_name());
        Ok(Leftover {
            dir: lock.dir.as_ref().map_or(-1, AsRawFd::as_raw_fd),
            name: lock.name.clone(),
            judged,
            git_dir,
            aside: CString::new(aside)?,
        })
    }

    /// Async-signal-safe: a symlink or file is unlinked, a directory renamed aside (never
    /// over an existing one), and only while its name still holds the judged node.
    fn clear(&self) -> bool {
        let Some(judged) = self.judged else {
            return false;
        };
        if self.dir < 0 || FileId::at(self.dir, &self.name) != Some(judged) {
            return false;
        }
        // SAFETY: plain system calls on open descriptors and NUL-terminated names.
        unsafe {
            if judged.is_dir() {
                libc::renameat2(
                    self.dir,
                    self.name.as_ptr(),
                    self.git_dir,
                    self.aside.as_ptr(),
                    libc::RENAME_NOREPLACE,
                ) == 0
            } else {
                libc::unlinkat(self.dir, self.name.as_ptr(), 0) == 0
            }
        }
    }
}

/// What the child does between fork and exec.
struct BeforeExec {
    writers_lock: CString,
    /// `.lock` files judged dead writers' or planted.
    leftovers: Vec<Leftover>,
    /// The ref's path as berth walked it, walked again right before `git` runs.
    trail: Trail,
    report: libc::c_int,
}

impl BeforeExec {
    /// Only async-signal-safe calls, no allocation: this runs in the child of a
    /// multi-threaded process. `Err` (the path moved): `git` is not run.
    fn run(&self) -> io::Result<()> {
        // SAFETY: plain system calls with no arguments.
        unsafe {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            libc::alarm(WRITE_LIMIT.as_secs() as libc::c_uint);
        }
        if self.take_writers_lock() {
            let mut removed = false;
            for leftover in &self.leftovers {
                removed |= leftover.clear();
            }
            if removed {
                self.say(REPORT_REMOVED);
            }
        }
        // Last, within milliseconds of git's own open: a symlink swapped in for one of the
        // ref's directories while the child waited would lead git's write out of the origin.
        if let Err(Moved(at)) = self.trail.rewalk() {
            self.say(REPORT_MOVED);
            self.say(u8::try_from(at).unwrap_or(u8::MAX));
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        if !self.trail.commondir_is_own() {
            self.say(REPORT_COMMONDIR);
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        Ok(())
    }

    /// Takes the writers' lock (kept by `git` until it exits), waiting at most
    /// [`WRITERS_WAIT`]; reports why not when it cannot.
    fn take_writers_lock(&self) -> bool {
        // SAFETY: plain system calls on a valid NUL-terminated path.
        unsafe {
            let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
            let mut fd = libc::open(self.writers_lock.as_ptr(), libc::O_RDWR | flags);
            if fd == -1 && *libc::__errno_location() == libc::EACCES {
                fd = libc::open(self.writers_lock.as_ptr(), libc::O_RDONLY | flags);
            }
            if fd == -1 {
                self.say(REPORT_UNOPENED);
                return false;
            }
            // Not close-on-exec: `git` holds the lock until it exits.
            match lock_within(fd, WRITERS_WAIT) {
                Flock::Held => true,
                Flock::Busy => {
                    self.say(REPORT_BUSY);
                    false
                }
                Flock::Failed => {
                    self.say(REPORT_UNOPENED);
                    false
                }
            }
        }
    }

    fn say(&self, report: u8) {
        // SAFETY: a one-byte write from a valid byte.
        unsafe { libc::write(self.report, (&raw const report).cast(), 1) };
    }
}

/// What [`lock_within`] got.
#[derive(PartialEq, Eq)]
enum Flock {
    Held,
    Busy,
    Failed,
}

/// `flock(fd, LOCK_EX)`, waiting at most `wait` on `CLOCK_MONOTONIC` (async-signal-safe).
fn lock_within(fd: libc::c_int, wait: Duration) -> Flock {
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: RETRY.subsec_nanos() as libc::c_long,
    };
    let deadline = monotonic().saturating_add(wait);
    loop {
        // SAFETY: flock and nanosleep on a valid descriptor and timespec.
        unsafe {
            if libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0 {
                return Flock::Held;
            }
            if *libc::__errno_location() != libc::EWOULDBLOCK {
                return Flock::Failed;
            }
            if monotonic() >= deadline {
                return Flock::Busy;
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }
}

/// `CLOCK_MONOTONIC` now (async-signal-safe, no allocation).
fn monotonic() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// A bare origin whose `HEAD` names its lock ref with a FIFO at `logs/HEAD` (where a
/// writer of that ref hangs), a blob to point the ref at, and the ref's name.
#[cfg(test)]
pub(super) fn head_reflog_fifo_origin() -> (tempfile::TempDir, Oid, &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init_bare(dir.path()).unwrap();
    let new = repo.blob(b"lock").unwrap();
    let name = "refs/gstack/release-locks/x";
    std::fs::write(dir.path().join("HEAD"), format!("ref: {name}\n")).unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    nix::unistd::mkfifo(&dir.path().join("logs/HEAD"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    (dir, new, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer hung appending to `logs/HEAD` (a FIFO there, `HEAD` naming the ref it
    /// writes: `--no-deref` does not stop that append) holds `HEAD.lock`, which berth
    /// judges as no ref's leftover. Stopped at its limit with SIGTERM, git removes it; the
    /// alarm's SIGALRM or a SIGKILL would leave it, and every later write of the ref fail.
    #[test]
    fn a_writer_stopped_at_its_limit_leaves_no_lock_file() {
        let (dir, new, name) = head_reflog_fifo_origin();
        let old = Oid::ZERO_SHA1;
        let started = Instant::now();
        let mut child = git_update_ref(dir.path(), name, Change::Set { new, old })
            .spawn()
            .unwrap();
        let (applied, said) = finish(&mut child, started, "git update-ref").unwrap();
        assert!(!applied, "{said}");
        let mut locks = Vec::new();
        let mut dirs = vec![dir.path().to_owned()];
        while let Some(at) = dirs.pop() {
            for entry in std::fs::read_dir(&at).unwrap() {
                let path = entry.unwrap().path();
                if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|ext| ext == "lock") {
                    locks.push(path);
                }
            }
        }
        assert!(locks.is_empty(), "left behind: {locks:?} ({said})");
    }
}
