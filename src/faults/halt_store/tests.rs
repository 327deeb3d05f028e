use super::*;
use crate::faults::halt::sample::event;
use serde_json::Value;
use std::fs;

fn read(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn archives_per_fault_are_capped_oldest_first_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let cycles = MAX_ARCHIVES_PER_FAULT as u64 + 10;
    for n in 0..=cycles {
        store
            .emit(&event("run", "X", &format!("tail {n}")))
            .unwrap();
    }
    // Another fault's archive is not this fault's to prune.
    store.emit(&event("run", "Y", "a")).unwrap();
    store.emit(&event("run", "Y", "b")).unwrap();
    let fault = event("run", "X", "").fault_id;
    let mut kept: Vec<u64> = fs::read_dir(dir.path().join(COLLAPSED_DIR))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix(&format!("run-{fault}-"))?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    kept.sort();
    let expected: Vec<u64> = (cycles - MAX_ARCHIVES_PER_FAULT as u64 + 1..=cycles).collect();
    assert_eq!(kept, expected);
    assert_eq!(
        fs::read_dir(dir.path().join(COLLAPSED_DIR))
            .unwrap()
            .count(),
        MAX_ARCHIVES_PER_FAULT + 1
    );
}

#[test]
fn archives_per_fault_are_capped_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    // Each capture carries a 3 MiB tail: the byte cap, not the count, prunes.
    let big = |n: u64| format!("{n}{}", "x".repeat(3 * 1024 * 1024));
    for n in 0..8 {
        store.emit(&event("run", "X", &big(n))).unwrap();
    }
    let sizes: Vec<u64> = fs::read_dir(dir.path().join(COLLAPSED_DIR))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert!(sizes.len() < 7, "{} archives kept", sizes.len());
    assert!(sizes.iter().sum::<u64>() <= MAX_ARCHIVE_BYTES_PER_FAULT);
}

#[test]
fn the_latest_capture_stays_pending_and_earlier_ones_are_collapsed() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let first = event("run/1", "X", "tail a");
    assert_eq!(store.emit(&first).unwrap(), Emitted::New);
    let pending = store.pending_path("run/1", &first.fault_id);
    assert!(pending.ends_with(format!("run_1-{}.json", first.fault_id)));
    assert_eq!(store.emit(&first).unwrap(), Emitted::Refreshed);
    assert!(!dir.path().join(COLLAPSED_DIR).exists());
    let second = event("run/1", "X", "tail b");
    assert_eq!(
        store.emit(&second).unwrap(),
        Emitted::Recurred { occurrences: 2 }
    );
    let third = event("run/1", "X", "tail c");
    assert_eq!(
        store.emit(&third).unwrap(),
        Emitted::Recurred { occurrences: 3 }
    );
    let latest = read(&pending);
    assert_eq!(latest["snapshot"]["stdoutTail"], "tail c");
    assert_eq!(latest["snapshot"]["occurrences"], 3);
    let one = read(&store.collapsed_path("run/1", &first.fault_id, 1));
    assert_eq!(one["snapshot"]["stdoutTail"], "tail a");
    assert!(one["snapshot"].get("occurrences").is_none());
    let two = read(&store.collapsed_path("run/1", &first.fault_id, 2));
    assert_eq!(two["snapshot"]["stdoutTail"], "tail b");
    assert_eq!(two["snapshot"]["occurrences"], 2);
    let listing = store.list();
    assert_eq!(listing.halts.len(), 1, "collapsed captures are not events");
    assert_eq!(listing.halts[0].occurrences, 3);
    assert_eq!(listing.halts[0].status, HaltStatus::Pending);
}

#[test]
fn unreadable_pending_files_are_reported_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let ev = event("r", "X", "a");
    fs::create_dir_all(dir.path().join(PENDING_DIR)).unwrap();
    let pending = store.pending_path("r", &ev.fault_id);
    fs::write(&pending, b"{ torn").unwrap();
    let err = store.emit(&ev).unwrap_err().to_string();
    assert!(
        err.contains("left untouched") && err.contains("not valid JSON"),
        "{err}"
    );
    assert_eq!(fs::read(&pending).unwrap(), b"{ torn");
    let report = store.sync_run("r", "/s/r.json", std::slice::from_ref(&ev));
    assert!(report.emitted.is_empty() && report.problems.len() == 1);
    let listing = store.list();
    assert_eq!(listing.unreadable.len(), 1);
    assert!(listing.unreadable[0].file.ends_with(".json"));

    // A FIFO or a symlink planted there is reported, never opened for a blocking read
    // or followed.
    fs::remove_file(&pending).unwrap();
    nix::unistd::mkfifo(&pending, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(
        store
            .emit(&ev)
            .unwrap_err()
            .to_string()
            .contains("not a regular file")
    );
    fs::remove_file(&pending).unwrap();
    let elsewhere = dir.path().join("elsewhere.json");
    fs::write(&elsewhere, b"{}").unwrap();
    std::os::unix::fs::symlink(&elsewhere, &pending).unwrap();
    assert!(
        store
            .emit(&ev)
            .unwrap_err()
            .to_string()
            .contains("symbolic link")
    );
    assert_eq!(fs::read(&elsewhere).unwrap(), b"{}");
}

#[test]
fn sync_files_new_faults_once_and_resolves_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let x = event("r", "X", "");
    let y = event("r", "Y", "");
    let report = store.sync_run("r", "/s/r.json", &[x.clone(), y.clone()]);
    assert_eq!(report.emitted.len(), 2);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let report = store.sync_run("r", "/s/r.json", &[x.clone(), y.clone()]);
    assert!(report.emitted.is_empty() && report.resolved.is_empty());
    let report = store.sync_run("r", "/s/r.json", std::slice::from_ref(&x));
    assert_eq!(report.resolved, vec![y.fault_id.clone()]);
    let report = store.sync_run("r", "/s/r.json", std::slice::from_ref(&x));
    assert!(report.resolved.is_empty(), "resolved only once");
    let marker = read(&store.resolved_path("r", &y.fault_id));
    assert_eq!(
        marker,
        json!({"event": "SKILL_FAULT_RESOLVED", "timestamp": marker["timestamp"],
               "runId": "r", "faultId": y.fault_id})
    );
    let status_of = |id: &str| {
        let listing = store.list();
        listing
            .halts
            .iter()
            .find(|h| h.fault_id == id)
            .unwrap()
            .status
    };
    assert_eq!(status_of(&x.fault_id), HaltStatus::Pending);
    assert_eq!(status_of(&y.fault_id), HaltStatus::Resolved);
    // Raised again: the stale marker goes, the same capture is refreshed in place.
    let report = store.sync_run("r", "/s/r.json", &[x.clone(), y.clone()]);
    assert_eq!(
        report.emitted,
        vec![(y.fault_id.clone(), Emitted::Refreshed)]
    );
    assert!(!store.resolved_path("r", &y.fault_id).exists());
    assert_eq!(status_of(&y.fault_id), HaltStatus::Pending);
}

#[test]
fn marking_investigated_moves_the_event_as_gstack_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let x = event("r 1", "X", "");
    store.emit(&x).unwrap();
    assert_eq!(store.pending_runs(&x.fault_id).unwrap(), ["r 1"]);
    let moved = store.mark_investigated("r 1", &x.fault_id).unwrap();
    let processed = dir
        .path()
        .join(PROCESSED_DIR)
        .join(format!("r_1-{}.json", x.fault_id));
    assert_eq!(moved, Marked::Moved(processed.clone()));
    assert_eq!(read(&processed)["faultId"], x.fault_id.as_str());
    assert!(!store.pending_path("r 1", &x.fault_id).exists());
    assert_eq!(
        store.mark_investigated("r 1", &x.fault_id).unwrap(),
        Marked::AlreadyMoved
    );
    assert!(store.pending_runs(&x.fault_id).unwrap().is_empty());
    assert_eq!(store.list().halts[0].status, HaltStatus::Investigated);
}

/// A run's `.<run>.lock` in the active dir is berth's, but whoever can write the faults
/// dir can hold it: each held one must not cost a fault round the full lock wait, on
/// every round (40 held: 10 s a round).
#[test]
fn runs_whose_locks_another_process_holds_are_skipped_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let active = dir.path().join(ACTIVE_DIR);
    fs::create_dir_all(&active).unwrap();
    let runs: Vec<String> = (0..40).map(|i| format!("run-{i}")).collect();
    let held: Vec<fs::File> = runs
        .iter()
        .map(|run| {
            let lock = fs::File::create(active.join(format!(".{run}.lock"))).unwrap();
            lock.lock().unwrap();
            lock
        })
        .collect();
    let started = std::time::Instant::now();
    for run in &runs {
        let report = store.sync_run(run, "/s/r.json", &[event(run, "X", "a")]);
        assert!(
            report.emitted.is_empty() && report.problems.len() == 1,
            "{run}"
        );
    }
    let took = started.elapsed();
    assert!(
        took < crate::atomic_file::LOCK_WAIT * 10,
        "40 held run locks took {took:?}"
    );
    drop(held);
    // A held lock is tried once a pass: the next pass (its own store) files the run.
    let report =
        HaltStore::new(dir.path()).sync_run("run-0", "/s/r.json", &[event("run-0", "X", "a")]);
    assert_eq!(report.emitted.len(), 1, "released, the run is filed");
}

/// Scenario: a producer who can write the faults dir leaves 20 pending events of 2 MiB
/// each (a message that size). Listing them (the queue page each second, the halts gauge,
/// `faults list`, `doctor`) held every parsed event at once, 40 MiB and more; now one
/// event's parse at a time, and what is kept of each is cut.
#[test]
fn listing_holds_one_events_parse_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let pending = dir.path().join(PENDING_DIR);
    fs::create_dir_all(&pending).unwrap();
    let message = "m".repeat(2 * 1024 * 1024);
    for n in 0..20 {
        let event =
            serde_json::json!({"runId": format!("r{n}"), "faultId": "f", "message": message});
        fs::write(pending.join(format!("r{n}.json")), event.to_string()).unwrap();
    }
    let store = HaltStore::new(dir.path());
    crate::rules::memory::start();
    let listing = store.list();
    let peak = crate::rules::memory::stop();
    assert_eq!(listing.halts.len(), 20);
    assert!(listing.halts[0].message.len() <= shown::MAX_FIELD_BYTES + 3);
    assert!(
        peak < 16 * 1024 * 1024,
        "listing 20 events of 2 MiB held {} MiB at once",
        peak / (1024 * 1024)
    );
}

/// `faults list` of a hostile halt dir: every event's shown fields at their 4 KiB cut. The
/// listing holds them once; the one-shot store keeps no second copy of its reads, neither
/// while the listing is made nor after.
#[test]
fn a_one_shot_listing_holds_each_events_fields_once() {
    const EVENTS: usize = 200;
    let (listing, peak) = markers::list_long_fielded(EVENTS, None);
    assert_eq!(listing.halts.len(), EVENTS);
    let held: usize = listing
        .halts
        .iter()
        .map(|h| h.run_id.len() + h.fault_id.len() + h.kind.len())
        .chain(
            listing
                .halts
                .iter()
                .map(|h| h.severity.len() + h.message.len()),
        )
        .chain(listing.halts.iter().map(|h| h.timestamp.len()))
        .sum();
    assert!(
        peak < (held + held / 2) as isize,
        "listing {EVENTS} events whose shown fields take {held} bytes held {peak} at once"
    );
}

/// A pending event planted with `occurrences` u64::MAX recurs: the count stays at u64::MAX
/// (no overflow panic), and the planted capture is archived.
#[test]
fn a_planted_occurrence_count_of_u64_max_saturates() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let first = event("run", "X", "tail a");
    store.emit(&first).unwrap();
    let pending = store.pending_path("run", &first.fault_id);
    let mut planted = read(&pending);
    planted["snapshot"]["occurrences"] = serde_json::json!(u64::MAX);
    fs::write(&pending, serde_json::to_vec(&planted).unwrap()).unwrap();
    for tail in ["tail b", "tail c"] {
        assert_eq!(
            store.emit(&event("run", "X", tail)).unwrap(),
            Emitted::Recurred {
                occurrences: u64::MAX
            }
        );
    }
    assert_eq!(read(&pending)["snapshot"]["occurrences"], u64::MAX);
    assert_eq!(
        fs::read_dir(dir.path().join(COLLAPSED_DIR))
            .unwrap()
            .count(),
        2
    );
}

/// A fault clears while another registry of the run cannot be read (a directory stands
/// in its place): that registry may hold the fault, so it is not resolved, and the
/// problem is reported; once the registry is gone, the fault resolves.
#[test]
fn a_fault_is_not_resolved_while_another_registry_of_the_run_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let x = event("r", "X", "");
    assert_eq!(
        store
            .sync_run("r", "/s/r.json", std::slice::from_ref(&x))
            .emitted
            .len(),
        1
    );
    let other = crate::faults::registry::path(&dir.path().join(ACTIVE_DIR), "r", "/s/r2.json");
    fs::create_dir(&other).unwrap();
    let report = store.sync_run("r", "/s/r.json", &[]);
    assert!(report.resolved.is_empty(), "{report:?}");
    assert!(!report.problems.is_empty(), "{report:?}");
    assert!(!store.resolved_path("r", &x.fault_id).exists());
    fs::remove_dir(&other).unwrap();
    let report = store.sync_run("r", "/s/r.json", &[]);
    assert_eq!(report.resolved, vec![x.fault_id.clone()], "{report:?}");
}

/// `n` pending event files of `run`, as earlier filings (or anyone) left them.
fn plant_pending(dir: &Path, run: &str, n: usize) {
    let pending = dir.join(PENDING_DIR);
    fs::create_dir_all(&pending).unwrap();
    for i in 0..n {
        fs::write(
            pending.join(format!("{run}-PHASE_FAILED:p{i}:00000000.json")),
            "{}",
        )
        .unwrap();
    }
}

fn pending_of(dir: &Path, run: &str) -> usize {
    fs::read_dir(dir.join(PENDING_DIR))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_str().unwrap().starts_with(&format!("{run}-"))
        })
        .count()
}

#[test]
fn a_run_raising_ever_new_faults_stops_at_its_cap_and_files_one_cap_event() {
    let dir = tempfile::tempdir().unwrap();
    plant_pending(dir.path(), "r", MAX_PENDING_PER_RUN - 4);
    let mut withheld = 0;
    // Raise and clear a fault with a new id on every pass, as a hostile state file can.
    for cycle in 0..10 {
        let store = HaltStore::new(dir.path());
        let raised = event("r", &format!("C{cycle}"), "");
        withheld += store.sync_run("r", "/s/r.json", &[raised]).withheld;
        withheld += store.sync_run("r", "/s/r.json", &[]).withheld;
    }
    assert_eq!(pending_of(dir.path(), "r"), MAX_PENDING_PER_RUN);
    assert_eq!(
        withheld, 8,
        "two passes fill the run, eight raises are held back"
    );
    assert_eq!(pending_of(dir.path(), CAP_RUN_ID), 1);
    // Another run is not held back by this one's cap.
    let other = HaltStore::new(dir.path()).sync_run("o", "/s/o.json", &[event("o", "X", "")]);
    assert_eq!(other.emitted.len(), 1);
    // A fault held back is filed once the run's events are drained.
    let last = event("r", "LAST", "");
    let report = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", std::slice::from_ref(&last));
    assert_eq!((report.emitted.len(), report.withheld), (0, 1));
    for e in fs::read_dir(dir.path().join(PENDING_DIR)).unwrap().take(20) {
        let path = e.unwrap().path();
        if path.to_str().unwrap().contains("/r-PHASE_FAILED:p") {
            fs::remove_file(path).unwrap();
        }
    }
    let report = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", std::slice::from_ref(&last));
    assert_eq!(report.emitted, vec![(last.fault_id, Emitted::New)]);
}

#[test]
fn all_runs_together_stop_at_the_total_cap_and_recurrences_still_file() {
    let dir = tempfile::tempdir().unwrap();
    for run in 0..MAX_PENDING_TOTAL / 100 - 1 {
        plant_pending(dir.path(), &format!("p{run}"), 100);
    }
    let store = HaltStore::new(dir.path());
    let mut withheld = 0;
    for run in 0..110 {
        let run = format!("n{run}");
        withheld += store
            .sync_run(&run, "/s/x.json", &[event(&run, "X", "a")])
            .withheld;
    }
    let total = fs::read_dir(dir.path().join(PENDING_DIR)).unwrap().count();
    assert_eq!(
        total,
        MAX_PENDING_TOTAL + 1,
        "the cap's own event is the one past it"
    );
    assert_eq!(withheld, 10);
    // A filed fault recurring with another capture is its own file rewritten: never held.
    let again = HaltStore::new(dir.path()).emit(&event("n0", "X", "b"));
    assert_eq!(again.unwrap(), Emitted::Recurred { occurrences: 2 });
}

/// Runs that raise and clear, or never raise, leave no lock file and no registry behind.
#[test]
fn runs_that_come_and_go_leave_no_lock_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    for n in 0..30 {
        let run = format!("run{n}");
        store.sync_run(&run, "/s/x.json", &[event(&run, "X", "")]);
        let cleared = store.sync_run(&run, "/s/x.json", &[]);
        assert!(cleared.problems.is_empty(), "{cleared:?}");
        assert_eq!(cleared.resolved.len(), 1);
        store.sync_run(&format!("quiet{n}"), "/s/q.json", &[]);
    }
    // A run still raising keeps its lock and registry; another state file of it clearing
    // leaves the lock to the registry that is left.
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    fs::write(&a, "{}").unwrap();
    fs::write(&b, "{}").unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    store.sync_run("kept", a, &[event("kept", "X", "")]);
    store.sync_run("kept", b, &[event("kept", "Y", "")]);
    store.sync_run("kept", b, &[]);
    let left: Vec<String> = fs::read_dir(dir.path().join(ACTIVE_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&".kept.lock".to_owned()), "{left:?}");
    // The pass after a lock file went takes the new one and files again.
    store.sync_run("run0", "/s/x.json", &[event("run0", "X", "again")]);
    assert!(dir.path().join(ACTIVE_DIR).join(".run0.lock").exists());
}

/// Review-bounds 7: a run id ending in `-RESOLVED` (a safe run id gstack takes as it is) is
/// counted by the census under the run id without that suffix, so each pass's census finds
/// it at 0 and lets it file another 200: past the documented 200 per run, and its files
/// count against the other run (`a`), whose new faults are then held back.
#[test]
fn a_run_id_ending_in_resolved_is_held_to_its_own_cap() {
    let dir = tempfile::tempdir().unwrap();
    let run = "a-RESOLVED";
    for pass in 0..3 {
        let store = HaltStore::new(dir.path());
        let events: Vec<HaltEvent> = (0..MAX_PENDING_PER_RUN)
            .map(|i| event(run, &format!("P{pass}X{i}"), ""))
            .collect();
        store.sync_run(run, "/s/r.json", &events);
        store.sync_run(run, "/s/r.json", &[]);
    }
    let filed = fs::read_dir(dir.path().join(PENDING_DIR))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            name.starts_with("a-RESOLVED-PHASE_FAILED:")
                || name.starts_with("a-RESOLVED-RESOLVED-PHASE_FAILED:")
        })
        .count();
    assert!(
        filed <= MAX_PENDING_PER_RUN,
        "run {run} has {filed} files pending, past its cap of {MAX_PENDING_PER_RUN}"
    );
    // The unrelated run `a` is not held back by `a-RESOLVED`'s files.
    let other = HaltStore::new(dir.path()).sync_run("a", "/s/a.json", &[event("a", "X", "")]);
    assert_eq!((other.emitted.len(), other.withheld), (1, 0), "{other:?}");
}

/// Review-bounds 7: a run whose state file goes (gstack archives it) while its fault is
/// still raised leaves its registry and lock file in `active-faults/` for good: nothing
/// syncs the run again, so "removed when the run's other registries are next consulted"
/// never comes. Its event acknowledged, nothing counts against the halt caps either:
/// `active-faults/` grows by two files per such run, with no bound in docs/limits.md, and
/// every raise or clear of any run lists the whole dir.
#[test]
fn runs_archived_while_faulted_leave_nothing_in_active_faults() {
    let dir = tempfile::tempdir().unwrap();
    let states = dir.path().join("build-state");
    fs::create_dir_all(&states).unwrap();
    for n in 0..50 {
        let run = format!("run{n}");
        let state = states.join(format!("{run}.json"));
        fs::write(&state, "{}").unwrap();
        let store = HaltStore::new(dir.path());
        let raised = event(&run, "X", "");
        let report = store.sync_run(&run, state.to_str().unwrap(), std::slice::from_ref(&raised));
        assert_eq!(report.emitted.len(), 1, "{report:?}");
        store.mark_investigated(&run, &raised.fault_id).unwrap();
        fs::remove_file(&state).unwrap();
    }
    // Later passes see other runs come and go (a raise and a clear each).
    for n in 0..5 {
        let run = format!("later{n}");
        let state = states.join(format!("{run}.json"));
        fs::write(&state, "{}").unwrap();
        let store = HaltStore::new(dir.path());
        store.sync_run(&run, state.to_str().unwrap(), &[event(&run, "Y", "")]);
        store.sync_run(&run, state.to_str().unwrap(), &[]);
    }
    let left: Vec<String> = fs::read_dir(dir.path().join(ACTIVE_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        left.is_empty(),
        "{} files left in active-faults/ by runs whose state files are gone, e.g. {:?}",
        left.len(),
        &left[..left.len().min(4)]
    );
}

mod bounded;
mod collisions;
mod markers;
mod owners;
mod pass_reads;
mod refused;
mod swaps;

/// Review-bounds 17: two detectors of one state file raise the same fault id (a fault id
/// is kind, scope and message; the detector id adds the fault's first source file, so one
/// category and description over two files is two detectors, one fault); both clear while
/// another registry of the run is unreadable. docs/limits.md: "one problem (a log error line) per fault kept and
/// one per unreadable registry file": the one fault kept is said twice.
#[test]
fn a_fault_kept_raised_is_said_once_however_many_detectors_raised_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let x = event("r", "X", "");
    let mut x2 = x.clone();
    x2.detector_id = format!("{}-again", x.detector_id);
    assert_eq!(x.fault_id, x2.fault_id);
    let report = store.sync_run("r", "/s/r.json", &[x.clone(), x2.clone()]);
    assert!(report.problems.is_empty(), "{report:?}");
    let other = crate::faults::registry::path(&dir.path().join(ACTIVE_DIR), "r", "/s/r2.json");
    fs::create_dir(&other).unwrap();
    let report = store.sync_run("r", "/s/r.json", &[]);
    assert!(report.resolved.is_empty(), "{report:?}");
    let kept: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.starts_with(&format!("{} not resolved", x.fault_id)))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "one fault kept raised, said {} times: {:?}",
        kept.len(),
        report.problems
    );
}
