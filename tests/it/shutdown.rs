//! Stopping cleanly: what a signal leaves behind on origin.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{World, berth_log};

/// SIGTERM while the lane lock's write waits for origin's writers' lock: the landing stops
/// waiting for the answer after its grace, but its writer child (in a session of its own)
/// writes the lock anyway once the writers' lock is free (let go once the daemon exited,
/// or 2 s after the signal). The stopping daemon waits for that write and releases its
/// lock before it exits: a clean stop leaves no lock on origin.
#[test]
fn a_clean_stop_during_the_lock_write_leaves_no_lock_on_origin() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let writers = lane.hold_writers_lock();
    let config = world.git_forge_config("poll_secs = 3600\n");
    let mut daemon = world.spawn_run_debug("--watch", &config, &[]);
    let log = || berth_log(&world);
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
