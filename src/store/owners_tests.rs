//! A root daemon in a queue dir gstack's user owns (docs/security.md): the records it
//! writes, the locks it takes and the dir it makes stay that user's, so gstack's tools
//! (which run as that user) can still read and rewrite them. Run as root (as the suite
//! does here), playing the other user as `nobody`; skipped otherwise.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use super::*;
use crate::record::Status;
use crate::record::sample::queued;

const NOBODY: u32 = 65534;

/// Every entry in `dir` as (name, uid, mode).
fn owners(dir: &Path) -> Vec<(String, u32, u32)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, meta.uid(), meta.mode() & 0o777)
        })
        .collect()
}

#[test]
fn a_root_daemons_writes_in_another_users_queue_dir_stay_that_users() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    // Made by root before gstack made it: the dir is still gstack's user's.
    let store = QueueStore::new(home.path().join("release-queue"));
    let inserted = store.insert(&queued(1)).unwrap();
    // gstack's producer wrote this one, 0600 as gstack writes records.
    let gstacks = {
        let id = store.insert(&queued(2)).unwrap();
        let path = store.path_of(&id);
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        id
    };
    for id in [&inserted, &gstacks] {
        let claim = Move::new(id, Expect::OneOf(&[Status::Queued]), Status::Claiming);
        store.transition(claim, |_| {}).unwrap();
    }
    let meta = fs::metadata(home.path().join("release-queue")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (NOBODY, 0o700));
    let left = owners(&home.path().join("release-queue"));
    assert!(
        left.iter().all(|(_, uid, _)| *uid == NOBODY),
        "root left in uid {NOBODY}'s queue dir (name, uid, mode): {left:?}"
    );
    let mode_of = |id: &str| fs::metadata(store.path_of(id)).unwrap().mode() & 0o777;
    assert_eq!((mode_of(&inserted), mode_of(&gstacks)), (0o600, 0o640));
}
