//! Review b20 (failing): a registry saved with one detector id per fault id (past 8 MiB
//! even compact) is rewritten on every pass though the run's faults never change: the
//! detector ids it left out are "new" again each pass, re-inserted, and left out again.

use super::*;
use std::os::unix::fs::MetadataExt;

/// 20,000 detector ids (keys of ~500 bytes, as a long plan path makes) of one fault: the
/// first sync files it once and saves the registry with one detector id; every later
/// sync with the very same detections should be a stat (docs/limits.md: a run's own
/// registry is not read while its stamp is the one last read and the detectors find the
/// same ids), not an 8 MiB read, parse and rewrite of the registry each pass.
#[test]
fn review_b20_a_registry_cut_to_one_id_per_fault_is_not_rewritten_every_pass() {
    const DETECTORS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let base = event("r", "X", "");
    let long = "p".repeat(600);
    let events: Vec<HaltEvent> = (0..DETECTORS)
        .map(|n| HaltEvent {
            detector_id: registry::key(&format!("X:{n}:{long}")),
            ..base.clone()
        })
        .collect();
    let registry_path = dir
        .path()
        .join(ACTIVE_DIR)
        .join(registry::name("r", "/s/r.json"));
    let inode = || fs::metadata(&registry_path).unwrap().ino();
    let first = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &events);
    assert_eq!(first.emitted.len(), 1, "{:?}", first.problems);
    let mut rewrites = 0;
    for _ in 0..3 {
        let before = inode();
        let pass = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &events);
        assert!(pass.emitted.is_empty() && pass.resolved.is_empty());
        rewrites += usize::from(inode() != before);
    }
    assert_eq!(
        rewrites,
        0,
        "passes that changed nothing rewrote the {} byte registry",
        fs::metadata(&registry_path).unwrap().len()
    );
}
