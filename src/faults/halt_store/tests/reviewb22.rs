//! Review b22 (failing): what d57ea8a's "move the stale entries aside" takes out of a full
//! registry.

use super::*;
use crate::faults::json_file::MAX_JSON_BYTES;
use crate::faults::registry;

/// Fault `i` of run `r`, its detector `D<i>`, its fault id ~650 KB (a scope from data, as
/// a state file's phase index gives one): twelve fill most of the 8 MiB a registry holds.
fn big_fault(i: usize) -> HaltEvent {
    HaltEvent {
        detector_id: format!("D{i}"),
        fault_id: format!("X:{}:{i:08x}", "s".repeat(650_000)),
        ..event("r", "X", "")
    }
}

/// Run `r` raises twelve faults, all filed and recorded by berth in its one registry
/// (every registry of the run readable, nothing planted). Then one pass sees fault 0
/// clear and a new fault raised that the registry cannot hold beside fault 0's entry. The
/// clear is real: nothing raises fault 0 any more, no registry of the run is unreadable.
/// d57ea8a takes fault 0's entry for a "stale" one (kept raised or planted), moves it aside
/// to `.unreadable-<time>` and never resolves it: no resolved marker is written, that pass
/// or any later one, though the fault cleared (before d57ea8a the pass resolved it and
/// the freed room let the next pass file the new fault).
#[test]
fn a_fault_cleared_in_the_pass_that_fills_its_registry_is_still_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let first: Vec<HaltEvent> = (0..12).map(big_fault).collect();
    let filed = store.sync_run("r", "/s/r.json", &first);
    assert_eq!(filed.emitted.len(), 12, "{:?}", filed.problems);
    let path = registry::path(&dir.path().join(ACTIVE_DIR), "r", "/s/r.json");
    let size = fs::metadata(&path).unwrap().len();
    assert!(size < MAX_JSON_BYTES, "{size}");

    // Fault 0 cleared; fault 12 new: 13 entries do not fit 8 MiB, 12 do.
    let later: Vec<HaltEvent> = (1..13).map(big_fault).collect();
    let cleared = &first[0].fault_id;
    let mut resolved = Vec::new();
    let mut problems = Vec::new();
    for _ in 0..3 {
        let pass = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &later);
        resolved.extend(pass.resolved.iter().map(|f| registry::said_cut(f)));
        problems.extend(pass.problems.iter().map(|p| registry::said_cut(p)));
    }
    assert!(
        store.resolved_path("r", cleared).exists(),
        "fault 0 cleared three passes ago and never resolved (resolved: {resolved:?}); the passes said: {problems:?}"
    );
}
