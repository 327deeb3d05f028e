//! Review b23 (failing): a full registry moves aside the entries it keeps raised while
//! another registry of the run is unreadable (697ff6b), without resolving their faults;
//! when such a fault is detected again it is no longer recorded anywhere berth reads, so it
//! is "new" and filed again: an acknowledged event comes back as pending.

use super::*;
use crate::faults::registry;

/// Fault `i` of run `r`, its detector `D<i>`, its fault id ~650 KB (a scope from data):
/// twelve fill most of the 8 MiB a registry holds.
fn big_fault(i: usize) -> HaltEvent {
    HaltEvent {
        detector_id: format!("D{i}"),
        fault_id: format!("X:{}:{i:08x}", "s".repeat(650_000)),
        ..event("r", "X", "")
    }
}

/// Run `r` raises twelve big faults, all filed; fault 0's event is acknowledged. Another
/// registry of the run is unreadable (a directory at its name). Fault 0 leaves the state
/// as a new fault 12 comes: fault 0 is kept raised (the unreadable registry may hold it),
/// and the full registry moves its entry aside to file fault 12. Fault 0 is then detected
/// again (fault 1 leaves to make room the same way): never resolved, it is the same raised
/// fault, but berth files it again and the acknowledged event is pending once more.
#[test]
fn a_fault_moved_aside_from_a_full_registry_is_not_filed_again_after_its_ack() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let faults: Vec<HaltEvent> = (0..13).map(big_fault).collect();
    let filed = store.sync_run("r", "/s/r.json", &faults[..12]);
    assert_eq!(filed.emitted.len(), 12, "{:?}", filed.problems);
    store
        .mark_investigated("r", &faults[0].fault_id)
        .expect("fault 0 acknowledged");
    assert!(!store.pending_path("r", &faults[0].fault_id).exists());
    fs::create_dir(registry::path(
        &dir.path().join(ACTIVE_DIR),
        "r",
        "/s/r2.json",
    ))
    .unwrap();

    // The lines saying what a pass moved aside (the others name 650 KB fault ids).
    let said = |pass: &SyncReport| -> Vec<String> {
        pass.problems
            .iter()
            .filter(|p| p.contains("moved aside"))
            .map(|p| registry::said_cut(p))
            .collect()
    };
    // Fault 0 gone from the state, fault 12 new.
    let second = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &faults[1..13]);
    assert!(
        second.resolved.is_empty(),
        "nothing may be resolved while a registry of the run is unreadable: {:?}",
        said(&second)
    );
    // Fault 0 detected again (still never resolved); fault 1 gone.
    let again: Vec<HaltEvent> = std::iter::once(faults[0].clone())
        .chain(faults[2..13].iter().cloned())
        .collect();
    let third = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &again);
    assert!(
        !store.pending_path("r", &faults[0].fault_id).exists(),
        "fault 0, acknowledged and never resolved, is pending again; the second pass said \
         {:?}, the third emitted {} and said {:?}",
        said(&second),
        third.emitted.len(),
        said(&third)
    );
}
