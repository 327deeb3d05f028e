//! A local write left at its deadline, when its origin answers again.

use super::*;

/// The lock refs in the origin `bare`, each with its id ("<id> <ref>").
fn lock_refs_in(bare: &Path) -> Vec<String> {
    let out = std::process::Command::new("git")
        .args(["--git-dir", bare.to_str().unwrap(), "for-each-ref"])
        .args([
            "--format=%(objectname) %(refname)",
            "refs/gstack/release-locks/",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A release left at its deadline (its thread stuck opening an origin whose config
/// includes a FIFO) still gives the lane back once the origin answers: the delete is a
/// compare-and-swap against the released lock, so a late one can only remove that
/// lock. Refused, the lock stays, held by no landing (the caller forgot it), and every
/// other contender waits out its TTL (2 h by default).
#[test]
fn a_release_left_at_its_deadline_gives_the_lane_back_once_the_origin_answers() {
    let origin = BareOrigin::new();
    let settings = LockSettings {
        remote_timeout: Duration::from_secs(2),
        ..LockSettings::default()
    };
    let scratch = origin.dir.path().join("scratch");
    let client = Arc::new(LockClient::new(&scratch, settings).unwrap());
    let taken = acquire(&client, &origin);
    let Ok(Acquire::Acquired(held)) = taken else {
        panic!("the lane was not taken: {taken:?}");
    };
    // gstack's ref is released first (its alias after it, refused at once while the
    // first is left): its release is the one left at its deadline.
    let own = format!("{} {}", held.sha, held.ref_name);
    assert!(lock_refs_in(&origin.bare).contains(&own), "{own}");
    let included = fifo_included_by_config(&origin.bare);
    let (tx, rx) = mpsc::channel();
    let releaser = Arc::clone(&client);
    std::thread::spawn(move || {
        let _ = tx.send(format!("{:?}", releaser.release(&held)));
    });
    let released = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the release never returned");
    assert!(
        released.contains(&did_not_answer_within_a_writes_deadline()),
        "{released}"
    );
    let writer = answer_stuck_opens(&included).expect("no access is stuck opening the FIFO");
    drop(writer);
    std::fs::remove_file(&included).unwrap();
    std::fs::write(&included, "").unwrap();
    until_none_late_on(&origin.bare);
    let left = lock_refs_in(&origin.bare);
    assert!(
        !left.contains(&own),
        "the released lock {own} still holds the lane after its late release returned: {left:?}"
    );
}

/// A lock client (remote timeout 0.5 s) on a fresh origin whose writes of one kind, once
/// the test [`NearDeadline::start`]ed, wait in the write hook until two seconds before their
/// caller's deadline: they stand for a slow file system's reads between the lock commit's
/// copy and the ref's write.
struct NearDeadline {
    origin: BareOrigin,
    client: Arc<LockClient>,
    settings: LockSettings,
    deadline: Duration,
    started: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl NearDeadline {
    fn new(kind: crate::lane_lock::cas::LockWrite) -> NearDeadline {
        let origin = BareOrigin::new();
        let (mut client, settings, deadline) = short_timeout_client(&origin);
        let started = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let seen = Arc::clone(&started);
        client.set_write_hook(Arc::new(move |write, _| {
            if write == kind
                && let Some(at) = *seen.lock().unwrap()
            {
                let until = at + deadline - Duration::from_secs(2);
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
            }
        }));
        NearDeadline {
            origin,
            client: Arc::new(client),
            settings,
            deadline,
            started,
        }
    }

    /// Starts the clock the hook counts from, with the writers' lock held by another
    /// writer (until the file returned drops): berth's writer child waits for it.
    fn start(&self) -> std::fs::File {
        let writers = hold_writers_lock(&self.origin.bare);
        *self.started.lock().unwrap() = Some(Instant::now());
        writers
    }

    fn elapsed(&self) -> Duration {
        self.started.lock().unwrap().expect("started").elapsed()
    }
}

/// A lock client on `origin` with a remote timeout of 0.5 s, its settings, and the
/// deadline of its local writes.
fn short_timeout_client(origin: &BareOrigin) -> (LockClient, LockSettings, Duration) {
    let settings = LockSettings {
        remote_timeout: Duration::from_millis(500),
        ..LockSettings::default()
    };
    let deadline = crate::lane_lock::ref_writer::local_write_deadline(settings.remote_timeout);
    let client = LockClient::new(&origin.dir.path().join("scratch"), settings).unwrap();
    (client, settings, deadline)
}

/// The writers' lock of the origin `bare`, held as another writer would until the file
/// returned drops.
fn hold_writers_lock(bare: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd as _;
    let writers = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(bare.join(crate::lane_lock::leftover::WRITERS_LOCK))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { nix::libc::flock(writers.as_raw_fd(), nix::libc::LOCK_EX) },
        0
    );
    writers
}

/// Review 46. A take whose thread was still short of its ref's write near its caller's
/// deadline (the hook stands for reads between the objects' copy and the ref's write
/// taking most of it: a slow file system), then started its writer child, which waited
/// for the writers' lock another writer held (up to `WRITERS_WAIT`): the caller left at
/// the deadline, reported the take failed, and the child set the lock ref afterwards, a
/// lock no landing held. Now a thread commits to its ref's write before it starts the
/// child, and a caller whose thread committed waits for it (the child's own bound):
/// what the take reports is what the origin holds.
#[test]
fn a_takes_answer_is_what_its_writer_child_did_when_it_ran_past_the_deadline() {
    let slow = NearDeadline::new(crate::lane_lock::cas::LockWrite::Create);
    let writers = slow.start();
    let taken = acquire(&slow.client, &slow.origin);
    let answered_after = slow.elapsed();
    until_none_late_on(&slow.origin.bare);
    drop(writers);
    let refs = lock_refs_in(&slow.origin.bare);
    match &taken {
        Ok(Acquire::Acquired(held)) => assert!(
            refs.contains(&format!("{} {}", held.sha, held.ref_name)),
            "taken, yet the origin holds {refs:?}"
        ),
        _ => assert_eq!(
            refs,
            Vec::<String>::new(),
            "the take failed ({taken:?}, after {answered_after:?}), yet the lock ref was set: a lock no landing holds"
        ),
    }
    assert!(
        answered_after > slow.deadline,
        "the hook's delay did not carry the write past the deadline ({answered_after:?})"
    );
}

/// Review 47. One local release (a single delete, `force_release`) whose thread committed
/// to its ref's write shortly before its deadline (the hook stands for slow reads), its
/// writer child waiting for the writers' lock another writer holds: its caller waits past
/// the deadline for the child, and the write still answers within
/// `LockSettings::longest_local_write`, on which the daemon's wait for a lane's previous
/// release (3 × it, docs/limits.md) is built.
#[test]
fn one_local_delete_answers_within_the_longest_local_write() {
    let slow = NearDeadline::new(crate::lane_lock::cas::LockWrite::Release);
    let (origin, client) = (&slow.origin, &slow.client);
    let taken = acquire(client, origin);
    let Ok(Acquire::Acquired(held)) = taken else {
        panic!("the lane was not taken: {taken:?}");
    };
    let writers = slow.start();
    let released = client.force_release(&origin.url, &held.ref_name, &held.sha.to_string());
    let took = slow.elapsed();
    until_none_late_on(&origin.bare);
    drop(writers);
    assert!(
        took <= slow.settings.longest_local_write(),
        "one local delete took {took:?} ({released:?}), past the longest local write {:?} the daemon's wait for a previous release counts on",
        slow.settings.longest_local_write()
    );
}

/// Review 47. A committed write (a delete) whose writer child hangs on a FIFO
/// planted at the ref while it waited for the writers' lock, and whose read of the ref
/// after it (libgit2, not applied) hangs on the same FIFO: the caller leaves after the
/// grace, naming what it waited, and the access is left (the next refused) until the
/// FIFO answers.
#[test]
fn a_committed_write_whose_read_after_its_child_hangs_is_left_after_the_grace() {
    use crate::lane_lock::cas::LockWrite;
    use std::sync::Mutex;
    let origin = BareOrigin::new();
    let (mut client, _, deadline) = short_timeout_client(&origin);
    let armed = Arc::new(Mutex::new(None::<mpsc::Sender<()>>));
    let seen = Arc::clone(&armed);
    client.set_write_hook(Arc::new(move |write, _| {
        if write == LockWrite::Release
            && let Some(tx) = seen.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    }));
    let client = Arc::new(client);
    let taken = acquire(&client, &origin);
    let Ok(Acquire::Acquired(held)) = taken else {
        panic!("the lane was not taken: {taken:?}");
    };
    let writers = hold_writers_lock(&origin.bare);
    let (hooked_tx, hooked) = mpsc::channel();
    *armed.lock().unwrap() = Some(hooked_tx);
    let (tx, rx) = mpsc::channel();
    let (releaser, url, ref_name, sha) = (
        Arc::clone(&client),
        origin.url.clone(),
        held.ref_name.clone(),
        held.sha.to_string(),
    );
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(format!(
            "{:?}",
            releaser.force_release(&url, &ref_name, &sha)
        ));
    });
    hooked.recv_timeout(Duration::from_secs(30)).unwrap();
    // Past the thread's last looks: its child waits for the writers' lock.
    std::thread::sleep(Duration::from_millis(700));
    let ref_path = origin.bare.join(&held.ref_name);
    std::fs::remove_file(&ref_path).unwrap();
    nix::unistd::mkfifo(&ref_path, nix::sys::stat::Mode::S_IRWXU).unwrap();
    drop(writers);
    let answer = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the release never returned");
    let took = started.elapsed();
    let left = late_on(&origin.bare);
    let next = format!(
        "{:?}",
        client.force_release(&origin.url, &held.ref_name, &held.sha.to_string())
    );
    // Answer whatever is stuck on the FIFO until nothing is left.
    let give_up = Instant::now() + Duration::from_secs(60);
    while late_on(&origin.bare) > 0 {
        let _ = crate::hostile_file::fifo_race::answer_stuck_opens(&ref_path);
        assert!(Instant::now() < give_up, "the late access never returned");
        std::thread::sleep(Duration::from_millis(50));
    }
    let grace = crate::lane_lock::cas::COMMITTED_GRACE;
    assert!(took < deadline + grace + Duration::from_secs(2), "{took:?}");
    assert!(
        answer.contains(&format!(
            "did not answer within {} s",
            (deadline + grace).as_secs_f64()
        )),
        "{answer}"
    );
    assert_eq!(left, 1);
    assert!(next.contains("has not returned"), "{next}");
}
