//! Refs standing where git needs room for a lane's lock ref.
//!
//! git keeps `refs/a/b` as a file, so neither `refs/a/b/x` (below) nor `refs/a` (above)
//! can exist beside it: while one does, every create of the lock ref fails on git's
//! directory/file conflict, and alone that is a bare error on every try, naming no holder,
//! ending with nothing. gstack's and berth's lock refs never collide so (`safe_key` folds
//! `/`, so each is `<prefix><identity>/<base>`), so such a ref was written by something
//! else: a lock written by hand or another tool, or no lock at all. Each is judged as a
//! lock found at the lane's own ref would be, with one difference:
//!
//! - a lock that is live and whose holder is not known to be gone holds the lane
//!   ([`Acquire::HeldElsewhere`] naming that ref): never removed, retried like any held lane;
//! - an expired lock (its `expiresAt` capped as any lock's, [`expiry_cap`]), or one whose
//!   holder is gone, is removed;
//! - a commit that is no lock at all holds the lane ([`Acquire::Unreadable`], naming it)
//!   until as long after berth first saw it as any lock could last, then is removed.
//!
//! A removal is a compare-and-swap like every lock move (deleted only while the ref still
//! holds the commit judged) and is logged with why. Refs outside
//! `refs/gstack/release-locks/` (a ref `refs/gstack` would block every lane) are never
//! removed: they hold the lane, named, until an operator removes them.

use super::standing::Standing;
use super::transport::advertised_where;
use super::*;

/// The most refs in the way of a lock ref judged by one try to take the lane; the rest
/// are judged on later tries, once those are gone.
pub const MAX_JUDGED: usize = 16;

/// What stood in the way of a lock ref's create.
pub(super) enum InTheWay {
    /// Nothing: the create failed for another reason.
    Nothing,
    /// Every ref judged was removed, or had moved or gone: the create is worth another try.
    Cleared,
    /// A ref that holds the lane (the first found, when several do).
    Holds(Box<Acquire>),
}

/// Whether `other` and `lock_ref` cannot both exist: one names a directory of the other.
fn collides(lock_ref: &str, other: &str) -> bool {
    let below = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'));
    below(other, lock_ref) || below(lock_ref, other)
}

impl LockClient {
    /// Judges the refs on the origin that stand in the way of `target`'s ref, removing
    /// those nobody holds ([module docs](self)).
    pub(super) fn clear_the_way(
        &self,
        scratch: &Scratch,
        target: &Target<'_>,
    ) -> Result<InTheWay, LockError> {
        let collide = |name: &str| collides(target.ref_name, name);
        let found = advertised_where(&scratch.repo, target.url, &collide, target.deadline)
            .map_err(|e| target.remote_error("read", e))?;
        if found.is_empty() {
            return Ok(InTheWay::Nothing);
        }
        let mut holds = None;
        for (name, _) in found.iter().take(MAX_JUDGED) {
            let other = Target {
                url: target.url,
                ref_name: name,
                deadline: target.deadline,
            };
            let RemoteLock::Present { sha, read } = read_remote_lock(scratch, &other)? else {
                continue;
            };
            match self.judge_in_the_way(target.ref_name, name, sha, read) {
                Ok(why) => self.remove_in_the_way(scratch, &other, sha, target.ref_name, &why)?,
                Err(held) => holds = holds.or(Some(held)),
            }
        }
        Ok(holds.map_or(InTheWay::Cleared, InTheWay::Holds))
    }

    /// Why the commit `sha` at `name` may be removed, or how it holds the lane.
    fn judge_in_the_way(
        &self,
        lock_ref: &str,
        name: &str,
        sha: Oid,
        read: Result<ReadLock, PayloadError>,
    ) -> Result<String, Box<Acquire>> {
        let in_the_way = format!(
            "`{name}` ({sha}) stands where git needs room for the lane's lock ref `{lock_ref}`"
        );
        if !name.starts_with(LOCK_REF_PREFIX) {
            return Err(Box::new(Acquire::Unreadable {
                sha: sha.to_string(),
                reason: format!(
                    "{in_the_way}; it is outside {LOCK_REF_PREFIX}, so berth never removes it: check it, then `git update-ref -d {name} {sha}` in the origin"
                ),
            }));
        }
        let now = clock::now();
        match read {
            Ok(lock) => match self.standing(lock, sha, name) {
                Standing::Live(lock) => Err(Box::new(Acquire::HeldElsewhere {
                    holder: lock.payload,
                    sha: sha.to_string(),
                    ref_name: name.to_owned(),
                })),
                Standing::Expired(lock) => Ok(format!(
                    "{in_the_way}: a lock that expired at {}",
                    lock.payload.expires_at
                )),
                Standing::HolderGone(_, why) => {
                    Ok(format!("{in_the_way}: a lock whose holder is gone: {why}"))
                }
            },
            Err(reason) => {
                let until =
                    expiry_cap::unreadable_expiry(&self.sightings.expiry, &sha.to_string(), now);
                if now < until {
                    return Err(Box::new(Acquire::Unreadable {
                        sha: sha.to_string(),
                        reason: format!(
                            "{in_the_way} and is no lane lock ({reason}); berth removes it at {} if it still holds that commit",
                            clock::iso(until)
                        ),
                    }));
                }
                Ok(format!(
                    "{in_the_way} and is no lane lock ({reason}); first seen as long ago as any lock lasts"
                ))
            }
        }
    }

    /// Deletes `other`'s ref only while it still holds `sha`; one that moved meanwhile is
    /// judged again on the next try.
    fn remove_in_the_way(
        &self,
        scratch: &Scratch,
        other: &Target<'_>,
        sha: Oid,
        lock_ref: &str,
        why: &str,
    ) -> Result<(), LockError> {
        let outcome = self
            .swap(scratch, other, LockWrite::Clear, Expect::At(sha), None)
            .map_err(|e| other.remote_error("removal", e))?;
        match outcome {
            PushOutcome::Applied => tracing::warn!(
                removed = other.ref_name,
                %sha,
                lock_ref,
                "removed a ref in the way of a lane lock: {why}"
            ),
            PushOutcome::Refused { advertised } => tracing::info!(
                ref_name = other.ref_name,
                %sha,
                %advertised,
                "a ref in the way of a lane lock moved before berth removed it"
            ),
            PushOutcome::Rejected { status } => tracing::info!(
                ref_name = other.ref_name,
                %sha,
                "the removal of a ref in the way of a lane lock was refused: {status}"
            ),
            PushOutcome::Redirected { reason } => {
                return Err(other.redirected("removal", reason));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::collides;
    use crate::git_daemon::GitDaemon;
    use crate::lane_lock::{Acquire, Lane, LockClient, LockSettings, lock_ref_name};
    use crate::ownership::MAX_CLOCK_SKEW;

    #[test]
    fn only_a_directory_of_the_other_collides() {
        let lock = "refs/gstack/release-locks/acme/main";
        assert!(collides(lock, "refs/gstack/release-locks/acme/main/x"));
        assert!(collides(lock, "refs/gstack/release-locks/acme"));
        assert!(collides(lock, "refs/gstack"));
        assert!(!collides(lock, lock));
        assert!(!collides(lock, "refs/gstack/release-locks/acme/main-2"));
        assert!(!collides(lock, "refs/gstack/release-locks/acme/mai"));
        assert!(!collides(lock, "refs/gstack/release-locks/acm"));
    }

    fn git(bare: &std::path::Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(bare)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A commit that is no lock, planted at `ref_name` in the bare repository; `message`
    /// makes it one of its own (sightings are remembered by commit).
    fn plant(bare: &std::path::Path, ref_name: &str, message: &str) -> git2::Oid {
        let tree = git(bare, &["hash-object", "-t", "tree", "-w", "/dev/null"]);
        let commit = git(bare, &["commit-tree", &tree, "-m", message]);
        git(bare, &["update-ref", ref_name, &commit]);
        git2::Oid::from_str(&commit).unwrap()
    }

    fn present(bare: &std::path::Path, ref_name: &str) -> bool {
        Command::new("git")
            .arg("--git-dir")
            .arg(bare)
            .args(["rev-parse", "--verify", "-q", ref_name])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// A commit in the way that is no lock holds the lane until as long after its first
    /// sighting as any lock could last (the longest TTL plus the clock skew bound), and is
    /// then removed; one outside `refs/gstack/release-locks/` is never removed.
    #[test]
    fn a_commit_in_the_way_that_is_no_lock_is_removed_only_past_the_cap() {
        let lane = Lane {
            repo_identity: "github.com/acme/widget".into(),
            base_branch: "main".into(),
        };
        let lock_ref = lock_ref_name(&lane);
        let above = lock_ref.rsplit_once('/').unwrap().0.to_owned();
        for (network, planted) in [
            (false, format!("{lock_ref}/x")),
            (true, format!("{lock_ref}/x")),
            (false, above.clone()),
            (true, above),
            (false, "refs/gstack".to_owned()),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let bare = dir.path().join("locks.git");
            git(&bare, &["init", "--bare", "-q"]);
            let daemon = network.then(|| GitDaemon::start(dir.path()).unwrap());
            let url = match &daemon {
                Some(daemon) => daemon.url_for("locks.git"),
                None => bare.to_str().unwrap().to_owned(),
            };
            let sha = plant(&bare, &planted, &format!("{planted} {network}"));
            let client =
                LockClient::new(&dir.path().join("scratch"), LockSettings::default()).unwrap();
            let take = || client.acquire(&url, &lane, "me", std::path::Path::new("/a"));
            let outcome = take();
            assert!(
                matches!(&outcome, Ok(Acquire::Unreadable { reason, .. }) if reason.contains(&planted)),
                "{planted} over {url}: {outcome:?}"
            );
            // Just short of the cap it still holds the lane.
            let cap =
                chrono::Duration::from_std(crate::lane_lock::LONGEST_TTL + MAX_CLOCK_SKEW).unwrap();
            let now = crate::clock::now();
            client
                .sightings
                .expiry
                .seen_since(sha, now - cap + chrono::Duration::minutes(1));
            assert!(
                matches!(take(), Ok(Acquire::Unreadable { .. })),
                "{planted}"
            );
            assert!(
                present(&bare, &planted),
                "{planted} was removed before the cap"
            );
            client
                .sightings
                .expiry
                .seen_since(sha, now - cap - chrono::Duration::seconds(1));
            let outcome = take();
            if planted == "refs/gstack" {
                assert!(
                    matches!(&outcome, Ok(Acquire::Unreadable { reason, .. }) if reason.contains("never removes")),
                    "{outcome:?}"
                );
                assert!(
                    present(&bare, &planted),
                    "a ref outside the lock namespace was removed"
                );
                continue;
            }
            let Ok(Acquire::Acquired(held)) = outcome else {
                panic!("{planted} over {url}: {outcome:?}");
            };
            assert!(!present(&bare, &planted), "{planted} over {url}");
            assert!(present(&bare, &lock_ref));
            client.release(&held).unwrap();
        }
    }
}
