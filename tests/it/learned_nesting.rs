//! The lookbehind split (`split_lookbehinds`) runs on a learned regex before the rewrite's
//! 16 KiB cap and before either engine's nesting limit, and recurses once per nested
//! lookbehind. A 30 KB pattern of nested lookbehinds (an 8 MiB learned file holds far
//! more) overflows the stack of the daemon's `learned-compile` thread (Rust's default
//! 2 MiB), and a stack overflow aborts the whole daemon.

use std::fs;
use std::time::Duration;

use serde_json::json;

use crate::support::{World, berth_log, spawn_ticking};

/// A learned `stdout_regex` entry.
fn entry(category: &str, pattern: &str) -> serde_json::Value {
    json!({"category": category, "severity": "HIGH", "description": "d",
           "matcherKind": "stdout_regex", "pattern": pattern})
}

#[test]
fn nested_lookbehinds_in_a_learned_file_do_not_take_the_daemon_down() {
    let world = World::new();
    let config = world.git_forge_config("poll_secs = 1\n");
    // A run for the fault watch to match learned patterns against.
    let build_state = world.home.join(".gstack/build-state");
    let stdout = build_state.join("run.log");
    fs::write(&stdout, "ECONNRESET\n").unwrap();
    let state = json!({"slug": "run", "stdoutLog": stdout});
    fs::write(build_state.join("run.json"), state.to_string()).unwrap();
    let faults = world.home.join(".gstack/skill-faults");
    fs::create_dir_all(&faults).unwrap();
    let learned = faults.join("learned-patterns.json");
    fs::write(&learned, json!([entry("NET", "ECONN")]).to_string()).unwrap();
    let mut daemon = spawn_ticking(&world, &config, 2);
    // Changed while the daemon runs: compiled off the tick, on its `learned-compile` thread.
    let depth = 6_000;
    let nested = format!("{}a{}", "(?<=".repeat(depth), ")".repeat(depth));
    let file = json!([entry("NET", "ECONN"), entry("NESTED", &nested)]);
    fs::write(&learned, file.to_string()).unwrap();
    let mut exited = None;
    world.wait_for(Duration::from_secs(120), || {
        exited = daemon.try_wait().unwrap();
        exited.is_some() || berth_log(&world).contains("entry 1 (NESTED)")
    });
    let log = berth_log(&world);
    if exited.is_none() {
        crate::support::stop(daemon);
    }
    assert!(
        exited.is_none(),
        "the daemon died loading a {}-byte pattern of {depth} nested lookbehinds: {exited:?}\n{}",
        nested.len(),
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(log.contains("entry 1 (NESTED)"), "refused by index: {log}");
}
