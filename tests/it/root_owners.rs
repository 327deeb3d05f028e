//! A root daemon beside gstack's user (docs/security.md#a-root-berth-beside-another-user):
//! gstack's user owns the queue dir and its records, and gstack's tools, which run as that
//! user, must still read and rewrite every record once root's daemon has moved it.
//! These run as root (as the suite does here), playing gstack's user as `nobody`.

use std::fs;
use std::os::unix::fs::MetadataExt as _;

use crate::support::World;

const NOBODY: u32 = 65534;

#[test]
fn a_root_daemon_landing_a_gstack_users_record_leaves_the_queue_dir_theirs() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    for entry in fs::read_dir(&world.queue).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::os::unix::fs::chown(&world.queue, Some(NOBODY), Some(NOBODY)).unwrap();
    let config = world.git_forge_config("");

    world.run_once(&config).success();

    assert_eq!(world.read_record(&id)["status"], "landed");
    let left: Vec<(String, u32, u32)> = fs::read_dir(&world.queue)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, meta.uid(), meta.mode() & 0o777)
        })
        .collect();
    assert!(
        left.iter().all(|(_, uid, _)| *uid == NOBODY),
        "root's daemon left in uid {NOBODY}'s queue dir (name, uid, mode): {left:?}"
    );
}
