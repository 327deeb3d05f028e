//! Hot-reload latency: from a rule file being written (temp file + rename, as editors
//! save) to the new rule set being active, through the real path — notify watcher,
//! debounce, compile, validate, rule tests, atomic swap.
//!
//! A plain `main` timed with `std::time`: `cargo bench --bench rules_reload`. The target is
//! under 250 ms at p50, debounce included.

use std::path::Path;
use std::time::{Duration, Instant};

use berth::rules::{ReloadWatcher, Rules, RulesStatus};

const WARMUP: usize = 2;
const EDITS: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let root = tempfile::tempdir().expect("temp rules root");
    let state = tempfile::tempdir().expect("temp state dir");
    let policy = root.path().join("policies/landing.rhai");
    std::fs::create_dir_all(root.path().join("rules")).expect("rules dir");
    std::fs::create_dir_all(policy.parent().expect("policies dir")).expect("policies dir");
    let base = berth::rules::embedded::FILES
        .iter()
        .find(|(name, _)| *name == "policies/landing.rhai")
        .map(|(_, text)| *text)
        .expect("the landing policy is embedded");
    std::fs::write(&policy, base).expect("initial policy");

    let rules = Rules::load(Some(root.path())).expect("the rules load");
    let status = RulesStatus::started(&rules.current());
    status.write(state.path()).expect("status file");
    let _watcher = ReloadWatcher::start(rules.clone(), state.path().to_owned(), status)
        .expect("watcher starts");
    // Let the watch settle before the first edit.
    std::thread::sleep(Duration::from_millis(200));

    let mut times = Vec::with_capacity(EDITS);
    for i in 0..WARMUP + EDITS {
        let text = format!("{base}\n// edit {i}\n");
        let took = edit_and_wait(&rules, &policy, &text);
        if i >= WARMUP {
            times.push(took);
        }
        // Edits a human makes are seconds apart; keep them out of one debounce window.
        std::thread::sleep(Duration::from_millis(50));
    }
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    println!(
        "rules_reload: write -> active over {EDITS} edits: p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms (debounce {} ms)",
        ms(pct(50)),
        ms(pct(90)),
        ms(times[0]),
        ms(times[times.len() - 1]),
        berth::rules::reload::DEBOUNCE.as_millis()
    );
}

/// Writes `text` the way an editor saves, then waits for a different set to be active.
fn edit_and_wait(rules: &Rules, path: &Path, text: &str) -> Duration {
    let before = rules.current().hash().to_owned();
    let started = Instant::now();
    berth::atomic_file::write_atomic(path, text.as_bytes(), 0o644).expect("rule written");
    while rules.current().hash() == before {
        assert!(started.elapsed() < TIMEOUT, "the edit was never swapped in");
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
