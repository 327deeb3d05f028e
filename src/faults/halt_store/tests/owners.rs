//! The halt dir's subdirs made by another user than the one berth runs as: gstack (or the
//! daemon's service user) made them, and root runs the daemon or `berth faults ack`. These
//! tests run as root (as the suite does here) and play the other user as `nobody`.

use std::os::unix::fs::MetadataExt as _;

use super::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `dir` and every entry under it given to `nobody`, as if that user had made them.
fn give_to_nobody(dir: &Path) {
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
    if dir.is_dir() {
        for entry in fs::read_dir(dir).unwrap() {
            give_to_nobody(&entry.unwrap().path());
        }
    }
}

/// A faults dir `nobody` owns, as a gstack running as its own user leaves it; none unless
/// this runs as root (no other user can give a dir away).
fn nobodys_faults_dir() -> Option<tempfile::TempDir> {
    if !is_root() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    give_to_nobody(dir.path());
    Some(dir)
}

/// One event filed by a pass of the daemon (running as root here) into `dir`.
fn file_one_event(dir: &Path) -> HaltEvent {
    let x = event("r", "X", "");
    let report = HaltStore::new(dir).sync_run("r", "/s/r.json", std::slice::from_ref(&x));
    assert_eq!(report.emitted.len(), 1, "{report:?}");
    x
}

/// Fails unless every entry in `dir` is `nobody`'s (naming what root left there); their
/// (name, uid, mode).
fn assert_all_nobodys(dir: &Path) -> Vec<(std::ffi::OsString, u32, u32)> {
    let owners: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            (entry.file_name(), meta.uid(), meta.mode() & 0o777)
        })
        .collect();
    assert!(
        owners.iter().all(|(_, uid, _)| *uid == NOBODY),
        "root left in {} (name, uid, mode): {owners:?}",
        dir.display()
    );
    owners
}

/// A root daemon beside a gstack that runs as its own user: gstack's `emitHaltEvent` made
/// `pending-investigations/` (`mkdir -p`, 0755) before berth first filed. The faults dir's
/// owner could swap the subdir for anything anyway, so its subdir proves nothing less than
/// one of root's own; berth must still file, not refuse on every pass for good.
#[test]
fn a_root_daemon_files_into_the_pending_dir_gstack_made_as_its_own_user() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(PENDING_DIR)).unwrap();
    give_to_nobody(dir.path());
    let report = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &[event("r", "X", "")]);
    assert_eq!(
        report.emitted.len(),
        1,
        "no halt event filed, and none will be on any later pass: {report:?}"
    );
}

/// `sudo berth faults ack` on a host whose daemon runs as a service user: the event is
/// moved as gstack's `markInvestigated` (a plain rename) would move it, not refused because
/// the dirs are not root's.
#[test]
fn faults_ack_as_root_moves_an_event_in_the_daemon_users_dirs() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let x = event("r", "X", "");
    HaltStore::new(dir.path()).emit(&x).unwrap();
    fs::create_dir(dir.path().join(PROCESSED_DIR)).unwrap();
    give_to_nobody(dir.path());
    let marked = HaltStore::new(dir.path()).mark_investigated("r", &x.fault_id);
    assert!(
        matches!(marked, Ok(Marked::Moved(_))),
        "ack as root: {marked:?}"
    );
}

/// An ack that finds no pending event writes nothing: above all no
/// `pending-investigations/` of the acking user's own (root's, 0700), which the daemon's
/// user can then never open, so that no halt event is filed again until an operator finds
/// and removes it.
#[test]
fn an_ack_that_finds_nothing_makes_no_pending_dir() {
    let Some(dir) = nobodys_faults_dir() else {
        return;
    };
    let marked = HaltStore::new(dir.path()).mark_investigated("r", "X:all:0123abcd");
    let pending = dir.path().join(PENDING_DIR);
    let made = fs::symlink_metadata(&pending)
        .ok()
        .map(|m| (m.uid(), m.mode() & 0o777));
    assert_eq!(
        made,
        None,
        "ack ({marked:?}) made {} as (uid, mode) {made:?}",
        pending.display()
    );
}

/// What a root daemon makes in a faults dir of another user's (gstack's) is that user's:
/// the subdirs it creates and the events it writes, so gstack's investigators and drain,
/// running as that user, can read, move and archive them as their own.
#[test]
fn what_a_root_daemon_makes_in_another_users_faults_dir_is_that_users() {
    let Some(dir) = nobodys_faults_dir() else {
        return;
    };
    let x = file_one_event(dir.path());
    let marked = HaltStore::new(dir.path()).mark_investigated("r", &x.fault_id);
    let Ok(Marked::Moved(processed)) = marked else {
        panic!("ack as root: {marked:?}");
    };
    for path in [
        dir.path().join(PENDING_DIR),
        dir.path().join(ACTIVE_DIR),
        dir.path().join(PROCESSED_DIR),
        processed,
    ] {
        let meta = fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (NOBODY, NOBODY),
            "{}",
            path.display()
        );
    }
}

/// A subdir of a third user's (neither berth's nor the faults dir's owner's) is still
/// refused, named with both owners it could have had.
#[test]
fn a_third_users_subdir_is_refused_with_both_owners_named() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(PENDING_DIR)).unwrap();
    give_to_nobody(&dir.path().join(PENDING_DIR));
    std::os::unix::fs::chown(dir.path(), Some(NOBODY - 1), None).unwrap();
    let err = HaltStore::new(dir.path())
        .emit(&event("r", "X", ""))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("belongs to uid 65534"), "{text}");
    assert!(text.contains("(uid 65533)"), "{text}");
}

/// Every file a root daemon leaves in `active-faults/` of another user's faults dir is that
/// user's, the run's lock file included: a lock file root made (0600, root's) can never be
/// opened by the daemon's service user or gstack again, so that run's faults are neither
/// filed nor resolved on any later pass under that user.
#[test]
fn the_run_lock_a_root_daemon_leaves_in_another_users_faults_dir_is_that_users() {
    let Some(dir) = nobodys_faults_dir() else {
        return;
    };
    file_one_event(dir.path());
    assert_all_nobodys(&dir.path().join(ACTIVE_DIR));
}

/// A `pending-investigations/` still root's in another user's faults dir: another root
/// process (`sudo berth faults ack`, the daemon) made it and had not yet given it away when
/// this one opened it (`mkdirat` gave EEXIST), or a berth before the give-away made it. What
/// root writes there must still be the faults dir owner's, or gstack's investigators,
/// running as that user, cannot read the events root files (0600, root's) for the whole
/// life of the daemon, which keeps the dir it opened.
#[test]
fn events_a_root_daemon_files_into_a_root_subdir_of_another_users_faults_dir_are_that_users() {
    let Some(dir) = nobodys_faults_dir() else {
        return;
    };
    fs::create_dir(dir.path().join(PENDING_DIR)).unwrap();
    file_one_event(dir.path());
    let filed = assert_all_nobodys(&dir.path().join(PENDING_DIR));
    assert!(!filed.is_empty(), "no event filed");
}

/// A root daemon that files before gstack made its faults dir (a fresh install; gstack
/// makes it with `mkdir -p` on its first event) creates it, in gstack's user's dir, as
/// root's 0700: gstack's user can then neither file into it nor read what root filed, and
/// the subdirs root gives that user cannot be reached through it.
#[test]
fn a_faults_dir_a_root_daemon_makes_in_another_users_dir_is_that_users() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    give_to_nobody(dir.path());
    let faults = dir.path().join("skill-faults");
    let report = HaltStore::new(&faults).sync_run("r", "/s/r.json", &[event("r", "X", "")]);
    assert_eq!(report.emitted.len(), 1, "{report:?}");
    let meta = fs::metadata(&faults).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (NOBODY, 0o700),
        "{} (uid, mode) as root made it in uid {NOBODY}'s dir",
        faults.display()
    );
}
