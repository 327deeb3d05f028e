//! A broken ref (a file that is no ref) above a lane's lock ref in a local origin.
//!
//! A file at `refs/gstack/release-locks/<identity>` keeps git from making the directory
//! the lock ref needs ("non-directory in the way"), for every lane of the repository. A
//! valid ref there is listed and judged as a ref in the way ([`super::in_the_way`]); one
//! git cannot read as a ref is listed by no one, so it is judged here, like a commit that
//! is no lock: kept, and the lane held naming it ([`holds`]), until as long after its first
//! sighting as any lock could last ([`expiry_cap::unreadable_expiry`], its sighting kept
//! under the zero id); then moved whole, under the writers' lock and only while it is
//! still the file judged, out of `refs/` to `<git dir>/berth-set-aside-<dev>-<inode>`,
//! never deleted unread. Only files below [`LOCK_REF_PREFIX`] are looked at.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use git2::{Oid, Repository, RepositoryOpenFlags};
use nix::libc;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;

use super::expiry_cap::{self, ExpirySightings};
use super::leftover::FileId;
use super::{Acquire, LOCK_REF_PREFIX};
use crate::{atomic_file, clock};

/// How long the writers' lock is waited for before setting a broken ref aside; a busy one
/// leaves it for a later write.
const WRITERS_WAIT: Duration = Duration::from_millis(250);

/// A file that is no ref, above a lock ref.
struct Broken<'r> {
    /// Its ref name: a prefix of the lock ref's.
    name: &'r str,
    path: PathBuf,
    meta: std::fs::Metadata,
}

/// The file above `ref_name` (below [`LOCK_REF_PREFIX`]) that git cannot read as a ref,
/// if one stands there; a valid ref there is [`super::in_the_way`]'s to judge.
fn find<'r>(origin: &Repository, ref_name: &'r str) -> Option<Broken<'r>> {
    let slashes = ref_name.match_indices('/').map(|(at, _)| at);
    for above in slashes.filter(|&at| at > LOCK_REF_PREFIX.len()) {
        let name = &ref_name[..above];
        let path = origin.path().join(name);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if meta.is_dir() {
            continue;
        }
        if origin.refname_to_id(name).is_ok() {
            return None;
        }
        return Some(Broken { name, path, meta });
    }
    None
}

/// When a broken ref first seen `now` or before is set aside.
fn set_aside_at(expiry: &ExpirySightings, longest_ttl: Duration) -> DateTime<Utc> {
    expiry_cap::unreadable_expiry(expiry, Oid::ZERO_SHA1, longest_ttl, clock::now())
}

/// Sets aside a broken ref above `ref_name` in `origin` once it has been seen as long as
/// any lock lasts; before that, logs it and when it goes.
pub(super) fn clear(
    origin: &Repository,
    ref_name: &str,
    writers_lock: &Path,
    expiry: &ExpirySightings,
    longest_ttl: Duration,
) {
    let Some(broken) = find(origin, ref_name) else {
        return;
    };
    let until = set_aside_at(expiry, longest_ttl);
    if clock::now() < until {
        tracing::warn!(
            file = %broken.path.display(),
            lock_ref = ref_name,
            "a file that is no ref stands where git needs room for the lane's lock ref; berth moves it out of refs/ at {} if it is still there",
            clock::iso(until)
        );
        return;
    }
    let judged = FileId::of(&broken.meta);
    set_aside(origin, &broken.path, judged, writers_lock, ref_name);
}

/// How a broken ref above `ref_name` in the local origin at `origin` holds the lane: named,
/// with why and when berth sets it aside ([`clear`], at a later write). `None` when none
/// stands there, or when it is a symlink: the write's own error names that and its target
/// ([`super::lock_dir`]).
pub(super) fn holds(
    origin: &Path,
    ref_name: &str,
    expiry: &ExpirySightings,
    longest_ttl: Duration,
) -> Option<Acquire> {
    let origin = Repository::open_ext(origin, RepositoryOpenFlags::NO_SEARCH, [] as [&str; 0]);
    let origin = origin.ok()?;
    let broken = find(&origin, ref_name).filter(|broken| broken.meta.is_file())?;
    let until = set_aside_at(expiry, longest_ttl);
    Some(Acquire::Unreadable {
        sha: Oid::ZERO_SHA1.to_string(),
        reason: format!(
            "`{}` ({}) is a file that is no ref, standing where git needs room for the lane's lock ref `{ref_name}`; berth moves it out of refs/ at {} if it is still there",
            broken.name,
            broken.path.display(),
            clock::iso(until)
        ),
    })
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
    use crate::lane_lock::tests::{BareOrigin, widget_main};
    use crate::lane_lock::{Acquire, lock_ref_name};
    use crate::ownership::MAX_CLOCK_SKEW;

    /// An origin with a file that is no ref (a broken ref: garbage where git expects an
    /// id) at the lane's identity directory (`refs/gstack/release-locks/<identity>`,
    /// above the lock ref); that ref's name.
    fn broken_above() -> (BareOrigin, String) {
        let above = lock_ref_name(&widget_main())
            .rsplit_once('/')
            .unwrap()
            .0
            .to_owned();
        let origin = BareOrigin::new();
        let planted = origin.bare.join(&above);
        std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
        std::fs::write(&planted, "junk\n").unwrap();
        (origin, above)
    }

    /// Before its cap the broken ref holds the lane as any commit in the way that is no
    /// lock does: the answer names it, why it is in the way and when berth moves it, not
    /// git's bare error on every try.
    #[test]
    fn a_broken_ref_above_the_lock_ref_holds_the_lane_named_before_the_cap() {
        let (origin, above) = broken_above();
        let client = origin.client();
        for _ in 0..2 {
            let outcome = origin.take(&client, &widget_main());
            let Ok(Acquire::Unreadable { reason, .. }) = &outcome else {
                panic!("{outcome:?}");
            };
            assert!(reason.contains(&format!("`{above}`")), "{reason}");
            assert!(reason.contains("no ref"), "{reason}");
            assert!(reason.contains("moves it out of refs/ at "), "{reason}");
        }
        assert_eq!(
            std::fs::read_to_string(origin.bare.join(&above)).unwrap(),
            "junk\n"
        );
    }

    /// Judged like a commit that is no lock, it would hold the lane, named, until as long
    /// after its first sighting as any lock lasts, and then be removed; instead every try
    /// failed, past that cap too: the lane (every lane of the repository) wedged for good.
    #[test]
    fn a_broken_ref_above_the_lock_ref_is_set_aside_past_the_cap() {
        let (origin, above) = broken_above();
        let client = origin.client();
        let first = format!("{:?}", origin.take(&client, &widget_main()));
        // As long ago as any lock lasts, whatever it was first seen as.
        let cap = chrono::Duration::from_std(client.longest_ttl() + MAX_CLOCK_SKEW).unwrap();
        let long_ago = crate::clock::now() - cap - chrono::Duration::seconds(1);
        client
            .sightings
            .expiry
            .seen_since(git2::Oid::ZERO_SHA1, long_ago);
        let outcome = origin.take(&client, &widget_main());
        let Ok(Acquire::Acquired(held)) = outcome else {
            panic!(
                "a broken ref at {above} still keeps the lane past the cap: first {first}; then {outcome:?}"
            );
        };
        client.release(&held).unwrap();
        let kept = std::fs::read_dir(&origin.bare)
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
