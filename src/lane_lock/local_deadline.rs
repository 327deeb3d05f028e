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
//! While a thread left that way has not returned, no new access to that origin starts: one
//! by the same spelling is refused by its caller at once, named, with no look at the
//! origin; one by another path to the same repository ([`repo_key`]) is refused the same
//! way by its own thread, before its work. So an origin holds at most the threads that
//! were already in it when the first one was left (one per lane and heartbeat of this
//! process on that origin), and on a hung file system one more per other spelling (whose
//! look at the repository hangs too), never one more per retry. When a left thread
//! returns, its end is logged and the origin is read again. A repository handed to such a
//! thread (a scratch repository's path) is never used again ([`handed_to_late`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod commitment;
pub(crate) use commitment::Commitment;

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
        "the local origin {} did not answer within {} s (likely a FIFO or a hung file system under it): berth abandoned that access on its thread (a thread cannot be killed; its late end is logged), starts no other access to that origin until it returns, and fails this one closed; find what blocks there and remove it",
        .origin.display(), .after.as_secs_f64()
    )]
    Late { origin: PathBuf, after: Duration },
    #[error(
        "an earlier access to the local origin {} has not returned for {} s (likely a FIFO or a hung file system under it): berth starts no other access to it until that one does, and fails this one closed; find what blocks there and remove it",
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

/// Which repository an access to `origin` reaches: the device and inode of its directory
/// ([`crate::identity::alias_key`], as "one repo, one lane" tells repositories apart), so a
/// symlink, a bind mount or a `file://` spelling of a stuck origin meets it; `None` when it
/// cannot be found. A stat of the origin, which a hung file system holds for good: only an
/// access's own thread asks it, never its caller.
fn repo_key(origin: &Path) -> Option<String> {
    let key = crate::identity::alias_key(origin.to_str()?);
    key.starts_with("local:").then_some(key)
}

/// An access running now: listed before its thread starts, under the same lock as the
/// check that lets it start, and struck when it returns.
struct Running {
    id: u64,
    /// As the caller wrote it: what the caller's check compares, with no look at the
    /// origin, and what messages name.
    origin: PathBuf,
    /// The repository it reaches ([`repo_key`]), once its own thread has learnt it.
    repo: Option<String>,
    handed: Option<PathBuf>,
    /// When its waiter stopped waiting; `None` while someone still waits for it.
    left_at: Option<Instant>,
}

static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn running() -> MutexGuard<'static, Vec<Running>> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Strikes the access `id` from [`RUNNING`] when dropped (its thread returned or panicked),
/// logging the end of one its waiter had left.
struct Listed(u64);

impl Listed {
    fn strike(&self, list: &mut Vec<Running>) {
        let Some(at) = list.iter().position(|access| access.id == self.0) else {
            return;
        };
        let access = list.swap_remove(at);
        if let Some(left_at) = access.left_at {
            tracing::warn!(
                origin = %access.origin.display(),
                late_by_secs = left_at.elapsed().as_secs(),
                "an access to a local origin berth stopped waiting for has returned; the origin is read again"
            );
        }
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.strike(&mut running());
    }
}

/// The earliest time an access that `reaches` was left past its deadline, if one was.
fn left_since(list: &[Running], reaches: impl Fn(&Running) -> bool) -> Option<Instant> {
    let left = list.iter().filter(|access| reaches(access));
    left.filter_map(|access| access.left_at).min()
}

/// Lists an access to `origin` unless one by the same spelling was left running past its
/// deadline: the check and the listing under one lock, so callers arriving together
/// cannot each pass the check of an origin that is being left. The caller's check, which
/// never looks at the origin; its thread checks the repository ([`learn_repo`]).
fn list(origin: &Path, handed: Option<&Path>) -> Result<Listed, Overdue> {
    let mut list = running();
    if let Some(since) = left_since(&list, |access| access.origin == origin) {
        return Err(Overdue::StillLate {
            origin: origin.to_owned(),
            since: since.elapsed(),
        });
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    list.push(Running {
        id,
        origin: origin.to_owned(),
        repo: None,
        handed: handed.map(Path::to_owned),
        left_at: None,
    });
    Ok(Listed(id))
}

/// On the access `id`'s own thread, before its work: learns the repository `origin`
/// reaches and refuses the access if one to it by another spelling was left past its
/// deadline, so a symlink to a stuck origin adds no thread in it. The check and the
/// noting of the repository under one lock, as in [`list`].
fn learn_repo(id: u64, origin: &Path) -> Result<(), Overdue> {
    let Some(repo) = repo_key(origin) else {
        return Ok(());
    };
    let mut list = running();
    if let Some(since) = left_since(&list, |access| access.repo.as_ref() == Some(&repo)) {
        return Err(Overdue::StillLate {
            origin: origin.to_owned(),
            since: since.elapsed(),
        });
    }
    if let Some(access) = list.iter_mut().find(|access| access.id == id) {
        access.repo = Some(repo);
    }
    Ok(())
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
    run_committed(origin, deadline, handed, None, op)
}

/// [`run`], and past `deadline` waits the `commitment`'s grace more if `op` committed to
/// its step before the caller left ([`Commitment`]).
pub(crate) fn run_committed<T: Send + 'static>(
    origin: &Path,
    deadline: Duration,
    handed: Option<&Path>,
    commitment: Option<&Commitment>,
    op: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Overdue> {
    let listed = list(origin, handed)?;
    let id = listed.0;
    // One answer, sent once: the send never blocks, whether or not anyone still waits.
    let (tx, rx) = mpsc::sync_channel::<Result<T, Overdue>>(1);
    // Named as its caller: what it runs (a writer child it forks) is told apart by it.
    let name = std::thread::current()
        .name()
        .unwrap_or("local-origin")
        .to_owned();
    let at = origin.to_owned();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let answer = learn_repo(id, &at).map(|()| op());
            // Under the list's lock: the waiter either takes the answer or has marked
            // this access left, never neither.
            let mut list = running();
            let _ = tx.send(answer);
            listed.strike(&mut list);
            // Before `listed` drops, which takes the lock again (finding nothing left).
            drop(list);
        })
        // A thread that never started struck its listing as the closure dropped.
        .map_err(|source| Overdue::Spawn {
            origin: origin.to_owned(),
            source,
        })?;
    match rx.recv_timeout(deadline) {
        Ok(answer) => answer,
        Err(RecvTimeoutError::Disconnected) => Err(Overdue::Lost(origin.to_owned())),
        Err(RecvTimeoutError::Timeout) => {
            let mut after = deadline;
            if let Some(grace) = commitment.and_then(Commitment::leave_unless_committed) {
                after += grace;
                match rx.recv_timeout(grace) {
                    Ok(answer) => return answer,
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(Overdue::Lost(origin.to_owned()));
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            let mut list = running();
            if let Ok(answer) = rx.try_recv() {
                return answer;
            }
            if let Some(access) = list.iter_mut().find(|access| access.id == id) {
                access.left_at = Some(Instant::now());
            }
            drop(list);
            tracing::warn!(origin = %origin.display(), deadline_secs = after.as_secs_f64(), "a local origin did not answer within the deadline; no new access to it starts until that one returns");
            Err(Overdue::Late {
                origin: origin.to_owned(),
                after,
            })
        }
    }
}

/// Whether the repository at `path` was handed to an access still running past its
/// deadline: it may write there at any time, so it is not used again.
pub(crate) fn handed_to_late(path: &Path) -> bool {
    running()
        .iter()
        .any(|access| access.left_at.is_some() && access.handed.as_deref() == Some(path))
}

/// How many accesses to `origin` (as written) run past their deadline now.
#[cfg(test)]
pub(crate) fn late_on(origin: &Path) -> usize {
    running()
        .iter()
        .filter(|access| access.left_at.is_some() && access.origin == origin)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile_file::fifo_race::{answer_stuck_opens, fifo_included_by_config};
    use crate::lane_lock::tests::{BareOrigin, widget_main};
    use crate::lane_lock::{Acquire, LockClient, LockError, LockSettings};
    use std::sync::Arc;

    mod late_write;

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

    /// A file system whose server never answers (a FUSE mount nobody serves: every look
    /// under it waits, as under a hard NFS mount whose server is gone), mounted at `at`.
    /// Dropped, it aborts the mount's connection, so every call waiting there fails at
    /// once, and unmounts it.
    struct HungMount {
        at: PathBuf,
        server: Option<std::fs::File>,
    }

    impl HungMount {
        /// Mounted at `dir/nfs`; `None` where this process may not mount.
        fn under(dir: &Path) -> Option<HungMount> {
            let at = dir.join("nfs");
            std::fs::create_dir(&at).unwrap();
            let server = hung_mount(&at)?;
            Some(HungMount {
                at,
                server: Some(server),
            })
        }
    }

    impl Drop for HungMount {
        fn drop(&mut self) {
            drop(self.server.take());
            let target = std::ffi::CString::new(self.at.to_str().unwrap()).unwrap();
            // SAFETY: a NUL-terminated path that outlives the call.
            unsafe { nix::libc::umount2(target.as_ptr(), nix::libc::MNT_DETACH) };
        }
    }

    /// Mounts a file system at `at` whose server never answers; its server end, or `None`
    /// where this process may not mount.
    fn hung_mount(at: &Path) -> Option<std::fs::File> {
        use std::os::fd::AsRawFd as _;
        use std::os::unix::ffi::OsStrExt as _;
        let server = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .ok()?;
        let target = std::ffi::CString::new(at.as_os_str().as_bytes()).unwrap();
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            server.as_raw_fd()
        );
        let data = std::ffi::CString::new(data).unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let mounted = unsafe {
            nix::libc::mount(
                c"berth-hung".as_ptr(),
                target.as_ptr(),
                c"fuse".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        (mounted == 0).then_some(server)
    }

    /// A local origin on a hung file system (the docs' "hung NFS mount"): the caller of an
    /// access must get its answer (the origin did not answer) within the deadline, not
    /// wait with the origin. Telling stuck origins apart by device and inode stats the
    /// origin's path on the caller's thread, before any deadline runs.
    #[test]
    fn an_access_to_an_origin_on_a_hung_mount_answers_within_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mount) = HungMount::under(dir.path()) else {
            return;
        };
        let origin = mount.at.join("origin.git");
        let (tx, rx) = mpsc::channel();
        let at = origin.clone();
        std::thread::spawn(move || {
            let head = at.join("HEAD");
            let answer = run(&at, Duration::from_secs(1), None, move || {
                std::fs::metadata(head).is_ok()
            });
            let _ = tx.send(answer.map_err(|e| e.to_string()));
        });
        let answer = rx.recv_timeout(Duration::from_secs(30));
        drop(mount);
        let answer = answer.expect(
            "an access to a local origin on a hung mount, deadline 1 s, had not answered its caller after 30 s",
        );
        let said = answer.unwrap_err();
        assert!(said.contains("did not answer within 1 s"), "{said}");
    }

    /// The lane's own operation on an origin under a hung mount: a try to take the lane
    /// must fail within its deadline (the origin did not answer), not hold its caller (a
    /// tick's blocking thread) for as long as the mount hangs.
    #[test]
    fn taking_a_lane_of_an_origin_on_a_hung_mount_fails_within_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mount) = HungMount::under(dir.path()) else {
            return;
        };
        let url = mount.at.join("origin.git").to_str().unwrap().to_owned();
        let settings = LockSettings {
            remote_timeout: Duration::from_secs(2),
            ..LockSettings::default()
        };
        let client = LockClient::new(&dir.path().join("scratch"), settings).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let taken = client.acquire(&url, &widget_main(), "me", Path::new("/a"));
            let _ = tx.send(format!("{taken:?}"));
        });
        let answer = rx.recv_timeout(Duration::from_secs(60));
        drop(mount);
        let answer = answer.expect(
            "a try to take a lane of an origin on a hung mount (remote timeout 2 s) had not returned after 60 s",
        );
        assert!(answer.contains("did not answer within"), "{answer}");
    }

    /// The daemon's own look at a lane (its key, [`crate::lane_lock::lane_key`], which its
    /// async main loop takes as each landing starts and ends, and the tick as it picks
    /// lanes) must not stat a local origin on a hung mount with no deadline: the caller
    /// that never looks at the origin in this module is held there first, and with it
    /// every lane of the daemon.
    #[test]
    fn the_daemons_lane_key_of_an_origin_on_a_hung_mount_answers() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("nfs");
        std::fs::create_dir(&mount).unwrap();
        let Some(server) = hung_mount(&mount) else {
            return;
        };
        let lane = crate::lane_lock::Lane {
            repo_identity: mount.join("origin").to_str().unwrap().to_owned(),
            base_branch: "main".into(),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(crate::lane_lock::lane_key(&lane));
        });
        let answer = rx.recv_timeout(Duration::from_secs(30));
        drop(server);
        let target = std::ffi::CString::new(mount.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { nix::libc::umount2(target.as_ptr(), nix::libc::MNT_DETACH) };
        let answer = answer.expect(
            "lane_key of a lane whose local origin is on a hung mount had not answered after 30 s: the daemon's main loop would hang there with no deadline",
        );
        // Not known, so the lane waits: never keyed by its spelling beside an alias.
        assert!(answer.is_err(), "{answer:?}");
    }

    /// The tick weighs every queued record (and every record in flight) of a lane by its
    /// key: three queued records of one origin on a hung mount are three reads of one
    /// identity's key while its first look runs (the local-access deadline, 30 s). The
    /// tick waits "at most 5 s for an origin's first look" (docs/lane-locks.md), not 5 s
    /// per record of it: meanwhile the daemon's loop awaits the tick.
    #[test]
    fn a_tick_waits_for_a_hung_origins_first_look_once_not_once_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let Some(mount) = HungMount::under(dir.path()) else {
            return;
        };
        let identity = mount.at.join("origin").to_str().unwrap().to_owned();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let started = Instant::now();
            for _record in 0..3 {
                assert!(super::super::repo_keys::key_of(&identity).is_err());
            }
            let _ = tx.send(started.elapsed());
        });
        let took = rx.recv_timeout(Duration::from_secs(60));
        drop(mount);
        let took = took.expect("three reads of a hung origin's key had not answered in 60 s");
        let first_look = super::super::repo_keys::FIRST_LOOK_WAIT;
        assert!(
            took < first_look + Duration::from_secs(2),
            "a tick weighing three records of one origin on a hung mount waited {took:?} for its key, not the {first_look:?} of one first look"
        );
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

    /// What an acquire stuck in a local origin says: its first access is the lock write,
    /// whose deadline is the 2 s remote timeout these tests set plus its git children's.
    fn did_not_answer_within_a_writes_deadline() -> String {
        let secs = (Duration::from_secs(2) + 2 * super::super::ref_writer::WRITER_BOUND).as_secs();
        format!("did not answer within {secs} s")
    }

    /// An origin whose config includes a FIFO (which no look before libgit2 can see), and
    /// a lock client whose remote timeout is 2 s.
    fn origin_behind_a_fifo_include() -> (BareOrigin, std::path::PathBuf, Arc<LockClient>) {
        let origin = BareOrigin::new();
        let included = fifo_included_by_config(&origin.bare);
        let settings = LockSettings {
            remote_timeout: Duration::from_secs(2),
            ..LockSettings::default()
        };
        let scratch = origin.dir.path().join("scratch");
        let client = Arc::new(LockClient::new(&scratch, settings).unwrap());
        (origin, included, client)
    }

    /// A FIFO the look before libgit2 cannot see (the file a local origin's config
    /// includes) hangs libgit2's open of the origin: the acquire fails within the deadline
    /// naming the origin, the next is refused at once with no new thread, and once a
    /// writer opens the FIFO (the stuck open returns) and it is gone, the lane is taken.
    #[test]
    fn a_local_origin_that_does_not_answer_holds_the_lane_named_until_it_does() {
        let (origin, included, client) = origin_behind_a_fifo_include();
        let bare = origin.bare.to_string_lossy().into_owned();
        let first = format!("{:?}", acquire(&client, &origin));
        assert!(
            first.contains(&bare) && first.contains(&did_not_answer_within_a_writes_deadline()),
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
        let writer = answer_stuck_opens(&included).expect("no access is stuck opening the FIFO");
        drop(writer);
        std::fs::remove_file(&included).unwrap();
        std::fs::write(&included, "").unwrap();
        until_none_late_on(&origin.bare);
        let third = acquire(&client, &origin);
        assert!(matches!(third, Ok(Acquire::Acquired(_))), "{third:?}");
    }

    /// One origin named two ways (its path, and a symlink to it, as "one repo, one lane"
    /// treats as one): while an access to it is left past its deadline, an access by the
    /// other name is refused at once too, with no second thread stuck in the origin.
    #[test]
    fn a_stuck_origin_refuses_an_access_by_another_name_for_it() {
        let (origin, included, client) = origin_behind_a_fifo_include();
        let alias = origin.dir.path().join("alias.git");
        std::os::unix::fs::symlink(&origin.bare, &alias).unwrap();
        let first = format!("{:?}", acquire(&client, &origin));
        assert!(
            first.contains(&did_not_answer_within_a_writes_deadline()),
            "{first}"
        );
        let aliased = BareOrigin {
            dir: tempfile::tempdir().unwrap(),
            bare: alias.clone(),
            url: alias.to_str().unwrap().to_owned(),
        };
        let second = format!("{:?}", acquire(&client, &aliased));
        let stuck = late_on(&origin.bare) + late_on(&alias);
        // Let the stuck opens return before judging, so no thread outlives the test.
        let _ = answer_stuck_opens(&included);
        std::fs::remove_file(&included).unwrap();
        std::fs::write(&included, "").unwrap();
        until_none_late_on(&origin.bare);
        until_none_late_on(&alias);
        assert!(second.contains("has not returned"), "{second}");
        assert_eq!(stuck, 1, "threads stuck in one origin named two ways");
    }
}
