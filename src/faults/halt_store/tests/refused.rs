//! A run's registry that berth refuses to write (over the 8 MiB it reads back, even one
//! detector id per fault): what the pass filed must not be filed again.

use std::collections::BTreeMap;

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
