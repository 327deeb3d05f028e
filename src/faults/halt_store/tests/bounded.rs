//! A subdir filled past what one listing reads: whoever writes the faults dir can plant any
//! number of names there.

use super::*;

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
