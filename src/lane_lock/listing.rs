//! The locks under a remote's lock namespace, and what each means now.

use super::payload::PayloadProblem;
use super::*;

/// One lock found on the remote by [`LockClient::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockListing {
    pub ref_name: String,
    pub sha: String,
    pub state: ListedLock,
}

/// What a listed lock means right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedLock {
    Live(LockPayload),
    /// Not expired, but held by a berth on this host whose process is gone: the next
    /// acquire takes it over at once.
    HolderGone {
        payload: LockPayload,
        reason: String,
    },
    Expired(LockPayload),
    Unreadable {
        reason: String,
    },
}

impl LockClient {
    /// Every lock under `refs/gstack/release-locks/` on `origin_url`, sorted by ref, with its
    /// payload (or why it cannot be read) and whether it is live now.
    pub fn list(&self, origin_url: &str) -> Result<Vec<LockListing>, LockError> {
        let target = Target {
            url: origin_url,
            ref_name: LOCK_REF_PREFIX,
            deadline: self.settings.remote_timeout,
        };
        let commits = self.lock_commits(&target)?;
        let now = clock::now();
        let mut listings = Vec::new();
        for (ref_name, sha, message) in commits {
            let read = read_lock(&sha.to_string(), message).map(|lock| {
                expiry_cap::capped(
                    lock,
                    sha,
                    &ref_name,
                    expiry_cap::Seen {
                        sightings: &self.sightings.expiry,
                        now,
                        look: expiry_cap::Look::List,
                    },
                )
            });
            let state = match read {
                Err(reason) => ListedLock::Unreadable {
                    reason: reason.to_string(),
                },
                Ok(lock) if lock.is_live_at(now) => match holder_gone(&lock) {
                    Some(reason) => ListedLock::HolderGone {
                        payload: lock.payload,
                        reason,
                    },
                    None => ListedLock::Live(lock.payload),
                },
                Ok(lock) => ListedLock::Expired(lock.payload),
            };
            listings.push(LockListing {
                ref_name,
                sha: sha.to_string(),
                state,
            });
        }
        listings.sort_by(|a, b| a.ref_name.cmp(&b.ref_name));
        Ok(listings)
    }

    /// Every ref under `refs/gstack/release-locks/` at `target`, with the commit it names
    /// and that commit's message (or why there is none).
    fn lock_commits(&self, target: &Target<'_>) -> Result<Vec<LockCommit>, LockError> {
        if let Some(Ok(origin)) = local_origin(target.url) {
            let at = origin.clone();
            let read = move || lock_commits_in_place(&at);
            let done = local_deadline::run(&origin, target.deadline, None, read)
                .map_err(git2::Error::from)
                .and_then(|read| read);
            return done.map_err(|e| target.remote_error("list", e));
        }
        // A repository of its own, never pooled: its `READ_REF/*` refs would stand in the
        // way of a later read into `READ_REF`.
        let scratch = Scratch::create(&self.scratch_dir).map_err(|source| LockError::Scratch {
            path: self.scratch_dir.clone(),
            source,
        })?;
        let refspec = format!("+{LOCK_REF_PREFIX}*:{READ_REF}/*");
        fetch(&scratch.repo, target.url, &refspec, target.deadline)
            .map_err(|e| target.remote_error("list", e))?;
        let references = scratch
            .repo
            .references_glob(&format!("{READ_REF}/*"))
            .map_err(|e| target.local_error(READ_FAILED, e))?;
        let mut found = Vec::new();
        for reference in references {
            let reference = reference.map_err(|e| target.local_error(READ_FAILED, e))?;
            let (Ok(local_name), Some(sha)) = (reference.name(), reference.target()) else {
                continue;
            };
            let suffix = local_name
                .trim_start_matches(READ_REF)
                .trim_start_matches('/');
            let ref_name = format!("{LOCK_REF_PREFIX}{suffix}");
            found.push((ref_name, sha, scratch.commit_message(sha)));
        }
        Ok(found)
    }
}

/// A lock ref, the commit it names, and that commit's message or why there is none.
type LockCommit = (String, Oid, Result<String, PayloadProblem>);

/// The lock refs of the local origin at `origin`, read where they are: a fetch would list
/// every ref of the origin (each ref's file and the object it names) to copy a few. Looked
/// at first, as for a listing ([`refs_look::open_own`]); a symbolic ref is read as the
/// ref it names, and one naming none fails the read, as it failed the listing (the lock
/// state is unknown, review 50).
fn lock_commits_in_place(origin: &std::path::Path) -> Result<Vec<LockCommit>, git2::Error> {
    let origin = refs_look::open_own(origin)?;
    let mut found = Vec::new();
    for reference in origin.references_glob(&format!("{LOCK_REF_PREFIX}*"))? {
        let reference = reference?;
        let Ok(name) = reference.name() else {
            continue;
        };
        let name = name.to_owned();
        if let Some(sha) = reference.resolve()?.target() {
            found.push((name, sha, transport::commit_message(&origin, sha)));
        }
    }
    Ok(found)
}
