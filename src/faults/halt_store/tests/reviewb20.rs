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

/// The same from what a writer of the faults dir can plant: a run's own registry of 2,000
/// faults the run no longer raises (kept raised: another registry of the run is
/// unreadable, a directory at its name), sized so that with one of the run's two detector
/// ids of one fault it fits the 8 MiB berth writes and with both it does not. Every pass
/// of that run, its detections unchanged, then reads, parses, serialises twice (pretty,
/// compact) and rewrites ~8 MiB.
#[test]
fn review_b20_a_planted_registry_near_8_mib_is_rewritten_every_pass() {
    let dir = tempfile::tempdir().unwrap();
    HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &[]);
    let active = dir.path().join(ACTIVE_DIR);
    fs::create_dir(registry::path(&active, "r", "/s/r2.json")).unwrap();
    let base = event("r", "X", "");
    let long = "p".repeat(600);
    let events: Vec<HaltEvent> = (0..2)
        .map(|n| HaltEvent {
            detector_id: registry::key(&format!("X:{n}:{long}")),
            ..base.clone()
        })
        .collect();
    let planted_fault = |i: usize, scope: usize| registry::ActiveFault {
        fault_id: format!("K:{}:{i:08x}", "s".repeat(scope)),
        first_detected_at: String::new(),
    };
    let mut planted = registry::Registry {
        run_id: "r".into(),
        source: "/s/r.json".into(),
        updated_at: crate::clock::now_iso(),
        active: (0..2_000)
            .map(|i| (format!("P:{i}:*"), planted_fault(i, 4_000)))
            .collect(),
    };
    // Compact, as berth writes it, with the first `n` of the run's detector ids.
    let written = |planted: &registry::Registry, n: usize| {
        let mut with = planted.clone();
        for e in &events[..n] {
            let fault = registry::ActiveFault {
                fault_id: e.fault_id.clone(),
                first_detected_at: e.timestamp.clone(),
            };
            with.active.insert(e.detector_id.clone(), fault);
        }
        serde_json::to_vec(&with).unwrap().len() as u64 + 1
    };
    let cap = json_file::MAX_JSON_BYTES;
    let pad = (cap - 10 - written(&planted, 1)) as usize;
    planted
        .active
        .insert("P:0:*".into(), planted_fault(0, 4_000 + pad));
    assert_eq!(written(&planted, 1), cap - 10);
    assert!(written(&planted, 2) > cap);
    let path = registry::path(&active, "r", "/s/r.json");
    fs::write(&path, serde_json::to_vec(&planted).unwrap()).unwrap();

    let first = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &events);
    assert_eq!(first.emitted.len(), 1, "{:?}", first.problems);
    let inode = || fs::metadata(&path).unwrap().ino();
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
        fs::metadata(&path).unwrap().len()
    );
}

/// docs/limits.md: a filing held because its name holds another run's file is "one problem
/// (a log error line) per run and fault each pass". Whoever writes the build-state dir can
/// give one run id many state files (each its own registry, each synced by the pass): run
/// `a/b` raising one fault in 50 state files while `a_b`'s event of it is pending makes the
/// pass (one store, as the daemon makes one per pass) say the held filing 50 times, and
/// every pass again until the other event is acked or drained; 10,000 state files (the
/// pass's listing cap), ~900 bytes a line, ~9 MB of error lines a pass.
#[test]
fn review_b20_a_held_filing_is_said_once_a_pass_however_many_state_files_raise_it() {
    const STATE_FILES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let first = store.sync_run("a_b", "/s/a_b.json", &[event("a_b", "X", "")]);
    assert_eq!(first.emitted.len(), 1, "{first:?}");
    let held = event("a/b", "X", "");
    let pass = HaltStore::new(dir.path());
    let lines: Vec<String> = (0..STATE_FILES)
        .flat_map(|n| {
            pass.sync_run(
                "a/b",
                &format!("/s/a-b-{n}.json"),
                std::slice::from_ref(&held),
            )
            .problems
        })
        .filter(|line| line.contains("held back"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one pass said: {:?}",
        &lines[..2.min(lines.len())]
    );
}

/// a73c769 files no new fault its run's registry could not record, and says so in a log
/// line only. Whoever writes the faults dir plants the run's own registry just under the
/// 8 MiB berth reads (2,000 faults the run does not raise, kept raised because another
/// registry of the run is unreadable, a directory at its name): the registry is read, not
/// moved aside, and every new fault of the state file is then never filed, no halt event,
/// no cap event, pass after pass: the hiding a73c769 moves an over-8 MiB registry aside
/// to prevent ("left unread it would hide every new fault of its state file for good").
#[test]
fn review_b20_a_planted_registry_just_under_8_mib_hides_every_new_fault_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &[]);
    let active = dir.path().join(ACTIVE_DIR);
    fs::create_dir(registry::path(&active, "r", "/s/r2.json")).unwrap();
    let planted_fault = |i: usize, scope: usize| registry::ActiveFault {
        fault_id: format!("K:{}:{i:08x}", "s".repeat(scope)),
        first_detected_at: String::new(),
    };
    let mut planted = registry::Registry {
        run_id: "r".into(),
        source: "/s/r.json".into(),
        updated_at: crate::clock::now_iso(),
        active: (0..2_000)
            .map(|i| (format!("P:{i}:*"), planted_fault(i, 4_000)))
            .collect(),
    };
    let cap = json_file::MAX_JSON_BYTES;
    let size = |r: &registry::Registry| serde_json::to_vec(r).unwrap().len() as u64 + 1;
    let pad = (cap - 20 - size(&planted)) as usize;
    planted
        .active
        .insert("P:0:*".into(), planted_fault(0, 4_000 + pad));
    assert_eq!(size(&planted), cap - 20);
    let path = registry::path(&active, "r", "/s/r.json");
    fs::write(&path, serde_json::to_vec(&planted).unwrap()).unwrap();

    let raised = event("r", "X", "");
    let store = HaltStore::new(dir.path());
    let pass = store.sync_run("r", "/s/r.json", std::slice::from_ref(&raised));
    assert!(
        store.pending_path("r", &raised.fault_id).exists(),
        "the run's new fault was not filed; the pass said first: {:?}",
        pass.problems.first()
    );
}
