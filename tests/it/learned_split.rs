//! What the lookbehind split (`split_lookbehinds`) walks is bounded before it runs: a
//! learned pattern nested too deep, or with a group left open, is refused at load by
//! index (docs/limits.md). The split recursed once per nested lookbehind, so 6,000 of them
//! (30 KB) overflowed the `learned-compile` thread's stack and aborted the daemon; and it
//! scanned the rest of the pattern for every unclosed `(?<=`, so the first load (which the
//! fault watch waits for) took the square of the pattern's length (64 KB: 30 s).

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::support::{World, berth_log, spawn_ticking, stop, ticks};

/// A learned `stdout_regex` entry.
fn entry(category: &str, pattern: &str) -> serde_json::Value {
    json!({"category": category, "severity": "HIGH", "description": "d",
           "matcherKind": "stdout_regex", "pattern": pattern})
}

/// A run whose stdout the learned `ECONN` matches, for the fault watch; the learned file's
/// path (not yet written).
fn run_matched_by_econn(world: &World) -> PathBuf {
    let build_state = world.home.join(".gstack/build-state");
    let stdout = build_state.join("run.log");
    fs::write(&stdout, "ECONNRESET\n").unwrap();
    let state = json!({"slug": "run", "stdoutLog": stdout});
    fs::write(build_state.join("run.json"), state.to_string()).unwrap();
    let faults = world.home.join(".gstack/skill-faults");
    fs::create_dir_all(&faults).unwrap();
    faults.join("learned-patterns.json")
}

/// Writes `nested` into the learned file of a running daemon, which compiles it off the
/// tick on its `learned-compile` thread, and asserts the daemon outlives it and refuses it
/// by index; `what` says what it holds.
fn assert_refused_by_a_live_daemon(nested: &str, what: &str) {
    let world = World::new();
    let config = world.git_forge_config("poll_secs = 1\n");
    let learned = run_matched_by_econn(&world);
    fs::write(&learned, json!([entry("NET", "ECONN")]).to_string()).unwrap();
    let mut daemon = spawn_ticking(&world, &config, 2);
    let file = json!([entry("NET", "ECONN"), entry("NESTED", nested)]);
    fs::write(&learned, file.to_string()).unwrap();
    let mut exited = None;
    world.wait_for(Duration::from_secs(120), || {
        exited = daemon.try_wait().unwrap();
        exited.is_some() || berth_log(&world).contains("entry 1 (NESTED)")
    });
    let log = berth_log(&world);
    if exited.is_none() {
        stop(daemon);
    }
    assert!(
        exited.is_none(),
        "the daemon died loading a {}-byte pattern of {what}: {exited:?}\n{}",
        nested.len(),
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(log.contains("entry 1 (NESTED)"), "refused by index: {log}");
}

/// Starts a daemon on a learned file of `ECONN` then `patterns` (as `SPLIT0`…), and asserts
/// that the first fault watch pass that has the learned set, which waits for its first
/// load, files the run's fault (the refused entries left out) within 5 ticks.
fn assert_the_fault_watch_files_within_five_ticks(patterns: &[String]) {
    let world = World::new();
    let config = world.git_forge_config("poll_secs = 1\n");
    let learned = run_matched_by_econn(&world);
    let mut entries = vec![entry("NET", "ECONN")];
    entries.extend(
        patterns
            .iter()
            .enumerate()
            .map(|(i, pattern)| entry(&format!("SPLIT{i}"), pattern)),
    );
    fs::write(&learned, json!(entries).to_string()).unwrap();
    let daemon = spawn_ticking(&world, &config, 1);
    let now = ticks(&world).unwrap();
    let ticked = world.wait_for(Duration::from_secs(60), || {
        ticks(&world).is_some_and(|n| n >= now + 5.0)
    });
    let after = ticks(&world);
    let log = berth_log(&world);
    stop(daemon);
    assert!(ticked, "ticks stopped: {log}");
    let lengths: Vec<usize> = patterns.iter().map(String::len).collect();
    assert!(
        log.contains("fault raised: halt event written"),
        "no fault watch pass filed the run's fault by tick {after:?}, while learned patterns of {lengths:?} bytes were split: {log}"
    );
}

#[test]
fn nested_lookbehinds_in_a_learned_file_do_not_take_the_daemon_down() {
    let depth = 6_000;
    let nested = format!("{}a{}", "(?<=".repeat(depth), ")".repeat(depth));
    assert_refused_by_a_live_daemon(&nested, &format!("{depth} nested lookbehinds"));
}

#[test]
fn unclosed_lookbehinds_in_a_learned_file_do_not_stall_the_fault_watch() {
    // 96 KB of unclosed `(?<=`: once 24,000 scans of the rest before it was refused.
    assert_the_fault_watch_files_within_five_ticks(&["(?<=".repeat(24_000)]);
}

/// The nesting check counts over the split's tokens: when it ended a class at its first
/// `]`, where the split reads a `]` first in a class as a character, `[]` followed by 64
/// `)` and `]` closed 64 groups to the check and none to the split. 40 such blocks of 64
/// `(?<=` (15 KB, under the 16 KiB cap) nest 2,560 lookbehinds the split recursed into,
/// which the check saw 64 deep.
#[test]
fn nesting_behind_an_empty_class_does_not_take_the_daemon_down() {
    let block = format!("{}[]{}]", "(?<=".repeat(64), ")".repeat(64));
    let nested = format!("{}a{}", block.repeat(40), ")".repeat(64 * 40));
    assert_refused_by_a_live_daemon(&nested, "2,560 lookbehinds nested behind `[]`");
}

/// `(?<=[])]` was a closed group to a nesting check ending the class at `[]`, and an
/// unclosed one to the split (`[])]` one class), which scanned the rest of the pattern for
/// the end of each: 2,048 of them under the 16 KiB cap cost the square (0.8 s a pattern
/// in a debug build), and a learned file holds 512 such entries. 40 of them stalled the
/// first load, which the fault watch waits for, past 5 ticks (40 entries of 4,096 `(?<=`,
/// refused by the check, left the fault filed within them).
#[test]
fn unclosed_lookbehinds_behind_an_empty_class_do_not_stall_the_fault_watch() {
    assert_the_fault_watch_files_within_five_ticks(&vec!["(?<=[])]".repeat(2_048); 40]);
}
