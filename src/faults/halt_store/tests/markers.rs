//! What a listing keeps of resolved markers and how it matches them, and ack, to events:
//! by their whole run and fault ids, which may be longer than the fields it shows.

use super::*;

/// Lists, one-shot, a halt dir of `count` pending events whose shown fields are each 100
/// bytes past their cut (`runId`s distinct), `event` set to `kind` if given: the listing
/// and the heap it peaked at.
pub(super) fn list_long_fielded(count: usize, kind: Option<&str>) -> (Listing, isize) {
    let dir = tempfile::tempdir().unwrap();
    let pending = dir.path().join(PENDING_DIR);
    fs::create_dir_all(&pending).unwrap();
    let field = |c: &str| c.repeat(shown::MAX_FIELD_BYTES + 100);
    for n in 0..count {
        let mut event = serde_json::json!({
            "runId": format!("{n}{}", field("r")), "faultId": field("f"), "kind": field("k"),
            "severity": field("s"), "message": field("m"), "timestamp": field("t"),
        });
        if let Some(kind) = kind {
            event["event"] = kind.into();
        }
        fs::write(pending.join(format!("r{n}.json")), event.to_string()).unwrap();
    }
    let store = HaltStore::new(dir.path());
    crate::rules::memory::start();
    let listing = store.list();
    let peak = crate::rules::memory::stop();
    (listing, peak)
}

/// `faults list` of a halt dir whose pending events are resolved markers, each field at
/// its 4 KiB cut. A marker shows nothing; docs/limits.md puts a one-shot listing's worst at
/// each file's 7 fields × 4 KiB held once (~550 MiB at 20,000 files). But the one-shot
/// reads keep every marker's fields until the listing ends, and the listing copies its run
/// and fault ids besides: 9 fields a marker (10,000 pending markers and 10,000 processed
/// events: ~625 MiB).
#[test]
fn a_one_shot_listing_holds_a_resolved_markers_fields_once_at_most() {
    const MARKERS: usize = 200;
    let (listing, peak) = list_long_fielded(MARKERS, Some(RESOLVED_EVENT));
    assert!(listing.halts.is_empty(), "{:?}", listing.halts.len());
    let cut = shown::MAX_FIELD_BYTES + '…'.len_utf8();
    // Each file's 7 fields once, plus 1 KiB a file for its name and map entries and one
    // file's text (~30 KiB) at a time.
    let bound = MARKERS * (7 * cut + 1024) + 256 * 1024;
    assert!(
        peak <= bound as isize,
        "listing {MARKERS} resolved markers held {peak} bytes at once, over {bound}: 7 fields of {cut} bytes each once a file"
    );
}

/// Two runs whose ids (a state file's `launch.runId`, any length) share their first 4 KiB
/// raise the same fault; one clears it. `faults list` cuts each shown field to 4 KiB before
/// matching resolved markers to events by (run id, fault id), so the still-raised run's
/// pending event is listed as resolved: the operator is told a live fault went away.
#[test]
fn a_listing_matches_a_resolved_marker_to_its_own_run_only() {
    let dir = tempfile::tempdir().unwrap();
    let stem = "r".repeat(shown::MAX_FIELD_BYTES);
    let (raised, cleared) = (format!("{stem}-a"), format!("{stem}-b"));
    let store = HaltStore::new(dir.path());
    for run in [&raised, &cleared] {
        let report = store.sync_run(
            run,
            &format!("/s/{}.json", &run[run.len() - 1..]),
            &[event(run, "X", "")],
        );
        assert_eq!(report.emitted.len(), 1, "{report:?}");
    }
    let report = HaltStore::new(dir.path()).sync_run(&cleared, "/s/b.json", &[]);
    assert_eq!(report.resolved.len(), 1, "{report:?}");
    let listing = HaltStore::new(dir.path()).list();
    let statuses: Vec<HaltStatus> = listing.halts.iter().map(|h| h.status).collect();
    assert_eq!(listing.halts.len(), 2, "{statuses:?}");
    assert!(
        statuses.contains(&HaltStatus::Pending),
        "the run still raising the fault is listed as {statuses:?}"
    );
}

/// `faults ack FAULT_ID` without `--run` acks the one run the listing shows with that
/// fault: a run id longer than 4 KiB (a state file's `launch.runId`) is shown cut, and the
/// cut id is the one ack then moves, so it finds no such event and fails (exit 2), though
/// one run has it pending.
#[test]
fn ack_without_a_run_finds_the_one_run_with_a_long_id() {
    let dir = tempfile::tempdir().unwrap();
    let run = "r".repeat(shown::MAX_FIELD_BYTES + 1);
    let store = HaltStore::new(dir.path());
    let first = event(&run, "X", "");
    let report = store.sync_run(&run, "/s/r.json", std::slice::from_ref(&first));
    assert_eq!(report.emitted.len(), 1, "{report:?}");
    let runs = HaltStore::new(dir.path())
        .pending_runs(&first.fault_id)
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let marked = HaltStore::new(dir.path()).mark_investigated(&runs[0], &first.fault_id);
    assert!(
        matches!(marked, Ok(Marked::Moved(_))),
        "ack of the run the listing names ({} bytes, ends {:?}): {marked:?}",
        runs[0].len(),
        &runs[0][runs[0].len() - 4..]
    );
}
