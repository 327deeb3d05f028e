//! Review 20: a landing's verdict meets the record's lock held by another process.

use std::fs;
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::World;

/// A producer (gstack's daemon, `berth enqueue`, an operator's `retry`) holds the record's
/// lock for more than the 250 ms a write waits for it, at the moment a landing that merged
/// its PR writes its `landed` verdict. The store answers `Locked` (not `Io`), so the
/// verdict is neither written nor kept for a later tick: the record stays `landing`,
/// claimed by the live daemon that no longer lands it, the next tick reclaims it as
/// "claimed in this daemon's name but no landing of it runs here", queues it, and lands
/// it again. A PR merged on origin ends `blocked` ("already merged") instead of `landed`.
#[test]
fn a_landed_verdict_that_meets_a_held_record_lock_is_not_lost() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(8, "main");
    let (starts, go) = (world.root.join("starts"), world.root.join("go"));
    let script = format!(
        "echo $$ >> {starts}; while [ ! -e {go} ]; do sleep 0.05; done; {exec_land}",
        starts = starts.display(),
        go = go.display(),
        exec_land = world.exec_land(),
    );
    let config = world.step_config("berth.toml", &script);
    let berth_dir = world.berth_state();
    let args = ["run", "--watch", "--config", config.to_str().unwrap()];
    let mut daemon = world.spawn_berth(&args, &berth_dir, &[]);
    let log = || fs::read_to_string(berth_dir.with_extension("log")).unwrap_or_default();
    let steps = || {
        fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let started = world.wait_for(Duration::from_secs(90), || steps() == 1);

    // The step runs (the record is `landing`): a producer takes the record's lock.
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(world.queue.join(format!(".{id}.lock")))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { nix::libc::flock(lock.as_raw_fd(), nix::libc::LOCK_EX) },
        0
    );
    fs::write(&go, "").unwrap();
    let verdict_tried = world.wait_for(Duration::from_secs(60), || {
        log().contains("landed, but") || log().contains(&format!("PR #8: "))
    });
    drop(lock);
    let settled = world.wait_for(Duration::from_secs(60), || {
        matches!(
            world.read_record(&id)["status"].as_str(),
            Some("landed" | "blocked")
        )
    });
    let record = world.read_record(&id);
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    let log = log();
    assert!(started, "the step never started:\n{log}");
    assert!(verdict_tried, "the verdict was never written:\n{log}");
    assert!(settled, "{record:#}\n{log}");
    assert!(lane.merged("feat/pr-8", "main"), "{log}");
    assert_eq!(world.ledger(), [8], "{log}");
    assert_eq!(
        record["status"], "landed",
        "PR #8 merged on origin, its landed verdict lost to a held record lock:\n{record:#}\n{log}"
    );
}
