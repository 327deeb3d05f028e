//! The lookbehind split (`split_lookbehinds`) runs on a learned regex before the rewrite's
//! 16 KiB cap, and for every `(?<=` whose group does not close it scans the rest of the
//! pattern for the close: `(?<=` repeated costs the square of its length (64 KB: 30 s in
//! a debug build; the 8 MiB a learned file may hold, hours). The first load of the file is
//! waited for, so the daemon's fault watch waits for it: the fault a learned pattern
//! beside it finds is not filed meanwhile.

use std::fs;
use std::time::Duration;

use serde_json::json;

use crate::support::{World, berth_log, spawn_ticking, stop, ticks};

#[test]
fn unclosed_lookbehinds_in_a_learned_file_do_not_stall_the_fault_watch() {
    let world = World::new();
    let config = world.git_forge_config("poll_secs = 1\n");
    // A run whose stdout the learned `ECONN` matches: the first fault watch pass that has
    // the learned set files its fault (with the split entry left out, within a tick).
    let build_state = world.home.join(".gstack/build-state");
    let stdout = build_state.join("run.log");
    fs::write(&stdout, "ECONNRESET\n").unwrap();
    let state = json!({"slug": "run", "stdoutLog": stdout});
    fs::write(build_state.join("run.json"), state.to_string()).unwrap();
    let faults = world.home.join(".gstack/skill-faults");
    fs::create_dir_all(&faults).unwrap();
    // 96 KB: refused once split (unclosed), but only after 24,000 scans of the rest.
    let pattern = "(?<=".repeat(24_000);
    let file = json!([{"category": "NET", "severity": "HIGH", "description": "d",
                       "matcherKind": "stdout_regex", "pattern": "ECONN"},
                      {"category": "SPLIT", "severity": "HIGH", "description": "d",
                       "matcherKind": "stdout_regex", "pattern": pattern}]);
    fs::write(faults.join("learned-patterns.json"), file.to_string()).unwrap();
    let daemon = spawn_ticking(&world, &config, 1);
    let now = ticks(&world).unwrap();
    let ticked = world.wait_for(Duration::from_secs(60), || {
        ticks(&world).is_some_and(|n| n >= now + 5.0)
    });
    let after = ticks(&world);
    let log = berth_log(&world);
    stop(daemon);
    assert!(ticked, "ticks stopped: {log}");
    assert!(
        log.contains("fault raised: halt event written"),
        "no fault watch pass filed the run's fault by tick {after:?}, while a {}-byte learned pattern was split: {log}",
        pattern.len()
    );
}
