//! Review of the background lane lock release: stops that leave a lock on origin, and
//! signals a stopping `--once` does not hear.

use std::fs;
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::World;

/// SIGTERM while the lane lock's write waits for origin's writers' lock: the landing stops
/// waiting for the answer after its grace, the daemon exits, and its writer child (in a
/// session of its own) writes the lock anyway once the writers' lock is free (let go once
/// the daemon exited, or 2 s after the signal). Nobody is
/// left to release it: a clean stop leaves the lane locked on origin until its TTL.
#[test]
fn a_clean_stop_during_the_lock_write_leaves_no_lock_on_origin() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let writers = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::path::Path::new(&lane.remote_url).join("berth-lane-locks.lock"))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { nix::libc::flock(writers.as_raw_fd(), nix::libc::LOCK_EX) },
        0
    );
    let config = world.git_forge_config("poll_secs = 3600\n");
    let mut daemon = world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[("BERTH_LOG", std::path::Path::new("berth=debug"))],
    );
    let log = || fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    let taking = world.wait_for(Duration::from_secs(60), || {
        log().contains("taking the lane lock")
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    // Held past the landing's 1 s answer grace, and no longer: a daemon that waits for
    // its lock write to answer gets it at once then, and exits well within its budget.
    let mut exited = None;
    world.wait_for(Duration::from_secs(2), || {
        exited = daemon.try_wait().unwrap();
        exited.is_some()
    });
    drop(writers);
    let status = exited.unwrap_or_else(|| daemon.wait().unwrap());
    // Whatever berth started writes within its writer's 8 s alarm.
    let left = world.wait_for(Duration::from_secs(12), || {
        !world.lock_refs(&lane.remote_url).is_empty()
    });
    assert!(taking, "{}", log());
    assert_eq!(status.code(), Some(143), "{}", log());
    assert_eq!(world.read_record(&id)["status"], "queued", "{}", log());
    assert!(
        !left,
        "the daemon stopped cleanly, then a lock of its appeared on origin: {:?} {}",
        world.lock_refs(&lane.remote_url),
        log()
    );
}

/// `run --once` whose landing is done while its lock release is still in flight: a SIGTERM
/// then is not heard; the run exits 0 as if never signalled, where a signal at any other
/// moment exits 128 + 15.
#[test]
fn a_once_run_signalled_while_its_release_is_in_flight_exits_as_signalled() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let hold = world.root.join("hold");
    let bin = crate::throughput::hold_first_lock_delete(&world, &hold);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let config = world.git_forge_config("");
    let mut daemon = world.spawn_berth(
        &["run", "--once", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[
            ("PATH", std::path::Path::new(&path)),
            ("BERTH_LOG", std::path::Path::new("berth=debug")),
        ],
    );
    let held = world.wait_for(Duration::from_secs(60), || hold.join("held").exists());
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    // Heard or not, the signal was delivered before the release is let go.
    std::thread::sleep(Duration::from_millis(300));
    fs::write(hold.join("go"), "").unwrap();
    let status = daemon.wait().unwrap();
    let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap();
    assert!(held, "{log}");
    assert_eq!(world.read_record(&id)["status"], "landed", "{log}");
    assert_eq!(
        world.lock_refs(&lane.remote_url),
        Vec::<String>::new(),
        "{log}"
    );
    assert_eq!(status.code(), Some(143), "the SIGTERM was not heard: {log}");
}
