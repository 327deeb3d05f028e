//! The decision log rotates under its readers: `berth explain` (one process) reads every
//! generation while the daemon's writer (another) rotates them, and sees no line missing
//! from the middle of what it read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use berth::rules::contracts::Decided;
use berth::rules::decisions::{DecisionLog, Subject};
use serde_json::Value;

use crate::support::World;

/// A log small enough to rotate every dozen lines, written as fast as one thread can while
/// `explain` reads it 30 times: each read's reasons (the writer's sequence numbers) run
/// without a gap. Generations the rotation dropped may cut its start, never its middle.
#[test]
fn explain_reading_while_the_log_rotates_misses_no_line() {
    let world = World::new();
    let berth_dir = world.berth_state();
    std::fs::create_dir_all(&berth_dir).unwrap();
    let log = Arc::new(DecisionLog::with_limit(&berth_dir, 4096));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, done) = (Arc::clone(&log), Arc::clone(&done));
        std::thread::spawn(move || {
            let decided = Decided {
                value: (),
                file: "policies/landing.rhai",
                function: "admit",
                ruleset: "r".into(),
                error: None,
                args: Vec::new(),
            };
            let subject = Subject {
                id: "gh-acme-main-pr-7",
                pr: 7,
                repo: "github.com/acme/widget",
            };
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                log.decision(&decided, Some(subject), "wait", &format!("{n}"));
                n += 1;
            }
        })
    };
    let mut gaps = Vec::new();
    let mut reads = 0;
    for _ in 0..30 {
        let out = world
            .berth_daemon()
            .args(["explain", "7", "--json"])
            .output()
            .unwrap();
        let Ok(story) = serde_json::from_slice::<Value>(&out.stdout) else {
            continue;
        };
        let seen: Vec<u64> = story["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|line| line["reason"].as_str()?.parse().ok())
            .collect();
        reads += 1;
        if let Some(gap) = seen.windows(2).find(|pair| pair[1] != pair[0] + 1) {
            gaps.push(gap.to_vec());
        }
    }
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(reads >= 25, "explain failed {} times of 30", 30 - reads);
    assert!(gaps.is_empty(), "lines missing between {gaps:?}");
}
