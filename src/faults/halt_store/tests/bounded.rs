//! A subdir filled past what one listing reads: whoever writes the faults dir can plant any
//! number of names there.

use super::*;
use crate::hostile_file::read_cost::bytes_read_by;

/// `count` empty files that are no halt event planted in `dir/sub`.
fn plant_names(dir: &Path, sub: &str, count: usize) {
    let sub = dir.join(sub);
    fs::create_dir_all(&sub).unwrap();
    for n in 0..count {
        fs::File::create(sub.join(format!("planted-{n}"))).unwrap();
    }
}

/// The census reads at most [`MAX_NAMES_PER_LISTING`] names and takes a dir holding more
/// as full: a new event is held back and the cap's event says so.
#[test]
fn a_pending_dir_past_the_listing_bound_is_full() {
    let dir = tempfile::tempdir().unwrap();
    plant_names(dir.path(), PENDING_DIR, MAX_NAMES_PER_LISTING + 1);
    let report = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &[event("r", "X", "")]);
    assert_eq!(
        (report.emitted.len(), report.withheld),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(pending_of(dir.path(), CAP_RUN_ID), 1);
}

/// A listing reads at most [`MAX_NAMES_PER_LISTING`] names of a subdir and says the rest
/// were not read, as one unreadable entry naming the dir.
#[test]
fn a_listing_says_when_a_subdir_holds_more_than_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    plant_names(dir.path(), PROCESSED_DIR, MAX_NAMES_PER_LISTING + 1);
    let listing = HaltStore::new(dir.path()).list();
    assert_eq!(listing.unreadable.len(), 1, "{:?}", listing.unreadable);
    let bad = &listing.unreadable[0];
    assert!(bad.file.ends_with(PROCESSED_DIR), "{bad:?}");
    assert!(bad.reason.contains("more than 10000 entries"), "{bad:?}");
}

/// A run with faults raised, and other registries of the run that cannot be read (empty
/// files planted at registry names of the run): every fault that clears is kept raised and
/// said once per unreadable registry. The report (and the daemon's log, one error line
/// each, every pass) then holds faults × unreadable registries: with the 10,000 names a
/// look keeps and a planted registry of the run of 8 MiB (~60,000 entries), 600 million
/// lines a pass, where saying each fault and each unreadable registry once is enough.
#[test]
fn faults_kept_raised_by_unreadable_registries_are_said_once_each_not_once_per_pair() {
    const FAULTS: usize = 40;
    const UNREADABLE: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let events: Vec<HaltEvent> = (0..FAULTS)
        .map(|n| event("r", &format!("X{n}"), ""))
        .collect();
    let report = store.sync_run("r", "/s/r.json", &events);
    assert_eq!(report.emitted.len(), FAULTS, "{report:?}");
    let active = dir.path().join(ACTIVE_DIR);
    for n in 0..UNREADABLE {
        let other = crate::faults::registry::path(&active, "r", &format!("/s/other-{n}.json"));
        fs::File::create(other).unwrap();
    }
    let report = store.sync_run("r", "/s/r.json", &[]);
    assert!(report.resolved.is_empty(), "{:?}", report.resolved);
    assert!(
        report.problems.len() <= FAULTS + UNREADABLE,
        "{} problems for {FAULTS} faults kept raised and {UNREADABLE} unreadable registries, e.g. {:?}",
        report.problems.len(),
        &report.problems[..2]
    );
}

/// An 8 MiB registry of run `run` whose state file is `source`, as JSON within what a
/// JSON file may be.
fn planted_registry(run: &str, source: &str) -> Vec<u8> {
    let planted = serde_json::json!({
        "runId": run,
        "source": source,
        "updatedAt": "x".repeat(8 * 1024 * 1024 - 400),
        "active": {},
    });
    let bytes = serde_json::to_vec(&planted).unwrap();
    assert!(bytes.len() as u64 <= json_file::MAX_JSON_BYTES);
    bytes
}

/// `bytes` planted in `dir` under each of `names`: one file, hard-linked (one file's disk).
pub(super) fn plant_under_names(dir: &Path, bytes: &[u8], names: impl IntoIterator<Item = String>) {
    let mut names = names.into_iter();
    let first = dir.join(names.next().unwrap());
    fs::write(&first, bytes).unwrap();
    for name in names {
        fs::hard_link(&first, dir.join(name)).unwrap();
    }
}
/// The sweep for registries of gone runs reads every registry in `active-faults/` whole,
/// at the first raise or clear of every pass, on the tick's own thread (`tick_runs` runs in
/// the tick's local half). One 8 MiB registry of a live run planted under many names (hard
/// links: 8 MiB of disk) makes each pass read 8 MiB per name: 100 names, 800 MiB; the
/// 10,000 a listing allows, 80 GB a pass, and no record is claimed meanwhile.
#[test]
fn one_pass_reads_a_bounded_number_of_bytes_from_active_faults() {
    const NAMES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let active = dir.path().join(ACTIVE_DIR);
    fs::create_dir(&active).unwrap();
    let bytes = planted_registry("other", "/queue");
    plant_under_names(
        &active,
        &bytes,
        (0..NAMES).map(|n| format!("other-{n}.json")),
    );
    let store = HaltStore::new(dir.path());
    let (report, read) = bytes_read_by(|| store.sync_run("r", "/s/r.json", &[event("r", "X", "")]));
    assert_eq!(report.emitted.len(), 1, "{report:?}");
    assert!(
        read <= 8 * json_file::MAX_JSON_BYTES,
        "one sync of one fault read {read} bytes, {NAMES} planted names of one 8 MiB registry"
    );
}

/// A listing (the queue page's facts once a second, `/metrics` when the dir's stamp moves,
/// `faults list`, `doctor`) reads every event it lists whole: one 8 MiB event planted in
/// `processed/` under many names (hard links: 8 MiB of disk) costs a listing 8 MiB per
/// name: 100 names, 800 MiB; the 10,000 names a listing reads in each of `pending/` and
/// `processed/`, 160 GB, on one of the endpoint's two handler threads, so two page loads
/// hold both and nothing else is served. docs/limits.md bounds what a listing holds (one
/// event at a time), not what it reads.
#[test]
fn a_listing_reads_a_bounded_number_of_bytes() {
    const NAMES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let processed = dir.path().join(PROCESSED_DIR);
    fs::create_dir(&processed).unwrap();
    let planted = serde_json::json!({
        "event": "SKILL_FAULT",
        "runId": "r",
        "faultId": "X:all:00000000",
        "pad": "x".repeat(8 * 1024 * 1024 - 200),
    });
    let bytes = serde_json::to_vec(&planted).unwrap();
    assert!(bytes.len() as u64 <= json_file::MAX_JSON_BYTES);
    plant_under_names(
        &processed,
        &bytes,
        (0..NAMES).map(|n| format!("r-{n}.json")),
    );
    let store = HaltStore::new(dir.path());
    let (listing, read) = bytes_read_by(|| store.list());
    assert_eq!(listing.halts.len(), NAMES, "{:?}", listing.unreadable);
    assert!(
        read <= 8 * json_file::MAX_JSON_BYTES,
        "one listing read {read} bytes: {NAMES} names of one planted 8 MiB event"
    );
}

/// One name that is not UTF-8 planted in `active-faults/` (an empty file: whoever writes
/// the faults dir can) is read lossily, and a lossy name "may be" a registry of any run:
/// from then on every run that raises and clears a fault keeps its lock file for good,
/// one more file per run ever faulted, where runs that come and go leave nothing.
#[test]
fn one_planted_name_that_is_not_utf8_keeps_no_run_lock_file() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let active = dir.path().join(ACTIVE_DIR);
    fs::create_dir(&active).unwrap();
    fs::File::create(active.join(std::ffi::OsStr::from_bytes(b"\xff.json"))).unwrap();
    let store = HaltStore::new(dir.path());
    for n in 0..30 {
        let run = format!("run{n}");
        store.sync_run(&run, "/s/x.json", &[event(&run, "X", "")]);
        let cleared = store.sync_run(&run, "/s/x.json", &[]);
        assert_eq!(cleared.resolved.len(), 1, "{cleared:?}");
    }
    let locks: Vec<String> = fs::read_dir(&active)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert!(
        locks.is_empty(),
        "{} run lock files left: {locks:?}",
        locks.len()
    );
}

/// The sweep judges a registry once per stamp: a later pass over the same registry reads
/// none of it, and still removes it once its state file goes.
#[test]
fn the_sweep_reads_a_judged_registry_once_and_still_removes_it_when_its_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.json");
    fs::write(&state, "{}").unwrap();
    let active = crate::private_dir::PrivateDir::ensure(dir.path(), ACTIVE_DIR).unwrap();
    let name = crate::faults::registry::name("run", state.to_str().unwrap());
    let registry = crate::faults::registry::Registry {
        run_id: "run".into(),
        source: state.to_str().unwrap().into(),
        updated_at: "x".repeat(1024 * 1024),
        ..Default::default()
    };
    crate::faults::registry::save(&active, &name, &registry).unwrap();
    // A stamp younger than the racy window proves nothing: it is read again.
    std::thread::sleep(std::time::Duration::from_nanos(
        crate::file_stamp::RACY_NS as u64 + 20_000_000,
    ));
    super::sweep::remove_gone_runs(&active);
    let ((), read) = bytes_read_by(|| super::sweep::remove_gone_runs(&active));
    assert!(
        read < 1024 * 1024,
        "a pass read {read} bytes of an unchanged registry"
    );
    assert!(active.entry(&name).unwrap().is_some(), "its run is live");
    fs::remove_file(&state).unwrap();
    super::sweep::remove_gone_runs(&active);
    assert!(active.entry(&name).unwrap().is_none(), "its run is gone");
}

/// Event files that are distinct (sparse files: no disk) past what one listing of a
/// long-lived store reads: the listing reads up to its budget and says it is partial, once;
/// picking a run from it is refused.
#[test]
fn a_listing_past_its_read_budget_says_it_is_partial() {
    let dir = tempfile::tempdir().unwrap();
    let processed = dir.path().join(PROCESSED_DIR);
    fs::create_dir(&processed).unwrap();
    let files = MAX_LISTING_READ_BYTES / json_file::MAX_JSON_BYTES + 2;
    for n in 0..files {
        let file = fs::File::create(processed.join(format!("r-{n}.json"))).unwrap();
        file.set_len(json_file::MAX_JSON_BYTES).unwrap();
    }
    let (listing, read) = bytes_read_by(|| HaltStore::long_lived(dir.path()).list());
    // Beside the events: this thread's reads of its own counter.
    assert!(read <= MAX_LISTING_READ_BYTES + 4096, "{read}");
    let partial: Vec<_> = listing
        .unreadable
        .iter()
        .filter(|u| {
            u.reason
                .starts_with("listing partial: 2 event files not read")
        })
        .collect();
    assert_eq!(partial.len(), 1, "{:?}", listing.unreadable);
    assert_eq!(listing.left_out.unread_files, 2);
    let runs = HaltStore::long_lived(dir.path()).pending_runs("X:all:00000000");
    assert!(runs.is_err(), "{runs:?}");
}

/// A long-lived store's next listing reads no file whose stamp did not move, and shows it
/// as before (a one-shot store has no next listing, and keeps no reads).
#[test]
fn a_listing_does_not_read_again_what_the_last_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let processed = dir.path().join(PROCESSED_DIR);
    fs::create_dir(&processed).unwrap();
    let planted = serde_json::json!({
        "runId": "r",
        "faultId": "X:all:00000000",
        "pad": "x".repeat(1024 * 1024),
    });
    fs::write(
        processed.join("r-0.json"),
        serde_json::to_vec(&planted).unwrap(),
    )
    .unwrap();
    // A stamp younger than the racy window proves nothing: it is read again.
    std::thread::sleep(std::time::Duration::from_nanos(
        crate::file_stamp::RACY_NS as u64 + 20_000_000,
    ));
    let store = HaltStore::long_lived(dir.path());
    let first = store.list();
    let (again, read) = bytes_read_by(|| store.list());
    assert!(read < 1024 * 1024, "the second listing read {read} bytes");
    assert_eq!(again.halts, first.halts);
    assert_eq!(again.halts.len(), 1, "{:?}", again.unreadable);
}

/// A pass over a run whose raised faults did not change reads none of its registry (up to
/// 8 MiB), and a change is still synced.
#[test]
fn a_sync_that_changes_nothing_does_not_read_the_runs_registry_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let raised = event("r", "X", "");
    store.sync_run("r", "/s/r.json", std::slice::from_ref(&raised));
    let active = crate::private_dir::PrivateDir::ensure(dir.path(), ACTIVE_DIR).unwrap();
    let name = crate::faults::registry::name("r", "/s/r.json");
    let (mut registry, _) =
        crate::faults::registry::load(&active, &name, "r", "/s/r.json").unwrap();
    registry.updated_at = "x".repeat(1024 * 1024);
    crate::faults::registry::save(&active, &name, &registry).unwrap();
    // A stamp younger than the racy window proves nothing: it is read again.
    std::thread::sleep(std::time::Duration::from_nanos(
        crate::file_stamp::RACY_NS as u64 + 20_000_000,
    ));
    let store = HaltStore::new(dir.path());
    store.sync_run("r", "/s/r.json", std::slice::from_ref(&raised));
    let (report, read) =
        bytes_read_by(|| store.sync_run("r", "/s/r.json", std::slice::from_ref(&raised)));
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(read < 1024 * 1024, "an unchanged sync read {read} bytes");
    let cleared = store.sync_run("r", "/s/r.json", &[]);
    assert_eq!(cleared.resolved, vec![raised.fault_id], "{cleared:?}");
}

/// `berth faults list` is a new store each time: it has no last listing, so every run reads
/// `processed/` afresh within the 64 MiB budget. gstack never prunes `processed/`, and an
/// event keeps 200 lines of its run's stdout: 2,500 events of 200 lines of 140 characters
/// (~28 KiB each, 70 MiB, a quarter of the 10,000 names a listing reads) leave every
/// `faults list` partial, exiting 1, and the same events unlisted each time: "a later
/// listing reads them" never comes for the CLI.
#[test]
fn faults_list_shows_a_long_lived_processed_dir_whole() {
    const EVENTS: usize = 2_500;
    let dir = tempfile::tempdir().unwrap();
    let processed = dir.path().join(PROCESSED_DIR);
    fs::create_dir(&processed).unwrap();
    let line = "x".repeat(139);
    let tail = vec![line.as_str(); crate::faults::halt::STDOUT_TAIL_LINES].join("\n");
    let mut total = 0;
    for n in 0..EVENTS {
        let event = event(&format!("run-{n}"), "X", &tail);
        let bytes = json_file::pretty(&event).unwrap();
        total += bytes.len() as u64;
        let name = format!("run-{n}-{}.json", event.fault_id);
        fs::write(processed.join(name), bytes).unwrap();
    }
    assert!(total > MAX_LISTING_READ_BYTES, "{total}");
    // Two `faults list` runs, each its own process's store.
    for _ in 0..2 {
        let listing = HaltStore::new(dir.path()).list();
        assert_eq!(
            (listing.halts.len(), listing.unreadable.len()),
            (EVENTS, 0),
            "{:?}",
            listing.unreadable
        );
    }
}

/// `berth faults ack <fault>` finds the run by [`HaltStore::pending_runs`], a fresh
/// listing that says nothing of what its 64 MiB budget left unread. 401 pending events
/// (within the 1,000 the cap allows) of 200 stdout lines of 1,000 characters (~200 KiB
/// each, 80 MiB) leave the last runs' events unread on every run of the command: ack then
/// says no pending event has the fault id, where one waits.
#[test]
fn ack_finds_a_pending_event_past_the_listings_read_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let line = "x".repeat(1_000);
    let tail = vec![line.as_str(); crate::faults::halt::STDOUT_TAIL_LINES].join("\n");
    for n in 0..400 {
        store
            .emit(&event(&format!("a-{n:03}"), "X", &tail))
            .unwrap();
    }
    let last = event("z", "Y", &tail);
    store.emit(&last).unwrap();
    assert!(dir.path().join(PENDING_DIR).read_dir().unwrap().count() > 400);
    let runs = HaltStore::new(dir.path())
        .pending_runs(&last.fault_id)
        .unwrap();
    assert_eq!(
        runs,
        vec!["z".to_owned()],
        "pending run of {}",
        last.fault_id
    );
}

/// The sweep reads a registry planted under many names once (by stamp), but the look for
/// a run's other registries ([`crate::faults::registry::raised_elsewhere`], at every raise
/// or clear of the run) reads every name of the run whole: one 8 MiB registry of run `r`
/// (a live state file's) under 100 names costs one raise 800 MiB read on the tick's
/// thread; under the 10,000 names it keeps, 80 GB.
#[test]
fn a_raise_reads_a_bounded_number_of_bytes_of_the_runs_other_registries() {
    const NAMES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("elsewhere.json");
    fs::write(&state, "{}").unwrap();
    let active = dir.path().join(ACTIVE_DIR);
    fs::create_dir(&active).unwrap();
    let bytes = planted_registry("r", state.to_str().unwrap());
    plant_under_names(
        &active,
        &bytes,
        (0..NAMES).map(|n| format!("r-{n:08x}.json")),
    );
    let store = HaltStore::new(dir.path());
    let (report, read) = bytes_read_by(|| store.sync_run("r", "/s/r.json", &[event("r", "X", "")]));
    assert_eq!(report.emitted.len(), 1, "{report:?}");
    assert!(
        read <= 8 * json_file::MAX_JSON_BYTES,
        "one raise read {read} bytes: {NAMES} names of one 8 MiB registry of the run"
    );
}

/// `faults ack` without `--run` refuses to pick a run from a listing whose
/// `pending-investigations/` was cut, whatever else was cut: a `processed/` cut too (gstack
/// never prunes it) must not hide that pending names were left unread.
#[test]
fn a_cut_pending_dir_stays_partial_when_processed_is_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    plant_names(dir.path(), PENDING_DIR, MAX_NAMES_PER_LISTING + 1);
    plant_names(dir.path(), PROCESSED_DIR, MAX_NAMES_PER_LISTING + 1);
    let store = HaltStore::new(dir.path());
    let listing = store.list();
    assert!(listing.left_out.pending_cut, "{:?}", listing.left_out);
    let runs = store.pending_runs("X");
    assert!(runs.is_err(), "ack picks from a partial listing: {runs:?}");
}

/// The looks of one pass for runs' other registries share their reads: one 8 MiB registry
/// of another run planted under a name of each of 20 runs (hard links: one file's disk) is
/// read once by a pass where the 20 runs each raise a fault (and once by the sweep), not
/// once by every run's look (160 MiB on the tick's thread).
#[test]
fn a_pass_of_many_runs_reads_one_planted_registry_once() {
    const RUNS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("elsewhere.json");
    fs::write(&state, "{}").unwrap();
    let active = dir.path().join(ACTIVE_DIR);
    fs::create_dir(&active).unwrap();
    let bytes = planted_registry("zz", state.to_str().unwrap());
    plant_under_names(
        &active,
        &bytes,
        (0..RUNS).map(|n| format!("r{n}-00000000.json")),
    );
    let store = HaltStore::new(dir.path());
    let ((), read) = bytes_read_by(|| {
        for n in 0..RUNS {
            let run = format!("r{n}");
            let report = store.sync_run(&run, &format!("/s/{run}.json"), &[event(&run, "X", "")]);
            assert_eq!(report.emitted.len(), 1, "{report:?}");
        }
    });
    assert!(
        read <= 2 * json_file::MAX_JSON_BYTES,
        "one pass of {RUNS} raises read {read} bytes: one 8 MiB registry under a name of each run"
    );
}

/// Every look of one pass takes its reads from one budget: five runs each with a distinct
/// 8 MiB registry planted under a name of the run clear their fault in one pass; the four
/// the pass's 32 MiB read resolve theirs, the fifth's look is left unread, so its fault
/// stays raised (not resolved) and the pass says why.
#[test]
fn the_looks_of_one_pass_share_one_read_budget() {
    const RUNS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("elsewhere.json");
    fs::write(&state, "{}").unwrap();
    let runs: Vec<String> = (0..RUNS).map(|n| format!("r{n}")).collect();
    // Live state files: the sweep of gone runs leaves their registries alone.
    let source = |run: &str| {
        let path = dir.path().join(format!("{run}.json"));
        fs::write(&path, "{}").unwrap();
        path.to_str().unwrap().to_owned()
    };
    let raising = HaltStore::new(dir.path());
    for run in &runs {
        let report = raising.sync_run(run, &source(run), &[event(run, "X", "")]);
        assert_eq!(report.emitted.len(), 1, "{report:?}");
    }
    let active = dir.path().join(ACTIVE_DIR);
    for run in &runs {
        let name = crate::faults::registry::name(run, "/other.json");
        fs::write(
            active.join(name),
            planted_registry(run, state.to_str().unwrap()),
        )
        .unwrap();
    }
    let clearing = HaltStore::new(dir.path());
    let reports: Vec<SyncReport> = runs
        .iter()
        .map(|run| clearing.sync_run(run, &source(run), &[]))
        .collect();
    let resolved = reports.iter().filter(|r| r.resolved.len() == 1).count();
    assert_eq!(resolved, RUNS - 1, "{reports:?}");
    let last = &reports[RUNS - 1];
    assert!(last.resolved.is_empty(), "{last:?}");
    assert!(
        last.problems.iter().any(|p| p.contains("not read")),
        "{last:?}"
    );
}
