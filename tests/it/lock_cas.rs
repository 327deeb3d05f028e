//! Every lock move is a compare-and-swap enforced where the ref is written, over every
//! transport: client A looks at the ref, client B moves it in the window between A's look
//! and A's write (the client's write hook, run by the real write path), and A's write with
//! the old expectation must not land. Over `git://` the refusal is the server's (A's own
//! look already passed); over a local path or `file://` it is the ref lock's in the bare
//! repository (libgit2's local push transport would have forced it).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth::lane_lock::{
    Acquire, HeldLock, Lane, LockClient, LockError, LockWrite, Released, lock_ref_name,
};
use tempfile::TempDir;

use crate::lane_lock::{
    LONG_TTL, Reach, Remote, acquired, client, gstack_payload, gstack_write, lane, remote_by,
};
use crate::lock_in_the_way::plant_no_lock;

const REACHES: [Reach; 3] = [Reach::Path, Reach::FileUrl, Reach::GitDaemon];

/// Client A, whose first `write` runs `move_ref` (client B's write) before it is sent.
pub(super) fn racing_client(
    write: LockWrite,
    move_ref: impl Fn() + Send + Sync + 'static,
) -> (TempDir, LockClient) {
    let (dir, mut a) = client(LONG_TTL);
    let armed = AtomicBool::new(true);
    a.set_write_hook(Arc::new(move |seen, _ref_name| {
        if seen == write && armed.swap(false, Ordering::SeqCst) {
            move_ref();
        }
    }));
    (dir, a)
}

/// Client B: takes `lane` on `url` under its own name (over a live lock: force-released
/// first, as an operator or a takeover would), and remembers the sha it wrote.
struct Mover {
    url: String,
    lane: Lane,
    client: LockClient,
    wrote: Mutex<Option<HeldLock>>,
    _dir: TempDir,
}

impl Mover {
    fn new(remote: &Remote, lane: &Lane) -> Arc<Mover> {
        let (dir, client) = client(LONG_TTL);
        Arc::new(Mover {
            url: remote.url.clone(),
            lane: lane.clone(),
            client,
            wrote: Mutex::new(None),
            _dir: dir,
        })
    }

    fn take(&self) {
        let take = || {
            self.client
                .acquire(&self.url, &self.lane, "owner-b", Path::new("/b"))
        };
        let mut outcome = take();
        // A's lock, on gstack's ref and on the one every spelling shares for a local origin.
        for _ in 0..2 {
            let Ok(Acquire::HeldElsewhere { sha, ref_name, .. }) = &outcome else {
                break;
            };
            let released = self.client.force_release(&self.url, ref_name, sha);
            assert_eq!(released.unwrap(), Released::Deleted);
            outcome = take();
        }
        *self.wrote.lock().unwrap() = Some(acquired(outcome));
    }

    fn sha(&self) -> String {
        self.wrote
            .lock()
            .unwrap()
            .as_ref()
            .expect("B moved the ref")
            .sha()
    }
}

fn assert_held_by_b(outcome: Result<Acquire, LockError>) {
    match outcome {
        Ok(Acquire::HeldElsewhere { holder, .. }) => assert_eq!(holder.owner_id, "owner-b"),
        other => panic!("A must find B's lock, got {other:?}"),
    }
}

#[test]
fn a_create_over_a_lock_made_after_the_look_never_lands() {
    for reach in REACHES {
        let remote = remote_by(reach);
        let lane = lane("main");
        let b = Mover::new(&remote, &lane);
        let (_dir, a) = racing_client(LockWrite::Create, {
            let b = Arc::clone(&b);
            move || b.take()
        });
        let outcome = a.acquire(&remote.url, &lane, "owner-a", Path::new("/a"));
        assert_held_by_b(outcome);
        assert_eq!(
            remote.sha(&lock_ref_name(&lane)),
            Some(b.sha()),
            "{reach:?}"
        );
    }
}

#[test]
fn a_takeover_of_a_lock_retaken_after_the_look_never_lands() {
    for reach in REACHES {
        let remote = remote_by(reach);
        let lane = lane("main");
        let ref_name = lock_ref_name(&lane);
        let expired = gstack_payload("gone", "main", -chrono::Duration::minutes(1));
        gstack_write(
            &remote,
            &ref_name,
            &serde_json::to_string_pretty(&expired).unwrap(),
        );
        let b = Mover::new(&remote, &lane);
        let (_dir, a) = racing_client(LockWrite::Takeover, {
            let b = Arc::clone(&b);
            move || b.take()
        });
        let outcome = a.acquire(&remote.url, &lane, "owner-a", Path::new("/a"));
        assert_held_by_b(outcome);
        assert_eq!(remote.sha(&ref_name), Some(b.sha()), "{reach:?}");
    }
}

#[test]
fn a_refresh_of_a_lock_moved_after_the_look_never_lands() {
    for reach in REACHES {
        let remote = remote_by(reach);
        let lane = lane("main");
        let b = Mover::new(&remote, &lane);
        let (_dir, a) = racing_client(LockWrite::Refresh, {
            let b = Arc::clone(&b);
            move || b.take()
        });
        let mut held = acquired(a.acquire(&remote.url, &lane, "owner-a", Path::new("/a")));
        let refreshed = a.heartbeat(&mut held);
        assert!(refreshed.is_err(), "{reach:?}: {refreshed:?}");
        assert_eq!(remote.sha(held.ref_name()), Some(b.sha()), "{reach:?}");
        // The next refresh finds the lane taken for good.
        assert!(matches!(
            a.heartbeat(&mut held),
            Err(LockError::Stolen { .. })
        ));
        assert!(held.is_lost(std::time::Instant::now()));
        assert_eq!(remote.sha(held.ref_name()), Some(b.sha()), "{reach:?}");
    }
}

#[test]
fn release_never_deletes_a_lock_moved_after_the_look() {
    for reach in REACHES {
        let remote = remote_by(reach);
        let lane = lane("main");
        let b = Mover::new(&remote, &lane);
        let (_dir, a) = racing_client(LockWrite::Release, {
            let b = Arc::clone(&b);
            move || b.take()
        });
        let held = acquired(a.acquire(&remote.url, &lane, "owner-a", Path::new("/a")));
        let released = a.release(&held).unwrap();
        assert_eq!(
            released,
            Released::NotOurs { now_sha: b.sha() },
            "{reach:?}"
        );
        assert_eq!(remote.sha(held.ref_name()), Some(b.sha()), "{reach:?}");
    }
}

/// A live `git` holds the lock ref's `.lock` file while the clock is stepped back: the file
/// is dated in the future. That is no dead writer's: the first write that finds it must
/// leave it alone (and fail), not take it for a leftover because it is far from now. The
/// writer here moves the file's date on (still in the future) every second, so only a
/// first-sight judgement could remove it, however slowly a loaded machine runs the tries.
#[test]
fn a_future_dated_ref_lock_a_live_process_holds_is_not_removed_at_first_sight() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let remote = remote_by(Reach::Path);
    let lane = lane("main");
    let ref_lock = remote.bare.join(format!("{}.lock", lock_ref_name(&lane)));
    std::fs::create_dir_all(ref_lock.parent().unwrap()).unwrap();
    std::fs::write(&ref_lock, "").unwrap();
    let lock_file = std::fs::File::options()
        .write(true)
        .open(&ref_lock)
        .unwrap();
    let ahead = std::time::SystemTime::now() + 4 * berth::lane_lock::LEFTOVER_AGE;
    lock_file.set_modified(ahead).unwrap();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let writing = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut step = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_secs(1));
                step += 1;
                let _ = lock_file.set_modified(ahead + std::time::Duration::from_millis(step));
            }
        }
    });
    let (_dir, a) = client(LONG_TTL);
    let outcome = a.acquire(&remote.url, &lane, "owner-a", Path::new("/a"));
    let kept = ref_lock.exists();
    done.store(true, Ordering::Relaxed);
    writing.join().unwrap();
    assert!(kept, "a live writer's future-dated .lock was removed");
    assert!(!matches!(outcome, Ok(Acquire::Acquired(_))), "{outcome:?}");
    assert_eq!(remote.sha(&lock_ref_name(&lane)), None);
}

/// a local refresh whose `git update-ref` renamed the new lock over the ref and
/// was then stopped (SIGSTOP by its pid, or starved past the 8 s limit) is killed by berth
/// at WRITE_LIMIT + grace. The ref then holds exactly the commit this refresh wrote, yet
/// `local_swap` reports `Refused { advertised: <our own new sha> }`, which the refresh
/// takes for a theft: the live landing is aborted ("no longer owned by this daemon"), the
/// release finds the ref "not ours", and nobody holds the lane until the TTL.
#[test]
fn a_local_refresh_whose_writer_stopped_after_its_rename_is_not_taken_for_a_theft() {
    use std::os::unix::fs::PermissionsExt as _;
    let remote = remote_by(Reach::Path);
    let (_dir, daemon) = client(LONG_TTL);
    let mut held = acquired(daemon.acquire(&remote.url, &lane("main"), "me", Path::new("/a")));
    let ref_name = lock_ref_name(&lane("main"));
    let before = remote.sha(&ref_name).unwrap();

    let real = std::process::Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_owned();
    let bin = tempfile::tempdir().unwrap();
    let armed = bin.path().join("armed");
    std::fs::write(&armed, "").unwrap();
    let wrapper = bin.path().join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n'{real}' \"$@\"\nstatus=$?\ncase \" $* \" in *' update-ref '*' {ref_name} '*) if [ -e '{armed}' ]; then rm -f '{armed}'; kill -STOP $$; fi ;; esac\nexit $status\n",
            armed = armed.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old_path = std::env::var_os("PATH").unwrap();
    let mut paths = vec![bin.path().to_owned()];
    paths.extend(std::env::split_paths(&old_path));
    // SAFETY: run alone (`cargo test --test it <this test's name>`).
    unsafe { std::env::set_var("PATH", std::env::join_paths(paths).unwrap()) };
    let refreshed = daemon.heartbeat(&mut held);
    // SAFETY: as above.
    unsafe { std::env::set_var("PATH", &old_path) };

    assert!(!armed.exists(), "the writer was never stopped");
    let left = remote.sha(&ref_name).unwrap();
    assert_ne!(left, before, "the refresh did not move the ref");
    assert!(
        !held.is_lost(std::time::Instant::now()),
        "this landing's own refresh ({left}) was taken for a theft: {refreshed:?}"
    );
    assert_eq!(daemon.release(&held).unwrap(), Released::Deleted);
}

/// `git update-ref -d` takes the origin's `packed-refs.lock` for every delete, so
/// one left by a dead git (a SIGKILLed `git gc`/`pack-refs`, or a branch delete killed
/// mid-way, an hour ago) fails every release of a local origin's lane lock: the lane then
/// waits out the whole TTL after every landing, and the message names `<ref>.lock` and
/// promises a removal berth never makes (it judges only `<ref>.lock`).
#[test]
fn a_dead_gits_packed_refs_lock_does_not_keep_every_release_from_deleting_the_lock() {
    let remote = remote_by(Reach::Path);
    let (_dir, daemon) = client(LONG_TTL);
    let held = acquired(daemon.acquire(&remote.url, &lane("main"), "me", Path::new("/a")));
    let stale = remote.bare.join("packed-refs.lock");
    std::fs::write(&stale, "").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    let released = daemon.release(&held);
    assert!(
        matches!(released, Ok(Released::Deleted)),
        "the release left the lane locked until its TTL: {released:?}"
    );
}

/// Review 5: one ref planted under the lane's lock ref as a directory
/// (`<lock ref>/x`, here an empty commit: no lock at all, nothing that expires) makes
/// every write of the lane's lock ref fail on git's directory/file conflict. That is
/// neither a holder nor a `.lock` file, so berth returns a bare error on every acquire:
/// the lane is wedged for ever with nobody holding it, and no TTL or cap ends it.
#[test]
fn a_ref_planted_below_the_lanes_lock_ref_does_not_wedge_the_lane_for_ever() {
    let remote = remote_by(Reach::Path);
    let planted = format!("{}/x", lock_ref_name(&lane("main")));
    plant_no_lock(&remote, &planted);
    let (_dir, daemon) = client(LONG_TTL);
    for _ in 0..3 {
        let outcome = daemon.acquire(&remote.url, &lane("main"), "me", Path::new("/a"));
        assert!(
            outcome.is_ok(),
            "the lane can never be taken, and nothing names a holder or expires: {outcome:?}"
        );
    }
}
