//! `.lock` files in a directory where a lane's lock ref must be.
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
//! it creates the ref. At most [`MAX_BELOW_ENTRIES`] entries are looked at per write; the
//! rest wait for later writes, once those are gone.

use std::path::{Path, PathBuf};

/// The most directory entries below a lock ref looked at for one write of it.
pub const MAX_BELOW_ENTRIES: usize = 64;

/// The `.lock` files (any node named so; git makes only regular files there) below
/// `ref_path` when it is a directory (never followed through a symlink), at most
/// [`MAX_BELOW_ENTRIES`] entries looked at.
pub(super) fn lock_files_below(ref_path: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if !std::fs::symlink_metadata(ref_path).is_ok_and(|meta| meta.is_dir()) {
        return found;
    }
    let mut dirs = vec![ref_path.to_owned()];
    let mut looked = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if looked == MAX_BELOW_ENTRIES {
                return found;
            }
            looked += 1;
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "lock") {
                found.push(path);
            } else if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                dirs.push(path);
            }
        }
    }
    found
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
    }
}
