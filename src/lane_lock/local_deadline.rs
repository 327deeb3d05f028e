//! The deadline on every in-process libgit2 access to a local origin (a path or `file://`).
//!
//! libgit2 reads a local origin's files itself, with blocking `open()`s and reads no socket
//! timeout bounds. The look before it ([`super::refs_look`]) refuses what it can see, but a
//! FIFO planted after the look, the target of a config `include.path`, or a hung file
//! system would still hold the calling thread for good, and the lane (and the daemon's
//! blocking pool) with it. So each access runs on a thread of its own that owns what it
//! touches (a repository it opened itself, owned copies of its arguments), and the caller
//! waits at most its deadline (the lock client's `remote_timeout`): past it the access
//! fails closed, naming the origin, and the thread is left to end when the origin answers.
//!
//! While a thread left that way has not returned, no new access to that origin starts: it
//! is refused at once, named. So an origin holds at most the threads that were already in
//! it when the first one was left (one per lane and heartbeat of this process on that
//! origin), never one more per retry. When a left thread returns, its end is logged and
//! the origin is read again. A repository handed to such a thread (a scratch repository's
//! path) is never used again ([`handed_to_late`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an access to a local origin made outside a lock client may take (the
/// landing's feature fetch, the claim check's `ls-remote`): the process's remote timeout,
/// which the daemon's lock client chose ([module docs](self)).
pub(crate) fn local_origin_deadline() -> Duration {
    let default = crate::git_timeouts::Timeouts {
        connect: super::DEFAULT_REMOTE_TIMEOUT,
        io: super::DEFAULT_REMOTE_TIMEOUT,
    };
    crate::git_timeouts::choose(default).io
}

/// Why an access to a local origin gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Overdue {
    #[error(
        "the local origin {} did not answer within {} s (likely a FIFO or a hung file system under it): berth stopped waiting, reads nothing more of it until that access returns, and the lane is not taken; find what blocks there and remove it",
        .origin.display(), .after.as_secs_f64()
    )]
    Late { origin: PathBuf, after: Duration },
    #[error(
        "an earlier access to the local origin {} has not returned for {} s (likely a FIFO or a hung file system under it): berth starts no other until it does, and the lane is not taken; find what blocks there and remove it",
        .origin.display(), .since.as_secs()
    )]
    StillLate { origin: PathBuf, since: Duration },
    #[error("cannot start a thread for an access to the local origin {}: {source}", .origin.display())]
    Spawn {
        origin: PathBuf,
        source: std::io::Error,
    },
    #[error("an access to the local origin {} ended without an answer (it panicked)", .0.display())]
    Lost(PathBuf),
}

impl From<Overdue> for git2::Error {
    /// A timeout: no local libgit2 call reports one, so callers can tell it from the
    /// origin's own answers ([`is_overdue`]).
    fn from(overdue: Overdue) -> git2::Error {
        let message = overdue.to_string();
        git2::Error::new(git2::ErrorCode::Timeout, git2::ErrorClass::Os, message)
    }
}

/// Whether `e` is a local origin's access that gave no answer ([`Overdue`]).
pub(crate) fn is_overdue(e: &git2::Error) -> bool {
    e.code() == git2::ErrorCode::Timeout && e.class() == git2::ErrorClass::Os
}

/// An access left running past its deadline.
struct Late {
    id: u64,
    origin: PathBuf,
    handed: Option<PathBuf>,
    since: Instant,
}

static LATE: Mutex<Vec<Late>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn late() -> MutexGuard<'static, Vec<Late>> {
    LATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `op` (an access to the local origin `origin`) on a thread of its own and waits at
/// most `deadline` for it. `handed` is the path of a repository `op` opens and writes in,
/// which is never used again if `op` is left running ([`handed_to_late`]).
pub(crate) fn run<T: Send + 'static>(
    origin: &Path,
    deadline: Duration,
    handed: Option<&Path>,
    op: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Overdue> {
    if let Some(left) = late().iter().find(|left| left.origin == origin) {
        return Err(Overdue::StillLate {
            origin: origin.to_owned(),
            since: left.since.elapsed(),
        });
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // One answer, sent once: the send never blocks, whether or not anyone still waits.
    let (tx, rx) = mpsc::sync_channel(1);
    // Named as its caller: what it runs (a writer child it forks) is told apart by it.
    let name = std::thread::current()
        .name()
        .unwrap_or("local-origin")
        .to_owned();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let answer = op();
            // Under the list's lock: the waiter either takes the answer or has listed
            // this thread as late, never neither.
            let mut late = late();
            let _ = tx.send(answer);
            if let Some(at) = late.iter().position(|left| left.id == id) {
                let left = late.swap_remove(at);
                tracing::warn!(
                    origin = %left.origin.display(),
                    late_by_secs = left.since.elapsed().as_secs(),
                    "an access to a local origin berth stopped waiting for has returned; the origin is read again"
                );
            }
        })
        .map_err(|source| Overdue::Spawn {
            origin: origin.to_owned(),
            source,
        })?;
    match rx.recv_timeout(deadline) {
        Ok(answer) => Ok(answer),
        Err(RecvTimeoutError::Disconnected) => Err(Overdue::Lost(origin.to_owned())),
        Err(RecvTimeoutError::Timeout) => {
            let mut late = late();
            if let Ok(answer) = rx.try_recv() {
                return Ok(answer);
            }
            late.push(Late {
                id,
                origin: origin.to_owned(),
                handed: handed.map(Path::to_owned),
                since: Instant::now(),
            });
            drop(late);
            tracing::warn!(origin = %origin.display(), deadline_secs = deadline.as_secs_f64(), "a local origin did not answer within the deadline; no new access to it starts until that one returns");
            Err(Overdue::Late {
                origin: origin.to_owned(),
                after: deadline,
            })
        }
    }
}

/// Whether the repository at `path` was handed to an access still running past its
/// deadline: it may write there at any time, so it is not used again.
pub(crate) fn handed_to_late(path: &Path) -> bool {
    late()
        .iter()
        .any(|left| left.handed.as_deref() == Some(path))
}

/// How many accesses to `origin` run past their deadline now.
#[cfg(test)]
pub(crate) fn late_on(origin: &Path) -> usize {
    late().iter().filter(|left| left.origin == origin).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lane_lock::tests::{BareOrigin, widget_main};
    use crate::lane_lock::{Acquire, LockClient, LockError, LockSettings};
    use std::sync::Arc;

    /// Waits (a minute at most) until no access to `origin` is left running.
    fn until_none_late_on(origin: &Path) {
        let give_up = Instant::now() + Duration::from_secs(60);
        while late_on(origin) > 0 {
            assert!(Instant::now() < give_up, "the late access never returned");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An access past its deadline fails named; while it runs, the next is refused
    /// without a thread and the repository handed to it is not used again; once it
    /// returns, the origin is read again.
    #[test]
    fn an_access_past_its_deadline_is_left_and_refuses_the_next_until_it_returns() {
        let origin = Path::new("/nonexistent/berth-deadline-test/origin.git");
        let handed = Path::new("/nonexistent/berth-deadline-test/scratch");
        let (release, hold) = mpsc::channel::<()>();
        let first = run(origin, Duration::from_millis(50), Some(handed), move || {
            hold.recv().ok()
        });
        assert!(matches!(first, Err(Overdue::Late { .. })), "{first:?}");
        assert!(handed_to_late(handed));
        let second = run(origin, Duration::from_secs(60), None, || ());
        assert!(
            matches!(second, Err(Overdue::StillLate { .. })),
            "{second:?}"
        );
        assert_eq!(late_on(origin), 1);
        release.send(()).unwrap();
        until_none_late_on(origin);
        assert!(!handed_to_late(handed));
        assert_eq!(run(origin, Duration::from_secs(60), None, || 7).unwrap(), 7);
    }

    /// Runs an acquire of the widget lane on `origin` on its own thread; its answer, or a
    /// panic when it has not returned within a minute.
    fn acquire(client: &Arc<LockClient>, origin: &BareOrigin) -> Result<Acquire, LockError> {
        let (tx, rx) = mpsc::channel();
        let (client, url) = (Arc::clone(client), origin.url.clone());
        std::thread::spawn(move || {
            let _ = tx.send(client.acquire(&url, &widget_main(), "me", Path::new("/a")));
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the acquire never returned")
    }

    /// A FIFO the look before libgit2 cannot see (the file a local origin's config
    /// includes) hangs libgit2's open of the origin: the acquire fails within the deadline
    /// naming the origin, the next is refused at once with no new thread, and once a
    /// writer opens the FIFO (the stuck open returns) and it is gone, the lane is taken.
    #[test]
    fn a_local_origin_that_does_not_answer_holds_the_lane_named_until_it_does() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let origin = BareOrigin::new();
        let included = origin.dir.path().join("included");
        nix::unistd::mkfifo(&included, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(origin.bare.join("config"))
            .unwrap();
        writeln!(config, "[include]\n\tpath = {}", included.display()).unwrap();
        let settings = LockSettings {
            remote_timeout: Duration::from_secs(2),
            ..LockSettings::default()
        };
        let scratch = origin.dir.path().join("scratch");
        let client = Arc::new(LockClient::new(&scratch, settings).unwrap());
        let bare = origin.bare.to_string_lossy().into_owned();
        let first = format!("{:?}", acquire(&client, &origin));
        assert!(
            first.contains(&bare) && first.contains("did not answer within 2 s"),
            "{first}"
        );
        assert_eq!(late_on(&origin.bare), 1);
        let second = format!("{:?}", acquire(&client, &origin));
        assert!(
            second.contains(&bare) && second.contains("has not returned"),
            "{second}"
        );
        assert_eq!(late_on(&origin.bare), 1);
        // A writer's open answers the stuck reader's (never blocking: it fails with no
        // reader); its close is the end of the file.
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&included)
            .expect("no access is stuck opening the FIFO");
        drop(writer);
        std::fs::remove_file(&included).unwrap();
        std::fs::write(&included, "").unwrap();
        until_none_late_on(&origin.bare);
        let third = acquire(&client, &origin);
        assert!(matches!(third, Ok(Acquire::Acquired(_))), "{third:?}");
    }
}
