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
