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
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    give_to_nobody(dir.path());
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
