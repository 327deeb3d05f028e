//! A broken ref (a file that is no ref) above a lane's lock ref in a local origin.
//!
//! A file at `refs/gstack/release-locks/<identity>` keeps git from making the directory
//! the lock ref needs ("non-directory in the way"), for every lane of the repository. A
//! valid ref there is listed and judged as a ref in the way ([`super::in_the_way`]); one
//! git cannot read as a ref is listed by no one, so it is judged here, like a commit that
//! is no lock: kept, and the write fails naming it, until as long after its first
//! sighting as any lock could last ([`expiry_cap::unreadable_expiry`], its sighting kept
//! under the zero id); then moved whole, under the writers' lock and only while it is
//! still the file judged, out of `refs/` to `<git dir>/berth-set-aside-<dev>-<inode>`,
//! never deleted unread. Only files below [`LOCK_REF_PREFIX`] are looked at.

use std::path::Path;
use std::time::Duration;

use git2::{Oid, Repository};
use nix::libc;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;

use super::LOCK_REF_PREFIX;
use super::expiry_cap::{self, ExpirySightings};
use super::leftover::FileId;
use crate::{atomic_file, clock};

/// How long the writers' lock is waited for before setting a broken ref aside; a busy one
/// leaves it for a later write.
const WRITERS_WAIT: Duration = Duration::from_millis(250);

/// Sets aside a broken ref above `ref_name` in `origin` once it has been seen as long as
/// any lock lasts; before that, logs it and when it goes.
pub(super) fn clear(
    origin: &Repository,
    ref_name: &str,
    writers_lock: &Path,
    expiry: &ExpirySightings,
    longest_ttl: Duration,
) {
    let slashes = ref_name.match_indices('/').map(|(at, _)| at);
    for above in slashes.filter(|&at| at > LOCK_REF_PREFIX.len()) {
        let name = &ref_name[..above];
        let path = origin.path().join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return;
        };
        if meta.is_dir() {
            continue;
        }
        if origin.refname_to_id(name).is_ok() {
            return;
        }
        let now = clock::now();
        let until = expiry_cap::unreadable_expiry(expiry, Oid::ZERO_SHA1, longest_ttl, now);
        if now < until {
            tracing::warn!(
                file = %path.display(),
                lock_ref = ref_name,
                "a file that is no ref stands where git needs room for the lane's lock ref; berth moves it out of refs/ at {} if it is still there",
                clock::iso(until)
            );
            return;
        }
        set_aside(origin, &path, FileId::of(&meta), writers_lock, ref_name);
        return;
    }
}

/// Renames `path` aside while holding the writers' lock and only while it is `judged`.
fn set_aside(
    origin: &Repository,
    path: &Path,
    judged: FileId,
    writers_lock: &Path,
    ref_name: &str,
) {
    let Ok(_writers) = atomic_file::lock_exclusive_within(writers_lock, WRITERS_WAIT) else {
        tracing::info!(file = %path.display(), "the writers' lock is busy: a broken ref in the way is set aside later");
        return;
    };
    let Ok(now) = std::fs::symlink_metadata(path) else {
        return;
    };
    if FileId::of(&now) != judged {
        return;
    }
    let aside = judged.aside_in(origin.path());
    let (Ok(from), Ok(to)) = (
        CString::new(path.as_os_str().as_bytes()),
        CString::new(aside.as_os_str().as_bytes()),
    ) else {
        return;
    };
    // SAFETY: a plain system call on valid NUL-terminated paths.
    let renamed = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    match (renamed == 0)
        .then_some(())
        .ok_or_else(std::io::Error::last_os_error)
    {
        Ok(()) => tracing::warn!(
            file = %path.display(),
            aside = %aside.display(),
            lock_ref = ref_name,
            "moved a file that is no ref out of refs/: it stood where git needs room for the lane's lock ref, seen as long as any lock lasts"
        ),
        Err(e) => {
            tracing::warn!(file = %path.display(), "cannot set aside a broken ref in the way of a lane lock: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use crate::lane_lock::{Acquire, Lane, LockClient, LockSettings, lock_ref_name};
    use crate::ownership::MAX_CLOCK_SKEW;

    /// A file that is no ref (a broken ref: garbage where git expects an id) at the lane's
    /// identity directory (`refs/gstack/release-locks/<identity>`, above the lock ref)
    /// keeps git from making room for the lock ref, and git lists it with the zero id.
    /// Judged like a commit that is no lock, it would hold the lane, named, until as long
    /// after its first sighting as any lock lasts, and then be removed; instead every try
    /// fails, past that cap too: the lane (every lane of the repository) wedged for good.
    #[test]
    fn a_broken_ref_above_the_lock_ref_is_set_aside_past_the_cap() {
        let lane = Lane {
            repo_identity: "github.com/acme/widget".into(),
            base_branch: "main".into(),
        };
        let lock_ref = lock_ref_name(&lane);
        let above = lock_ref.rsplit_once('/').unwrap().0.to_owned();
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("locks.git");
        let out = Command::new("git")
            .args(["init", "--bare", "-q"])
            .arg(&bare)
            .output()
            .unwrap();
        assert!(out.status.success());
        let planted = bare.join(&above);
        std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
        std::fs::write(&planted, "junk\n").unwrap();
        let url = bare.to_str().unwrap().to_owned();
        let client = LockClient::new(&dir.path().join("scratch"), LockSettings::default()).unwrap();
        let take = || client.acquire(&url, &lane, "me", std::path::Path::new("/a"));
        let first = format!("{:?}", take());
        // As long ago as any lock lasts, whatever it was first seen as.
        let cap = chrono::Duration::from_std(client.longest_ttl() + MAX_CLOCK_SKEW).unwrap();
        let long_ago = crate::clock::now() - cap - chrono::Duration::seconds(1);
        client
            .sightings
            .expiry
            .seen_since(git2::Oid::ZERO_SHA1, long_ago);
        let outcome = take();
        let Ok(Acquire::Acquired(held)) = outcome else {
            panic!(
                "a broken ref at {above} still keeps the lane past the cap: first {first}; then {outcome:?}"
            );
        };
        client.release(&held).unwrap();
        let kept = std::fs::read_dir(&bare)
            .unwrap()
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("berth-set-aside-")
            })
            .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(kept, ["junk\n"], "the broken ref was not kept aside");
    }
}

#[cfg(test)]
mod review8 {
    use std::process::Command;

    use crate::lane_lock::{Acquire, Lane, LockClient, LockSettings, lock_ref_name};
    use crate::ownership::MAX_CLOCK_SKEW;

    /// A symlink that is no ref (dangling, or to a directory: git reads neither as a ref)
    /// at the lane's identity directory, above the lock ref, is the broken ref above of
    /// 12a3d01 in another node: git cannot make room for the lock ref, and the walk of
    /// 9e29144 refuses every write through it before `broken_above` is reached. Past the
    /// cap any lock lasts (and any TTL), every try still fails: the lane (every lane of the
    /// repository) wedged for good, nobody holding it.
    #[test]
    fn a_symlink_above_the_lock_ref_wedges_the_lane_past_the_cap() {
        let lane = Lane {
            repo_identity: "github.com/acme/widget".into(),
            base_branch: "main".into(),
        };
        let lock_ref = lock_ref_name(&lane);
        let above = lock_ref.rsplit_once('/').unwrap().0.to_owned();
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("locks.git");
        let out = Command::new("git")
            .args(["init", "--bare", "-q"])
            .arg(&bare)
            .output()
            .unwrap();
        assert!(out.status.success());
        let planted = bare.join(&above);
        std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &planted).unwrap();
        let url = bare.to_str().unwrap().to_owned();
        let client = LockClient::new(&dir.path().join("scratch"), LockSettings::default()).unwrap();
        let take = || client.acquire(&url, &lane, "me", std::path::Path::new("/a"));
        let mut outcomes = vec![format!("{:?}", take())];
        // As long ago as any lock lasts, whatever it was first seen as.
        let cap = chrono::Duration::from_std(client.longest_ttl() + MAX_CLOCK_SKEW).unwrap();
        let long_ago = crate::clock::now() - cap - chrono::Duration::seconds(1);
        client
            .sightings
            .expiry
            .seen_since(git2::Oid::ZERO_SHA1, long_ago);
        for _ in 0..3 {
            let outcome = take();
            if let Ok(Acquire::Acquired(held)) = outcome {
                client.release(&held).unwrap();
                return;
            }
            outcomes.push(format!("{outcome:?}"));
        }
        panic!(
            "a dangling symlink at {above} keeps every acquire from taking the lane past the cap, nobody holding it: {outcomes:#?}"
        );
    }
}
