//! A landing's verdict meets the record's lock held by another process: it is kept and
//! written again, never dropped (a dropped one got its record reclaimed and landed again).

use std::fs;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::World;

/// A daemon landing PR `pr` of `lane`'s repo whose step (after `tail`) waits for the test;
/// the record's lock is held by the test (a producer) from the step's start until the
/// landing's verdict was tried. Returns the daemon, the record id, its berth dir and the
/// file each step start appends a line to.
struct HeldAtVerdict {
    daemon: Child,
    id: String,
    berth_dir: PathBuf,
    starts: PathBuf,
    /// The daemon's arguments, for [`Self::restart`].
    args: Vec<String>,
}

/// What the producer does once the verdict was tried, before it lets go of the lock.
#[derive(Clone, Copy, PartialEq)]
enum AtVerdict {
    /// Nothing.
    LetGo,
    /// Writes the record (a note of its own and `lastUpdatedAt`; the record left
    /// `landing` and claimed by the daemon): what it held the lock for.
    Write,
    /// Waits until the daemon, sent SIGTERM, has exited.
    StopDaemon,
}

impl HeldAtVerdict {
    fn run(world: &World, pr: u64, tail: &str) -> HeldAtVerdict {
        Self::run_writing(world, pr, tail, AtVerdict::LetGo)
    }

    /// [`Self::run`] with the record touched each second, the producer letting go of the
    /// lock as soon as the daemon says it kept the verdict (the landing not yet over: its
    /// step left `junk` files in its worktree, which the landing's end removes while its
    /// record touch still runs).
    fn run_letting_go_at_keep(world: &World, pr: u64, tail: &str, junk: usize) -> HeldAtVerdict {
        let tail = format!("mkdir junk && (cd junk && seq 1 {junk} | xargs touch) && {tail}");
        Self::start(
            world,
            pr,
            &tail,
            Some(1),
            "kept, and written again",
            AtVerdict::LetGo,
        )
    }

    /// [`Self::run`], the producer doing `at` before it lets go of its lock.
    fn run_writing(world: &World, pr: u64, tail: &str, at: AtVerdict) -> HeldAtVerdict {
        Self::start(world, pr, tail, None, &format!("PR #{pr}: "), at)
    }

    /// The daemon and its landing, the producer's lock held from the step's start until
    /// the log says `tried` (or the landing was skipped); `heartbeat`: its `heartbeat_secs`.
    fn start(
        world: &World,
        pr: u64,
        tail: &str,
        heartbeat: Option<u64>,
        tried: &str,
        at: AtVerdict,
    ) -> HeldAtVerdict {
        let lane = world.git_lane("widget", None);
        let id = lane.queue(pr, "main");
        let (starts, go) = (world.root.join("starts"), world.root.join("go"));
        let script = format!(
            "echo $$ >> {starts}; while [ ! -e {go} ]; do sleep 0.05; done; {tail}",
            starts = starts.display(),
            go = go.display(),
        );
        let config = world.step_config("berth.toml", &script);
        if let Some(secs) = heartbeat {
            let text = fs::read_to_string(&config).unwrap();
            // Polled seldom: the tick after the producer lets go is the one the touch
            // wakes (its write), not a poll's.
            let text = text
                .replace("heartbeat_secs = 5", &format!("heartbeat_secs = {secs}"))
                .replace("poll_secs = 1", "poll_secs = 15");
            fs::write(&config, text).unwrap();
        }
        let berth_dir = world.berth_state();
        let args = ["run", "--watch", "--config", config.to_str().unwrap()];
        let daemon = world.spawn_berth(&args, &berth_dir, &[]);
        let mut held = HeldAtVerdict {
            daemon,
            id,
            berth_dir,
            starts,
            args: args.map(str::to_owned).to_vec(),
        };
        let started = world.wait_for(Duration::from_secs(90), || held.steps() == 1);
        assert!(started, "the step never started:\n{}", held.log());
        // The step runs (the record is `landing`): a producer takes the record's lock.
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(world.queue.join(format!(".{}.lock", held.id)))
            .unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(
            unsafe { nix::libc::flock(lock.as_raw_fd(), nix::libc::LOCK_EX) },
            0
        );
        fs::write(&go, "").unwrap();
        let tried = world.wait_for(Duration::from_secs(60), || {
            let log = held.log();
            log.contains("skipped: ") || log.contains(tried)
        });
        if at == AtVerdict::StopDaemon {
            kill(Pid::from_raw(held.daemon.id() as i32), Signal::SIGTERM).unwrap();
            held.daemon.wait().unwrap();
        }
        if at == AtVerdict::Write {
            let mut record = world.read_record(&held.id);
            record["notes"] = "rebased".into();
            record["lastUpdatedAt"] = berth::clock::now_iso().into();
            let file = world.queue.join(format!("{}.json", held.id));
            fs::write(file, record.to_string()).unwrap();
        }
        drop(lock);
        assert!(tried, "the verdict was never tried:\n{}", held.log());
        held
    }

    fn steps(&self) -> usize {
        fs::read_to_string(&self.starts)
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.berth_dir.with_extension("log")).unwrap_or_default()
    }

    /// Starts the daemon again on the same berth dir and configuration (after
    /// [`AtVerdict::StopDaemon`]).
    fn restart(&mut self, world: &World) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.daemon = world.spawn_berth(&args, &self.berth_dir, &[]);
    }

    /// Waits (up to 60 s) until the record is settled, `landed` or `blocked`.
    fn settled(&self, world: &World) -> bool {
        world.wait_for(Duration::from_secs(60), || {
            matches!(
                world.read_record(&self.id)["status"].as_str(),
                Some("landed" | "blocked")
            )
        })
    }

    /// Waits until the record is settled and 4 more ticks passed (time for a reclaim and a
    /// second landing, had the verdict been lost), then stops the daemon: the record, the
    /// steps run, the log.
    fn settled_then_stopped(self, world: &World) -> (serde_json::Value, usize, String) {
        let settled = self.settled(world);
        let ticked = world.wait_ticks(&self.berth_dir, 4, Duration::from_secs(60));
        let (record, steps) = (world.read_record(&self.id), self.steps());
        let log = self.stop();
        assert!(settled && ticked, "{record:#}\n{log}");
        (record, steps, log)
    }

    /// Stops the daemon; its log.
    fn stop(mut self) -> String {
        kill(Pid::from_raw(self.daemon.id() as i32), Signal::SIGTERM).unwrap();
        self.daemon.wait().unwrap();
        self.log()
    }
}

/// A producer (gstack's daemon, `berth enqueue`, an operator's `retry`) holds the record's
/// lock for more than the 250 ms a write waits for it, at the moment a landing that merged
/// its PR writes its `landed` verdict. The store answers `Locked`; a verdict dropped then
/// left the record `landing`, claimed by the live daemon that no longer landed it, and the
/// next tick reclaimed it as "claimed in this daemon's name but no landing of it runs
/// here", queued it and landed it again: a PR merged on origin ended `blocked` ("already
/// merged"). Kept, the verdict is written at a later tick, once the lock is free.
#[test]
fn a_landed_verdict_that_meets_a_held_record_lock_is_not_lost() {
    let world = World::new();
    let held = HeldAtVerdict::run(&world, 8, &world.exec_land());
    let settled = held.settled(&world);
    let record = world.read_record(&held.id);
    let log = held.stop();
    assert!(settled, "{record:#}\n{log}");
    assert_eq!(world.ledger(), [8], "{log}");
    assert_eq!(
        record["status"], "landed",
        "PR #8 merged on origin, its landed verdict lost to a held record lock:\n{record:#}\n{log}"
    );
}

/// The same lock at a `blocked` verdict (the land step failed; it may have done part of
/// its work, so an operator looks before `berth retry`): a dropped verdict got the record
/// reclaimed and queued, and the land step ran a second time on its own.
#[test]
fn a_blocked_verdict_that_meets_a_held_record_lock_does_not_land_again() {
    let world = World::new();
    let held = HeldAtVerdict::run(&world, 9, "exit 1");
    let blocked = world.wait_for(Duration::from_secs(60), || {
        world.read_record(&held.id)["status"] == "blocked"
    });
    // Time for a reclaim and a second landing, had the verdict been dropped.
    let ticked = world.wait_ticks(&held.berth_dir, 4, Duration::from_secs(60));
    let steps = held.steps();
    let log = held.stop();
    assert!(blocked && ticked, "{log}");
    assert_eq!(
        steps, 1,
        "a blocked landing's verdict, lost to a held record lock, ran the land step again:\n{log}"
    );
}

/// The producer that held the record's lock at the `landed` verdict was writing the
/// record (a note and its `lastUpdatedAt`; the record still `landing`, claimed by the
/// daemon). Matched on the exact claim read when it was kept (`lastUpdatedAt` included),
/// the kept verdict met `Reclaimed` and was dropped, the next tick reclaimed the record as
/// "claimed in this daemon's name but no landing of it runs here", and the merged PR was
/// landed again. It is matched on the landing's claim token now, which the write carries.
#[test]
fn a_landed_verdict_kept_past_the_producers_write_is_not_lost() {
    let world = World::new();
    let held = HeldAtVerdict::run_writing(&world, 10, &world.exec_land(), AtVerdict::Write);
    let (record, steps, log) = held.settled_then_stopped(&world);
    assert_eq!(
        (record["status"].as_str(), steps),
        (Some("landed"), 1),
        "PR #10 merged on origin; its kept landed verdict was dropped after the producer's write and the land step ran again:\n{record:#}\n{log}"
    );
}

/// The landing's own record touch, not a producer, dropped a kept verdict: the `landed`
/// verdict meets the producer's lock and is kept; the producer lets go (writing nothing)
/// while the landing is still ending (removing the junk its step left), and the landing's
/// record touch, which ran until the landing was over, wrote the record again with a new
/// `lastUpdatedAt`. The retry's `Expect::Claim` met it and dropped the verdict, the record
/// was reclaimed as "claimed in this daemon's name but no landing of it runs here", and the
/// merged PR landed again. The touches stop before the verdict is written now.
#[test]
fn a_landed_verdict_kept_is_not_lost_to_its_own_landings_record_touch() {
    let world = World::new();
    let held = HeldAtVerdict::run_letting_go_at_keep(&world, 11, &world.exec_land(), 150_000);
    let settled = held.settled(&world);
    // Time for a reclaim and a second landing, had the verdict been dropped (none needed
    // once the second landing ended the record blocked).
    let ticked = world.read_record(&held.id)["status"] == "blocked"
        || world.wait_ticks(&held.berth_dir, 2, Duration::from_secs(40));
    let (record, steps) = (world.read_record(&held.id), held.steps());
    let log = held.stop();
    assert!(settled && ticked, "{record:#}\n{log}");
    assert_eq!(
        (record["status"].as_str(), steps),
        (Some("landed"), 1),
        "PR #11 merged on origin; its kept landed verdict was dropped after its own landing's record touch:\n{record:#}\n{log}"
    );
}

/// The daemon stops (SIGTERM) while the producer still holds the record's lock at its
/// `landed` verdict: the shutdown's last try is refused too. The verdict died with the
/// daemon: the next start reclaimed the record and landed it again (here the claim check
/// found the PR merged). Now the record stays in flight at the stop, the verdict listed in
/// `unsaved-verdicts.json`, and the next start on the same berth dir (the producer gone)
/// writes it onto the landing's claim before any reclaim.
#[test]
fn a_landed_verdict_kept_when_its_daemon_stops_is_written_by_the_next_start() {
    let world = World::new();
    let (record, steps, log) = stopped_at_kept_verdict(&world, 12, &world.exec_land());
    assert_eq!(world.ledger(), [12], "{log}");
    assert_eq!(
        (record["status"].as_str(), steps),
        (Some("landed"), 1),
        "PR #12 merged on origin; its landed verdict, kept when its daemon stopped, was lost:\n{record:#}\n{log}"
    );
    assert!(
        log.contains("the kept landed verdict is written")
            && !log.contains("reclaimed stranded record"),
        "the next start did not write the kept verdict itself:\n{log}"
    );
}

/// The same stop at a `blocked` verdict (the land step failed): the verdict lost, the next
/// start reclaimed the record and ran the land step a second time on its own.
#[test]
fn a_blocked_verdict_kept_when_its_daemon_stops_is_written_by_the_next_start() {
    let world = World::new();
    let (record, steps, log) = stopped_at_kept_verdict(&world, 13, "exit 1");
    assert_eq!(
        (record["status"].as_str(), steps),
        (Some("blocked"), 1),
        "a blocked landing's verdict, kept when its daemon stopped, ran the land step again:\n{record:#}\n{log}"
    );
}

/// A daemon landing PR `pr` (its step's `tail`) stopped while the producer holds the
/// record's lock at the verdict, then started again on the same berth dir once the
/// producer let go: [`HeldAtVerdict::settled_then_stopped`].
fn stopped_at_kept_verdict(
    world: &World,
    pr: u64,
    tail: &str,
) -> (serde_json::Value, usize, String) {
    stopped_at_kept_verdict_then(world, pr, tail, |_| {})
}

/// [`stopped_at_kept_verdict`], `meanwhile` run while the daemon is down (its record in
/// flight, its verdict listed).
fn stopped_at_kept_verdict_then(
    world: &World,
    pr: u64,
    tail: &str,
    meanwhile: impl FnOnce(&HeldAtVerdict),
) -> (serde_json::Value, usize, String) {
    let mut held = HeldAtVerdict::run_writing(world, pr, tail, AtVerdict::StopDaemon);
    let at_stop = world.read_record(&held.id);
    let listed = held.berth_dir.join("unsaved-verdicts.json").exists();
    assert!(
        at_stop["status"] == "landing" && listed,
        "at the stop the record is not left in flight with its verdict listed:\n{at_stop:#}\n{}",
        held.log()
    );
    meanwhile(&held);
    held.restart(world);
    held.settled_then_stopped(world)
}

/// The stop of [`a_blocked_verdict_kept_when_its_daemon_stops_is_written_by_the_next_start`],
/// and another daemon on the queue (its own berth dir, this host, the same config) ticks
/// while the stopped one is down. The stopped daemon's instance lock is free: its owner is
/// gone, so the other daemon reclaims the record at once (not after the lock TTL
/// docs/lane-locks.md counts on for a kept verdict), the next start's takeover meets
/// `Reclaimed` and drops the verdict, and the land step runs a second time.
#[test]
fn a_verdict_kept_when_its_daemon_stops_is_not_reclaimed_by_another_daemon_before_the_next_start() {
    let world = World::new();
    let other_log = std::cell::RefCell::new(String::new());
    let (record, steps, log) = stopped_at_kept_verdict_then(&world, 14, "exit 1", |held| {
        let other_dir = world.root.join("berth-other");
        let args: Vec<&str> = held.args.iter().map(String::as_str).collect();
        let mut other = world.spawn_berth(&args, &other_dir, &[]);
        let ticked = world.wait_ticks(&other_dir, 4, Duration::from_secs(60));
        kill(Pid::from_raw(other.id() as i32), Signal::SIGTERM).unwrap();
        other.wait().unwrap();
        *other_log.borrow_mut() = fs::read_to_string(other_dir.with_extension("log")).unwrap();
        assert!(
            ticked,
            "the other daemon never ticked:\n{}",
            other_log.borrow()
        );
    });
    let other_log = other_log.into_inner();
    assert_eq!(
        (record["status"].as_str(), steps),
        (Some("blocked"), 1),
        "the record whose verdict waited for the next start was reclaimed by another daemon and landed again:\n{record:#}\n--- the other daemon:\n{other_log}\n--- the next start:\n{log}"
    );
}
