//! What stands in a directory where a lane's lock ref must be: `.lock` files and broken
//! refs.
//!
//! A writer of a ref below the lock ref (`<lock ref>/x`, written by hand or another tool,
//! and removed by berth as a ref in the way, [`super::in_the_way`]) killed between git's
//! unlink of the ref and of its `.lock` leaves `<lock ref>/x.lock` alone in a directory
//! where git must make the lock ref's file: every create then fails ("a non-empty
//! directory … blocking reference"), and no ref in the way is listed. So when the lock
//! ref's path is a directory, the `.lock` files in it (at any depth) are judged like the
//! lock ref's own ([`super::leftover`]): removed by the writer child under the writers'
//! lock, only if still the node judged, and only while no process may be their writer
//! ([`super::foreign_writer`]). git removes the empty directories left behind itself when
//! it creates the ref. A crash there can also leave a ref file git cannot read (an empty
//! file whose rename was not synced), and anything else may be planted: such a broken ref
//! is listed by no one and blocks every create the same way, so it is judged before the
//! write ([`super::broken_ref`]): it holds the lane, named, until the cap, then
//! is set aside. At most [`MAX_BELOW_ENTRIES`] entries are looked at per write for each;
//! the rest wait for later writes, once those are gone.

use std::path::{Path, PathBuf};

/// The most directory entries below a lock ref looked at for one write of it.
pub const MAX_BELOW_ENTRIES: usize = 64;

/// The `.lock` files (any node named so; git makes only regular files there) below
/// `ref_path` when it is a directory (never followed through a symlink), at most
/// [`MAX_BELOW_ENTRIES`] entries looked at.
pub(super) fn lock_files_below(ref_path: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    each_below(ref_path, |path| {
        if is_lock_file(&path) {
            found.push(path);
        }
    });
    found
}

pub(super) fn is_lock_file(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "lock")
}

/// Calls `visit` with each node below `ref_path` when it is a directory that is not a
/// directory itself (or is a `.lock` one), at most [`MAX_BELOW_ENTRIES`] entries looked at.
pub(super) fn each_below(ref_path: &Path, mut visit: impl FnMut(PathBuf)) {
    if !std::fs::symlink_metadata(ref_path).is_ok_and(|meta| meta.is_dir()) {
        return;
    }
    let mut dirs = vec![ref_path.to_owned()];
    let mut looked = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if looked == MAX_BELOW_ENTRIES {
                return;
            }
            looked += 1;
            let path = entry.path();
            if !is_lock_file(&path) && entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                dirs.push(path);
            } else {
                visit(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lock_files_below_a_directory_are_found_and_the_look_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let lock_ref = dir.path().join("main");
        assert!(lock_files_below(&lock_ref).is_empty());
        std::fs::write(&lock_ref, "").unwrap();
        assert!(
            lock_files_below(&lock_ref).is_empty(),
            "a ref file has nothing below"
        );
        std::fs::remove_file(&lock_ref).unwrap();
        std::fs::create_dir_all(lock_ref.join("a/b")).unwrap();
        std::fs::write(lock_ref.join("x.lock"), "").unwrap();
        std::fs::write(lock_ref.join("a/b/y.lock"), "").unwrap();
        std::fs::write(lock_ref.join("a/z"), "").unwrap();
        let mut found = lock_files_below(&lock_ref);
        found.sort();
        assert_eq!(
            found,
            [lock_ref.join("a/b/y.lock"), lock_ref.join("x.lock")]
        );
        for n in 0..2 * MAX_BELOW_ENTRIES {
            std::fs::write(lock_ref.join(format!("{n}.lock")), "").unwrap();
        }
        assert_eq!(lock_files_below(&lock_ref).len(), MAX_BELOW_ENTRIES);
    }

    mod lane {
        use crate::lane_lock::tests::{BareOrigin, widget_main};
        use crate::lane_lock::{Acquire, lock_ref_name};
        use crate::ownership::MAX_CLOCK_SKEW;

        /// A writer of a ref below the lane's lock ref (`<lock ref>/x`) killed mid-write (berth's
        /// own removal child killed at its time limit between git's unlink of the ref and of its
        /// `.lock`, or any git SIGKILLed) leaves `<lock ref>/x.lock` alone in a directory where
        /// the lock ref must be: git then fails every create ("there is a non-empty directory …
        /// blocking reference"), the listing shows no ref in the way, and no `.lock` berth judges
        /// is at `<lock ref>.lock`. The file is a dead writer's (an hour old, on the file
        /// system's clock), as the ones berth removes at the lock ref itself, and is removed
        /// the same way: the lane is taken.
        #[test]
        fn a_dead_writers_lock_file_below_the_lock_ref_is_removed_and_the_lane_taken() {
            let lane = widget_main();
            let lock_ref = lock_ref_name(&lane);
            let origin = BareOrigin::new();
            let leftover = origin.bare.join(format!("{lock_ref}/x.lock"));
            std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
            std::fs::write(&leftover, "").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&leftover)
                .unwrap()
                .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
                .unwrap();
            let client = origin.client();
            // Many tries, as many ticks of a daemon would make: none takes the lane.
            let mut outcomes = Vec::new();
            for _ in 0..3 {
                let outcome = origin.take(&client, &lane);
                if let Ok(Acquire::Acquired(held)) = outcome {
                    client.release(&held).unwrap();
                    return;
                }
                outcomes.push(format!("{outcome:?}"));
            }
            panic!(
                "a dead writer's hour-old {} keeps every acquire of the lane from taking it, nobody holding it: {outcomes:#?}",
                leftover.display()
            );
        }

        /// Broken refs below the lane's lock ref (an empty file a crash left where a writer's
        /// rename was not synced, garbage, a dangling symlink, a FIFO, a name that is not
        /// UTF-8) keep git from making the lock ref's file, and no listing names them. They
        /// hold the lane, named, until as long after their first sighting as any lock lasts;
        /// then they are moved out of refs/, kept, and the lane is taken.
        #[test]
        fn broken_refs_below_the_lock_ref_hold_the_lane_then_are_set_aside_past_the_cap() {
            use std::os::unix::ffi::OsStrExt as _;

            let lane = widget_main();
            let origin = BareOrigin::new();
            let below = origin.bare.join(lock_ref_name(&lane));
            std::fs::create_dir_all(below.join("a")).unwrap();
            std::fs::write(below.join("x"), "").unwrap();
            std::fs::write(below.join("a/y"), "junk\n").unwrap();
            std::os::unix::fs::symlink(origin.dir.path().join("nowhere"), below.join("l")).unwrap();
            nix::unistd::mkfifo(&below.join("f"), nix::sys::stat::Mode::S_IRWXU).unwrap();
            let odd = below.join(std::ffi::OsStr::from_bytes(b"\xff"));
            std::fs::write(&odd, "0123456789abcdef0123456789abcdef01234567\n").unwrap();
            let client = origin.client();
            let take = || origin.take(&client, &lane);
            let first = format!("{:?}", take());
            assert!(
                first.contains(&*below.to_string_lossy()) && first.contains("moves it out"),
                "the first try does not name a broken ref: {first}"
            );
            assert!(below.join("x").exists() && below.join("f").exists());
            let cap =
                chrono::Duration::from_std(crate::lane_lock::LONGEST_TTL + MAX_CLOCK_SKEW).unwrap();
            let long_ago = crate::clock::now() - cap - chrono::Duration::seconds(1);
            client.sightings.expiry.all_seen_since(long_ago);
            let outcome = take();
            let Ok(Acquire::Acquired(held)) = outcome else {
                panic!(
                    "broken refs below the lock ref keep the lane past the cap: first {first}; then {outcome:?}"
                );
            };
            client.release(&held).unwrap();
            let aside = crate::lane_lock::tests::set_aside_in(&origin.bare).len();
            assert_eq!(aside, 5, "not every broken ref was kept aside");
        }
    }
}
