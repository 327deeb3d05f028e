//! A run's registry at the 8 MiB berth reads back: what the pass filed must not be filed
//! again, a registry cut to one detector id per fault is not rewritten while its faults
//! stay, and a full one keeps the faults it keeps raised recorded: an ack is never undone.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::faults::json_file::MAX_JSON_BYTES;
use crate::faults::registry::{self, ActiveFault, Registry};
use crate::private_dir::PrivateDir;

/// A run's own registry planted (valid, within the 8 MiB berth reads) a few bytes short of
/// 8 MiB compact, holding a detector the state still raises: with a new fault of the run it
/// would be refused (too large even compact and one id per fault). Filed and not recorded,
/// the new fault would be "new" again next pass and filed again, an ack of it undone; so it
/// is not filed at all while the registry cannot hold it, and each pass says so once.
#[test]
fn a_fault_its_registry_cannot_record_is_never_filed() {
    let dir = tempfile::tempdir().unwrap();
    let (run, source) = ("r", "/s/r.json");
    let (held, new) = (event(run, "P", ""), event(run, "N", ""));
    let active = PrivateDir::ensure(dir.path(), ACTIVE_DIR).unwrap();
    let planted = |scope: usize| {
        let mut entries = BTreeMap::new();
        entries.insert(
            held.detector_id.clone(),
            ActiveFault {
                fault_id: format!("P:{}:00000000", "s".repeat(scope)),
                first_detected_at: "2026-01-01T00:00:00.000Z".into(),
            },
        );
        Registry {
            run_id: run.into(),
            source: source.into(),
            updated_at: String::new(),
            active: entries,
        }
    };
    let compact = |r: &Registry| serde_json::to_vec(r).unwrap().len() as u64 + 1;
    let base = compact(&planted(0));
    let registry = planted((MAX_JSON_BYTES - 40 - base) as usize);
    assert_eq!(compact(&registry), MAX_JSON_BYTES - 40);
    let name = registry::name(run, source);
    registry::save(&active, &name, &registry).unwrap();

    let events = [held.clone(), new.clone()];
    for pass in 0..2 {
        let report = HaltStore::new(dir.path()).sync_run(run, source, &events);
        let said: Vec<_> = report
            .problems
            .iter()
            .filter(|p| p.contains("not filed"))
            .collect();
        assert!(
            report.emitted.is_empty() && said.len() == 1,
            "pass {pass}: emitted {:?}; problems {:?}",
            report.emitted.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            report
                .problems
                .iter()
                .map(|p| registry::said_cut(p))
                .collect::<Vec<_>>()
        );
    }
    let pending = HaltStore::new(dir.path())
        .pending_runs(&new.fault_id)
        .unwrap();
    assert!(pending.is_empty(), "{pending:?}");
}

/// Migration: berth before 3ada9b0 wrote a run's registry keyed by whole detector ids, and
/// wrote it past 8 MiB (400 detector ids of a 23 KB plan path: ~9 MB). The new berth reads
/// no registry past 8 MiB and never rewrites one it did not read, so a state file whose
/// registry the old berth left that large has every new fault hidden for good: not filed.
#[test]
fn a_registry_the_previous_berth_wrote_past_8_mib_does_not_hide_new_faults() {
    let dir = tempfile::tempdir().unwrap();
    let (run, source) = ("r", "/s/r.json");
    let active = PrivateDir::ensure(dir.path(), ACTIVE_DIR).unwrap();
    let plan = "p".repeat(23_000);
    let old = Registry {
        run_id: run.into(),
        source: source.into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
        // As the old berth keyed them: the whole detector id.
        active: (0..400)
            .map(|n| {
                let id = format!("PHASE_FAILED:{n}:/s/{plan}");
                let fault = ActiveFault {
                    fault_id: "PHASE_FAILED:all:0123abcd".into(),
                    first_detected_at: "2026-01-01T00:00:00.000Z".into(),
                };
                (id, fault)
            })
            .collect(),
    };
    // The old berth's write: pretty, whatever its size.
    let bytes = crate::faults::json_file::pretty(&old).unwrap();
    assert!(bytes.len() as u64 > MAX_JSON_BYTES, "{}", bytes.len());
    active
        .write_atomic(&registry::name(run, source), &bytes, 0o600)
        .unwrap();
    let new = event(run, "N", "");
    let mut reports = Vec::new();
    for _ in 0..2 {
        reports.push(HaltStore::new(dir.path()).sync_run(run, source, std::slice::from_ref(&new)));
    }
    let emitted: usize = reports.iter().map(|r| r.emitted.len()).sum();
    assert_eq!(
        emitted,
        1,
        "a new fault of the run over two passes; problems {:?}",
        reports
            .iter()
            .flat_map(|r| r.problems.iter().map(|p| registry::said_cut(p)))
            .collect::<Vec<_>>()
    );
}

/// `count` detector ids (keys of ~500 bytes, as a long plan path makes) of one fault of run
/// `r`.
fn detectors_of_one_fault(count: usize) -> Vec<HaltEvent> {
    let base = event("r", "X", "");
    let long = "p".repeat(600);
    (0..count)
        .map(|n| HaltEvent {
            detector_id: registry::key(&format!("X:{n}:{long}")),
            ..base.clone()
        })
        .collect()
}

/// How many of `passes` syncs of run `r` (`/s/r.json`) with `events` rewrote its registry
/// at `path`; each must file and resolve nothing.
fn rewrites(dir: &Path, path: &Path, events: &[HaltEvent], passes: usize) -> usize {
    let inode = || fs::metadata(path).unwrap().ino();
    (0..passes)
        .filter(|_| {
            let before = inode();
            let pass = HaltStore::new(dir).sync_run("r", "/s/r.json", events);
            assert!(
                pass.emitted.is_empty() && pass.resolved.is_empty(),
                "{pass:?}"
            );
            inode() != before
        })
        .count()
}

/// Run `r`'s own registry planted with 2,000 faults the run does not raise, kept raised
/// (another registry of the run is unreadable: a directory at its name), one entry padded
/// so that `written` of it is `size`. Returns its path.
fn plant_kept_raised(dir: &Path, written: impl Fn(&Registry) -> u64, size: u64) -> PathBuf {
    HaltStore::new(dir).sync_run("r", "/s/r.json", &[]);
    let active = dir.join(ACTIVE_DIR);
    fs::create_dir(registry::path(&active, "r", "/s/r2.json")).unwrap();
    let planted_fault = |i: usize, scope: usize| ActiveFault {
        fault_id: format!("K:{}:{i:08x}", "s".repeat(scope)),
        first_detected_at: String::new(),
    };
    let mut planted = Registry {
        run_id: "r".into(),
        source: "/s/r.json".into(),
        updated_at: crate::clock::now_iso(),
        active: (0..2_000)
            .map(|i| (format!("P:{i}:*"), planted_fault(i, 4_000)))
            .collect(),
    };
    let pad = (size - written(&planted)) as usize;
    planted
        .active
        .insert("P:0:*".into(), planted_fault(0, 4_000 + pad));
    assert_eq!(written(&planted), size);
    let path = registry::path(&active, "r", "/s/r.json");
    fs::write(&path, serde_json::to_vec(&planted).unwrap()).unwrap();
    path
}

/// `registry` compact, as berth writes it past 8 MiB pretty, with `events` recorded.
fn compact_with(registry: &Registry, events: &[HaltEvent]) -> u64 {
    let mut with = registry.clone();
    for e in events {
        let fault = ActiveFault {
            fault_id: e.fault_id.clone(),
            first_detected_at: e.timestamp.clone(),
        };
        with.active.insert(e.detector_id.clone(), fault);
    }
    serde_json::to_vec(&with).unwrap().len() as u64 + 1
}

/// 20,000 detector ids of one fault: the first sync files it once and saves the registry
/// with one detector id (past 8 MiB even compact). The ids it left out are the same raised
/// fault, not new: passes with the same detections rewrite nothing (they used to read,
/// serialise twice and rewrite ~8 MiB each), and a clear of the one id recorded while the
/// others still raise the fault resolves nothing.
#[test]
fn a_registry_cut_to_one_detector_id_per_fault_is_not_rewritten_while_its_fault_stays() {
    let dir = tempfile::tempdir().unwrap();
    let events = detectors_of_one_fault(20_000);
    let path = registry::path(&dir.path().join(ACTIVE_DIR), "r", "/s/r.json");
    let first = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &events);
    assert_eq!(first.emitted.len(), 1, "{:?}", first.problems);
    let recorded: Vec<String> = registry::load(
        &PrivateDir::ensure(dir.path(), ACTIVE_DIR).unwrap(),
        &registry::name("r", "/s/r.json"),
        "r",
        "/s/r.json",
    )
    .unwrap()
    .0
    .active
    .into_keys()
    .collect();
    assert_eq!(recorded.len(), 1);
    assert_eq!(rewrites(dir.path(), &path, &events, 3), 0);
    let others: Vec<HaltEvent> = events
        .into_iter()
        .filter(|e| e.detector_id != recorded[0])
        .collect();
    let cleared = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &others);
    assert!(
        cleared.resolved.is_empty() && cleared.emitted.is_empty(),
        "{cleared:?}"
    );
}

/// The same from what a writer of the faults dir can plant: a run's own registry of 2,000
/// faults kept raised, sized so that with one of the run's two detector ids of one fault it
/// fits the 8 MiB berth writes and with both it does not. Passes of that run, its
/// detections unchanged, rewrite nothing (each used to rewrite ~8 MiB).
#[test]
fn a_kept_raised_registry_cut_to_one_id_per_fault_is_not_rewritten_while_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let events = detectors_of_one_fault(2);
    let cap = MAX_JSON_BYTES;
    let path = plant_kept_raised(dir.path(), |r| compact_with(r, &events[..1]), cap - 10);
    let planted: Registry = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert!(compact_with(&planted, &events) > cap);

    let first = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &events);
    assert_eq!(first.emitted.len(), 1, "{:?}", first.problems);
    assert_eq!(rewrites(dir.path(), &path, &events, 3), 0);
}

/// Whoever writes the faults dir plants the run's own registry just under the 8 MiB berth
/// reads, of 2,000 faults the run does not raise, kept raised (another registry of the run
/// is unreadable and may hold them). A new fault of the run finds no room: it is not filed
/// and each pass says so in one line; the entries stay and nothing is resolved. Moved
/// aside to file it (d57ea8a did), a fault of theirs detected again would be recorded
/// nowhere berth reads and filed anew, an ack undone (review b23).
#[test]
fn a_full_registry_keeping_faults_raised_files_nothing_new_and_says_so_once_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let compact = |r: &Registry| serde_json::to_vec(r).unwrap().len() as u64 + 1;
    let path = plant_kept_raised(dir.path(), compact, MAX_JSON_BYTES - 20);
    let planted = fs::read(&path).unwrap();
    let raised = event("r", "X", "");
    for _ in 0..2 {
        let store = HaltStore::new(dir.path());
        let pass = store.sync_run("r", "/s/r.json", std::slice::from_ref(&raised));
        assert!(!store.pending_path("r", &raised.fault_id).exists());
        assert!(pass.emitted.is_empty() && pass.resolved.is_empty());
        let not_filed: Vec<&String> = pass
            .problems
            .iter()
            .filter(|p| p.contains("not filed"))
            .collect();
        assert_eq!(not_filed.len(), 1, "{not_filed:?}");
        assert!(fs::read(&path).unwrap() == planted, "the registry changed");
    }
    let asides = fs::read_dir(dir.path().join(ACTIVE_DIR))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".unreadable-"))
        .count();
    assert_eq!(asides, 0);
}

/// Fault `i` of run `r`, its detector `D<i>`, its fault id ~650 KB (a scope from data, as
/// a state file's phase index gives one): twelve fill most of the 8 MiB a registry holds.
fn big_fault(i: usize) -> HaltEvent {
    HaltEvent {
        detector_id: format!("D{i}"),
        fault_id: format!("X:{}:{i:08x}", "s".repeat(650_000)),
        ..event("r", "X", "")
    }
}

/// Run `r` raises twelve faults, all filed and recorded in its one registry (every
/// registry of the run readable, nothing planted). Then one pass sees fault 0 clear and a
/// new fault raised that the registry cannot hold beside fault 0's entry. The clear is
/// real: fault 0 is resolved in that pass, and the room it frees records the new fault,
/// filed in the same pass; nothing is moved aside, which would leave fault 0 unresolved
/// for good (the pass used to take its entry for a stale one: proven by this test before
/// the fix).
#[test]
fn a_fault_that_clears_in_the_pass_its_full_registry_meets_a_new_one_is_resolved() {
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
    let pass = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &later);
    let said: Vec<String> = pass
        .problems
        .iter()
        .map(|p| registry::said_cut(p))
        .collect();
    assert!(
        store.resolved_path("r", &first[0].fault_id).exists(),
        "fault 0 cleared and was not resolved; the pass said: {said:?}"
    );
    assert!(
        store.pending_path("r", &later[11].fault_id).exists(),
        "the new fault was not filed; the pass said: {said:?}"
    );
    assert!(said.is_empty(), "{said:?}");
    let kept: Registry = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(kept.active.len(), 12, "{:?}", kept.active.keys());
}

/// Run `r` raises twelve faults, all filed; fault 0's event is acknowledged. Another
/// registry of the run is unreadable (a directory at its name). Fault 0 leaves the state as
/// a new fault 12 comes: fault 0 is kept raised (the unreadable registry may hold it) and
/// keeps its entry, so fault 12 is not filed. Fault 0 detected again (fault 1 leaving the
/// same way) is the same raised fault: its acknowledged event stays acknowledged (with its
/// entry moved aside it was filed anew, pending again: review b23). Once every registry of
/// the run reads, fault 1 is resolved and fault 12 filed in its room.
#[test]
fn a_fault_kept_raised_in_a_full_registry_stays_recorded_and_its_ack_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let faults: Vec<HaltEvent> = (0..13).map(big_fault).collect();
    let filed = store.sync_run("r", "/s/r.json", &faults[..12]);
    assert_eq!(filed.emitted.len(), 12, "{:?}", filed.problems);
    store
        .mark_investigated("r", &faults[0].fault_id)
        .expect("fault 0 acknowledged");
    let unreadable = registry::path(&dir.path().join(ACTIVE_DIR), "r", "/s/r2.json");
    fs::create_dir(&unreadable).unwrap();
    let sync = |events: &[HaltEvent]| HaltStore::new(dir.path()).sync_run("r", "/s/r.json", events);
    // What a pass said, cut (the lines name 650 KB fault ids).
    let said = |pass: &SyncReport| -> Vec<String> {
        pass.problems
            .iter()
            .map(|p| registry::said_cut(p))
            .collect()
    };

    let second = sync(&faults[1..13]);
    assert!(
        second.resolved.is_empty() && second.emitted.is_empty(),
        "{:?}",
        said(&second)
    );
    let again: Vec<HaltEvent> = std::iter::once(faults[0].clone())
        .chain(faults[2..13].iter().cloned())
        .collect();
    let third = sync(&again);
    assert!(
        third.emitted.is_empty() && !store.pending_path("r", &faults[0].fault_id).exists(),
        "fault 0, acknowledged and never resolved, is pending again; the third pass said {:?}",
        said(&third)
    );

    fs::remove_dir(&unreadable).unwrap();
    let fourth = sync(&again);
    assert_eq!(
        fourth.resolved,
        [faults[1].fault_id.clone()],
        "{:?}",
        said(&fourth)
    );
    assert!(
        store.pending_path("r", &faults[12].fault_id).exists(),
        "{:?}",
        said(&fourth)
    );
    assert!(!store.pending_path("r", &faults[0].fault_id).exists());
}
