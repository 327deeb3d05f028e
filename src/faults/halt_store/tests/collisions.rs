//! Runs whose safe run ids collide (`a_b` and `a/b` are both `a_b`) keep gstack's names,
//! and a file there of the other run is never written over, removed, archived or moved
//! ([`super::shared_names`]): the filing run is held until the name is free.

use super::*;

fn names_in(dir: &Path, sub: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir.join(sub)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn is_taken<T: std::fmt::Debug>(result: Result<T, HaltStoreError>, other: &str) -> bool {
    matches!(&result, Err(HaltStoreError::Taken { other: o, .. }) if o == other)
}

#[test]
fn a_run_whose_name_holds_another_runs_event_is_held_until_it_is_acked() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let fault = event("a_b", "X", "").fault_id;
    store.emit(&event("a_b", "X", "first")).unwrap();
    let event_path = store.pending_path("a_b", &fault);
    let before = fs::read(&event_path).unwrap();
    // Another tail would archive a_b's capture and count it as a/b's recurrence.
    assert!(is_taken(store.emit(&event("a/b", "X", "one")), "a_b"));
    assert_eq!(fs::read(&event_path).unwrap(), before);
    assert_eq!(
        names_in(dir.path(), PENDING_DIR),
        [format!("a_b-{fault}.json")]
    );
    assert!(names_in(dir.path(), COLLAPSED_DIR).is_empty());

    // An ack of a/b's event leaves a_b's where it is.
    assert_eq!(
        store.mark_investigated("a/b", &fault).unwrap(),
        Marked::Another("a_b".to_owned())
    );
    assert_eq!(fs::read(&event_path).unwrap(), before);
    assert!(!store.investigated("a/b", &fault));

    // Once a_b's is acked, a/b files at gstack's name, as new.
    store.mark_investigated("a_b", &fault).unwrap();
    assert!(store.investigated("a_b", &fault));
    assert_eq!(store.emit(&event("a/b", "X", "one")).unwrap(), Emitted::New);
    assert_eq!(read(&event_path)["runId"], "a/b");
    assert!(!store.investigated("a/b", &fault), "a_b's is in processed/");
}

#[test]
fn a_clear_writes_no_marker_over_another_runs_and_a_filing_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let fault = event("a_b", "X", "").fault_id;
    store.resolve("a_b", &fault).unwrap();
    let marker = store.resolved_path("a_b", &fault);
    let before = fs::read(&marker).unwrap();
    assert!(is_taken(store.resolve("a/b", &fault), "a_b"));
    assert_eq!(fs::read(&marker).unwrap(), before);
    // a/b's filing is no recurrence of a_b's: it leaves a_b's marker, not its stale one.
    assert_eq!(store.emit(&event("a/b", "X", "")).unwrap(), Emitted::New);
    assert_eq!(fs::read(&marker).unwrap(), before);
    assert_eq!(
        names_in(dir.path(), PENDING_DIR),
        [
            format!("a_b-{fault}.json"),
            format!("a_b-RESOLVED-{fault}.json")
        ]
    );
    let statuses: Vec<(String, HaltStatus)> = store
        .list()
        .halts
        .into_iter()
        .map(|h| (h.run_id, h.status))
        .collect();
    assert_eq!(statuses, [("a/b".to_owned(), HaltStatus::Pending)]);
    // The run's own marker is still its to rewrite, and to remove as stale.
    store.mark_investigated("a/b", &fault).unwrap();
    store.resolve("a_b", &fault).unwrap();
    assert_eq!(store.emit(&event("a_b", "X", "")).unwrap(), Emitted::New);
    assert!(!marker.exists());
}

/// A held filing stays out of the run's registry, is said once a pass with its ids cut,
/// and is filed by the first pass after the other run's event is acked.
#[test]
fn a_held_filing_is_said_cut_once_a_pass_and_filed_once_the_name_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let long = format!("a/{}", "b".repeat(4096));
    let other = file_run_id(&long);
    let held = event(&long, "X", "");
    let fault = held.fault_id.clone();
    let first = store.sync_run(&other, "/s/other.json", &[event(&other, "X", "")]);
    assert_eq!(first.emitted.len(), 1, "{first:?}");
    // Two detectors of one fault: one line.
    let mut twice = held.clone();
    twice.detector_id.push_str(":2");
    // Two passes, each its own store as the fault watch makes them: said once each.
    for _ in 0..2 {
        let pass = HaltStore::new(dir.path());
        let report = pass.sync_run(&long, "/s/long.json", &[held.clone(), twice.clone()]);
        assert!(report.emitted.is_empty(), "{report:?}");
        assert_eq!(report.withheld, 0);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        let line = &report.problems[0];
        assert!(line.contains("held back") && line.len() < 1500, "{line}");
    }
    store.mark_investigated(&other, &fault).unwrap();
    let filed = store.sync_run(&long, "/s/long.json", &[held, twice]);
    assert_eq!(filed.emitted, [(fault.clone(), Emitted::New)], "{filed:?}");
    assert!(filed.problems.is_empty(), "{:?}", filed.problems);
    assert_eq!(read(&store.pending_path(&long, &fault))["runId"], long);
}

/// A clear held for the other run's marker keeps the fault raised in the run's registry, and
/// the first pass after gstack's drain moved that marker writes the run's own.
#[test]
fn a_held_clear_stays_raised_until_the_other_runs_marker_is_drained() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let x = event("a_b", "X", "");
    let fault = x.fault_id.clone();
    store.sync_run("a_b", "/s/a_b.json", std::slice::from_ref(&x));
    let cleared = store.sync_run("a_b", "/s/a_b.json", &[]);
    assert_eq!(cleared.resolved, std::slice::from_ref(&fault));
    store.mark_investigated("a_b", &fault).unwrap();
    let raised = store.sync_run("a/b", "/s/a-b.json", &[event("a/b", "X", "")]);
    assert_eq!(
        raised.emitted,
        [(fault.clone(), Emitted::New)],
        "{raised:?}"
    );
    // Two passes, each its own store as the fault watch makes them: said once each.
    for _ in 0..2 {
        let held = HaltStore::new(dir.path()).sync_run("a/b", "/s/a-b.json", &[]);
        assert!(held.resolved.is_empty(), "{held:?}");
        assert_eq!(held.problems.len(), 1, "{:?}", held.problems);
        assert!(
            held.problems[0].contains("held back"),
            "{:?}",
            held.problems
        );
    }
    let marker = store.resolved_path("a_b", &fault);
    assert_eq!(read(&marker)["runId"], "a_b");
    // gstack's drain moves the orphan marker (no a_b event is pending).
    fs::remove_file(&marker).unwrap();
    let resolved = store.sync_run("a/b", "/s/a-b.json", &[]);
    assert_eq!(
        resolved.resolved,
        std::slice::from_ref(&fault),
        "{resolved:?}"
    );
    assert_eq!(read(&marker)["runId"], "a/b");
}

/// docs/limits.md says a held filing once "(a log error line) per run and fault each pass". Whoever writes the build-state dir can
/// give one run id many state files (each its own registry, each synced by the pass): run
/// `a/b` raising one fault in 50 state files while `a_b`'s event of it is pending makes the
/// pass (one store, as the daemon makes one per pass) say the held filing 50 times, and
/// every pass again until the other event is acked or drained; 10,000 state files (the
/// pass's listing cap), ~900 bytes a line, ~9 MB of error lines a pass.
#[test]
fn a_held_filing_is_said_once_a_pass_however_many_state_files_raise_it() {
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

/// A held filing is a raised fault with no event of its own: the pass keeps it (counted,
/// its line) for `berth doctor` when it ends, and a pass that holds nothing removes it.
#[test]
fn a_pass_keeps_its_held_filings_for_doctor_until_one_holds_none() {
    let dir = tempfile::tempdir().unwrap();
    let first = HaltStore::new(dir.path());
    first.sync_run("a_b", "/s/a_b.json", &[event("a_b", "X", "")]);
    first.save_held(HELD_RUNS).unwrap();
    assert!(first.held_filings().is_empty());

    let pass = HaltStore::new(dir.path());
    for n in 0..3 {
        let source = format!("/s/a-b-{n}.json");
        pass.sync_run("a/b", &source, &[event("a/b", "X", "")]);
    }
    pass.sync_run("a/b", "/s/a-b.json", &[event("a/b", "Y", "")]);
    pass.save_held(HELD_RUNS).unwrap();
    let held: Vec<HeldFilings> = pass
        .held_filings()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].count, 1, "{held:?}");
    assert!(held[0].lines[0].contains("held back"), "{held:?}");

    let other = event("a_b", "X", "");
    fs::remove_file(first.pending_path("a_b", &other.fault_id)).unwrap();
    let freed = HaltStore::new(dir.path());
    let filed = freed.sync_run("a/b", "/s/a-b-0.json", &[event("a/b", "X", "")]);
    assert_eq!(filed.emitted.len(), 1, "{filed:?}");
    freed.save_held(HELD_RUNS).unwrap();
    assert!(freed.held_filings().is_empty());
}

/// docs/limits.md: a held filing is said "per run and fault each pass". The pass's said set
/// is keyed by the line, whose run ids are cut to 256 bytes: two runs whose ids share their
/// first 256 bytes and length (and so one safe name, held by a third run's event) make one
/// line, and the second run's held filing is said by nobody: neither filed nor logged.
#[test]
fn two_runs_whose_cut_ids_match_each_have_their_held_filing_said() {
    let dir = tempfile::tempdir().unwrap();
    let stem = "a".repeat(300);
    let (holder, first, second) = (
        format!("{stem}_x"),
        format!("{stem}/x"),
        format!("{stem}:x"),
    );
    let filed =
        HaltStore::new(dir.path()).sync_run(&holder, "/s/holder.json", &[event(&holder, "X", "")]);
    assert_eq!(filed.emitted.len(), 1, "{filed:?}");
    let pass = HaltStore::new(dir.path());
    let said = |run: &str, source: &str| -> Vec<String> {
        let report = pass.sync_run(run, source, &[event(run, "X", "")]);
        assert!(report.emitted.is_empty(), "{report:?}");
        report.problems
    };
    assert_eq!(said(&first, "/s/first.json").len(), 1);
    let second_said = said(&second, "/s/second.json");
    assert_eq!(
        second_said.len(),
        1,
        "run {:?}…'s held filing said by nobody this pass",
        &second[295..]
    );
}

/// docs/limits.md: a run's lock held by another process is "not waited for: one try per run
/// per fault round", the held run "logged, naming the lock". The lock is the run id's, but
/// each state file of the run (each its own registry) tries it and logs its own line: run
/// `a/b` raising a new fault in 50 state files while whoever writes the faults dir holds
/// `.a_b.lock` costs a pass 50 tries and 50 error lines, every pass; 10,000 state files
/// (the pass's listing cap), 10,000 of each.
#[test]
fn a_held_run_lock_is_tried_and_said_once_a_pass_however_many_state_files_raise_it() {
    const STATE_FILES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let first = HaltStore::new(dir.path()).sync_run("a/b", "/s/a-b.json", &[event("a/b", "X", "")]);
    assert_eq!(first.emitted.len(), 1, "{first:?}");
    // Held by another open file description, as another process holds it.
    let lock = dir.path().join(ACTIVE_DIR).join(".a_b.lock");
    let held = fs::File::open(&lock).unwrap();
    held.try_lock().unwrap();
    let pass = HaltStore::new(dir.path());
    let raised = [event("a/b", "X", ""), event("a/b", "Y", "")];
    let lines: Vec<String> = (0..STATE_FILES)
        .flat_map(|n| {
            pass.sync_run("a/b", &format!("/s/a-b-{n}.json"), &raised)
                .problems
        })
        .filter(|line| line.contains(".a_b.lock"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one pass tried and said the held lock of run a/b: {:?}",
        &lines[..2.min(lines.len())]
    );
}
