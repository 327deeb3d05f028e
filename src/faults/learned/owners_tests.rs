//! The pattern file and its lock's guard under a root daemon working in gstack's user's
//! faults dir (docs/security.md).

use std::os::unix::fs::PermissionsExt as _;

use super::record_hits;
use super::tests::entry;

/// A root daemon (docs/security.md: it works in gstack's user's faults dir) counts a hit
/// into gstack's `learned-patterns.json` (0600, gstack's, as gstack writes it): the
/// rewrite leaves the file root's, still 0600, so gstack's user can no longer read it.
/// gstack's loader then finds no learned pattern, and its promote, which reads an
/// unreadable file as `[]` and writes the file anew, drops every pattern learned before.
/// The guard file root leaves beside it is root's too, locking the daemon's service user
/// (and `berth detect` as gstack's user) out of counting hits for good.
#[test]
fn a_root_hit_count_leaves_another_users_pattern_file_and_guard_theirs() {
    use std::os::unix::fs::MetadataExt as _;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    // gstack's name for it (`faults::watch::LEARNED_FILE`).
    let path = dir.path().join("learned-patterns.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&[entry("X", "stdout_contains", "p")]).unwrap(),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for p in [dir.path(), path.as_path()] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    record_hits(&path, &["X"]).unwrap();
    let owners: Vec<(String, u32, u32)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.uid(),
                meta.mode() & 0o777,
            )
        })
        .collect();
    assert!(
        owners.iter().all(|(_, uid, _)| *uid == NOBODY),
        "left in uid {NOBODY}'s faults dir (name, uid, mode): {owners:?}"
    );
}
