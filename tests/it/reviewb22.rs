//! Review b22 (failing): the learned regexes' compiled-memory budget against a backtracking
//! regex whose one backreference sits in an alternation of many branches.

use std::fs;

use serde_json::json;

/// Resident memory of this process, in KiB.
fn resident_kib() -> u64 {
    berth::telemetry::process::sample()
        .resident_bytes
        .expect("Linux gives VmRSS")
        / 1024
}

/// docs/limits.md: all compiled learned regexes hold "32 MiB together". A backtracking
/// regex is charged by its lookarounds and backreferences (aa858f6: 32 KiB a stretch, `2n +
/// 1` stretches), but fancy-regex compiles every branch of an alternation that holds one of
/// them as a regex of its own: `(a)(?:[ab]0|[ab]1|…|\1)`, one backreference and ~1,000
/// branches in 8 KB, is charged 96 KiB and holds ~1,000 compiled regexes. Twelve such
/// entries (a 100 KB file, all accepted) hold more than the budget; the 341 the budget
/// admits, ~30 times more.
#[test]
fn a_backreference_among_many_branches_is_charged_what_it_holds() {
    use berth::faults::learned::LearnedSet;
    use berth::faults::learned_match::COMPILED_BUDGET_BYTES;
    const ENTRIES: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let branches: String = (0..1_000).map(|j| format!("[ab]{j}|")).collect();
    let entries: Vec<_> = (0..ENTRIES)
        .map(|n| {
            json!({"category": format!("BRANCHES_{n}"), "severity": "MEDIUM", "description": "x",
                   "matcherKind": "stdout_regex", "pattern": format!("(a)(?:{branches}\\1)z{n}")})
        })
        .collect();
    let path = dir.path().join("learned-patterns.json");
    fs::write(&path, json!(entries).to_string()).unwrap();
    let before = resident_kib();
    let set = LearnedSet::load(&path).unwrap();
    let held_mib = resident_kib().saturating_sub(before) / 1024;
    assert_eq!(set.patterns.len(), ENTRIES, "{:?}", set.warnings);
    let budget_mib = (COMPILED_BUDGET_BYTES >> 20) as u64;
    assert!(
        held_mib <= budget_mib,
        "{ENTRIES} accepted learned regexes of one backreference each hold {held_mib} MiB resident; all of them may hold {budget_mib} MiB"
    );
    drop(set);
}
