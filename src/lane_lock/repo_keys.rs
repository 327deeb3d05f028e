//! Which repository each local origin reaches ([`crate::identity::alias_key`]: the device
//! and inode of its directory), learnt off the caller's thread and kept in one
//! process-wide table.
//!
//! Learning it stats the origin's directory, which a hung file system holds for good; the
//! daemon's async loop and its tick need the key of every lane they weigh. So they only
//! read this table ([`key_of`]), which never looks at an origin: a key not yet learnt is
//! learnt on a thread of its own under the local-access deadline
//! ([`super::local_deadline`], the lock's `remote_timeout`), and until it is, the lane is
//! not known and does not start (fail closed: starting it under its spelling would let two
//! aliases of one repository land at once). A landing looks again before it takes the
//! lock ([`relearn`]), where it may wait its deadline; a repository that changed under a
//! path is learnt there, and that landing does not go on under the old key.
//!
//! An identity that is not a local path (a GitHub or other network identity) needs no
//! look and is answered at once. The table holds one entry per local identity the process
//! has weighed (the queue's repositories; see docs/limits.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::identity::{alias_key, local_identity_path};

use super::local_deadline::{self, Overdue, local_origin_deadline};

/// Why a local identity's repository is not known yet.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unlearnt {
    #[error(
        "berth is still learning which repository the local origin {origin} is (it looks off the daemon's loop, within the remote timeout); its lanes wait until it knows"
    )]
    Learning { origin: String },
    /// The last look failed: the local-access deadline's own words.
    #[error("{0}")]
    Unanswered(String),
}

#[derive(Default)]
struct Entry {
    /// The key last learnt, kept while a later look fails (the landing's own look
    /// decides whether that lane may go on).
    key: Option<String>,
    /// Set while a look runs: until when a read waits for it. One deadline per look, so
    /// a tick that reads the key once per record of the origin waits once in all.
    learning: Option<Instant>,
    failed: Option<String>,
}

static TABLE: Mutex<Option<HashMap<String, Entry>>> = Mutex::new(None);
/// Told each time a learning ends.
static LEARNT: Condvar = Condvar::new();

/// How long [`key_of`] waits for a local origin's first look (a healthy one answers in
/// microseconds; a `--once` run weighs each lane once): past it, or the local-access
/// deadline if shorter, the lane waits for a later tick and the look goes on off the
/// caller's thread. Never waited again for an origin whose look failed.
pub const FIRST_LOOK_WAIT: Duration = Duration::from_secs(5);

fn table() -> MutexGuard<'static, Option<HashMap<String, Entry>>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The key of `identity`'s repository as this process knows it, with no look at the
/// origin on the caller's thread. When a local one is not known, starts learning it (one
/// look at a time) and, unless its last look failed, waits for that look until at most
/// [`FIRST_LOOK_WAIT`] after it started, however many reads ask meanwhile (blocking: the
/// tick's selection, on a blocking thread the daemon's loop awaits); then says why its
/// lanes wait.
pub fn key_of(identity: &str) -> Result<String, Unlearnt> {
    let Some(path) = local_identity_path(identity) else {
        return Ok(alias_key(identity));
    };
    let mut guard = table();
    loop {
        let entry = guard
            .get_or_insert_with(HashMap::new)
            .entry(identity.to_owned())
            .or_default();
        if let Some(key) = &entry.key {
            return Ok(key.clone());
        }
        let failed = entry.failed.clone().map(Unlearnt::Unanswered);
        let Some(give_up) = entry.learning else {
            entry.learning = Some(Instant::now() + FIRST_LOOK_WAIT.min(local_origin_deadline()));
            drop(guard);
            learn_in_background(identity, path.clone());
            if let Some(why) = failed {
                return Err(why);
            }
            guard = table();
            continue;
        };
        let left = give_up.saturating_duration_since(Instant::now());
        if let Some(why) = failed {
            return Err(why);
        }
        if left.is_zero() {
            return Err(Unlearnt::Learning {
                origin: identity.to_owned(),
            });
        }
        guard = LEARNT
            .wait_timeout(guard, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// How a landing's own look at its repository went.
#[derive(Debug, PartialEq, Eq)]
pub enum Relearnt {
    /// The repository is the one the lane was keyed by.
    Same,
    /// The path now reaches another repository than the one the lane was keyed by
    /// (`was`): the table holds the new key from now on.
    Changed { was: String, now: String },
}

/// Looks at `identity`'s repository again, waiting at most the local-access deadline
/// (blocking: a landing's own thread), records what it finds, and compares it with
/// `keyed_by`, the repository key the caller's lane started under (not the table's, which
/// another landing's look may have moved). A network identity is always
/// [`Relearnt::Same`].
pub(crate) fn relearn(identity: &str, keyed_by: &str) -> Result<Relearnt, Overdue> {
    let Some(path) = local_identity_path(identity) else {
        return Ok(Relearnt::Same);
    };
    let now = look(identity, &path)?;
    if now == keyed_by {
        Ok(Relearnt::Same)
    } else {
        Ok(Relearnt::Changed {
            was: keyed_by.to_owned(),
            now,
        })
    }
}

/// Looks at the local `identity`'s repository (at `path`), waiting at most the
/// local-access deadline, and records its key (or why the look failed) in the table.
fn look(identity: &str, path: &Path) -> Result<String, Overdue> {
    let owned = identity.to_owned();
    let looked = local_deadline::run(path, local_origin_deadline(), None, move || {
        alias_key(&owned)
    });
    let mut guard = table();
    let entry = guard
        .get_or_insert_with(HashMap::new)
        .entry(identity.to_owned())
        .or_default();
    match &looked {
        Ok(now) => {
            entry.failed = None;
            entry.key = Some(now.clone());
        }
        Err(overdue) => entry.failed = Some(overdue.to_string()),
    }
    looked
}

/// Learns `identity`'s key on a thread of its own; the table says it is learning until it
/// is done (a thread that cannot start leaves the reason there, and the next read retries).
fn learn_in_background(identity: &str, path: PathBuf) {
    let owned = identity.to_owned();
    let spawned = std::thread::Builder::new()
        .name("learn-origin".into())
        .spawn(move || {
            let done = LookDone(owned.clone());
            let had_failed = table()
                .as_ref()
                .and_then(|t| t.get(&owned))
                .is_some_and(|entry| entry.failed.is_some());
            let looked = look(&owned, &path);
            drop(done);
            // Once per stretch of failures: a stuck origin is read again every tick.
            match looked {
                Err(overdue) if !had_failed => {
                    tracing::warn!(origin = %owned, "{overdue}; its lanes wait")
                }
                _ => {}
            }
        });
    if let Err(e) = spawned {
        let mut guard = table();
        if let Some(entry) = guard.as_mut().and_then(|t| t.get_mut(identity)) {
            entry.failed = Some(format!(
                "cannot start a thread to look at the local origin {identity}: {e}"
            ));
        }
        drop(guard);
        drop(LookDone(identity.to_owned()));
    }
}

/// Ends an identity's look in the table when dropped, so a look that panicked is retried
/// by the next read rather than leaving the identity learning for good.
struct LookDone(String);

impl Drop for LookDone {
    fn drop(&mut self) {
        let mut guard = table();
        if let Some(entry) = guard.as_mut().and_then(|t| t.get_mut(&self.0)) {
            entry.learning = None;
        }
        LEARNT.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `identity`'s key until it is learnt (a minute at most).
    fn until_learnt(identity: &str) -> String {
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(key) = key_of(identity) {
                return key;
            }
            assert!(Instant::now() < give_up, "{identity} was never learnt");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A local identity whose path, the symlink `origin.git`, reaches the repository
    /// `first` until [`TurningLink::turn`] points it at the repository `second`.
    struct TurningLink {
        dir: tempfile::TempDir,
        link: PathBuf,
    }

    impl TurningLink {
        fn new() -> TurningLink {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("first")).unwrap();
            std::fs::create_dir(dir.path().join("second")).unwrap();
            let link = dir.path().join("origin.git");
            std::os::unix::fs::symlink(dir.path().join("first"), &link).unwrap();
            TurningLink { dir, link }
        }

        fn id(&self) -> &str {
            self.link.to_str().unwrap()
        }

        /// Makes the path reach the repository `second` instead.
        fn turn(&self) {
            std::fs::remove_file(&self.link).unwrap();
            std::os::unix::fs::symlink(self.dir.path().join("second"), &self.link).unwrap();
        }

        /// The key of the repository `second`.
        fn second_key(&self) -> String {
            alias_key(self.dir.path().join("second").to_str().unwrap())
        }
    }

    /// A local identity is learnt (off the reader's thread: the hung-mount test in
    /// `local_deadline` shows the reader is not held) as the repository its path reaches,
    /// one key for a symlink to it too; a network identity is answered at once.
    #[test]
    fn a_local_key_is_learnt_off_the_readers_thread_and_aliases_meet() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo.git");
        std::fs::create_dir(&repo).unwrap();
        let link = dir.path().join("link.git");
        std::os::unix::fs::symlink(&repo, &link).unwrap();
        let (repo_id, link_id) = (repo.to_str().unwrap(), link.to_str().unwrap());
        let key = until_learnt(repo_id);
        assert_eq!(key, alias_key(repo_id));
        assert!(key.starts_with("local:"), "{key}");
        assert_eq!(until_learnt(link_id), key);
        assert_eq!(
            key_of("github.com/Acme/Widget").unwrap(),
            "github.com/acme/widget"
        );
    }

    /// A path that comes to reach another repository keeps its old key until a landing's
    /// own look learns the new one, and from then on reads give the new key.
    #[test]
    fn a_landings_look_learns_a_changed_repository() {
        let origin = TurningLink::new();
        let id = origin.id();
        let was = until_learnt(id);
        assert_eq!(relearn(id, &was).unwrap(), Relearnt::Same);
        origin.turn();
        assert_eq!(key_of(id).unwrap(), was);
        let now = origin.second_key();
        assert_eq!(
            relearn(id, &was).unwrap(),
            Relearnt::Changed {
                was,
                now: now.clone()
            }
        );
        assert_eq!(key_of(id).unwrap(), now);
    }

    /// A look whose thread panics ends all the same: the next read looks again and learns
    /// the key, instead of every read being told for good that berth is still learning it.
    #[test]
    fn a_look_that_panicked_is_looked_at_again() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo.git");
        std::fs::create_dir(&repo).unwrap();
        let id = repo.to_str().unwrap().to_owned();
        table()
            .get_or_insert_with(HashMap::new)
            .entry(id.clone())
            .or_default()
            .learning = Some(Instant::now() + Duration::from_secs(3600));
        let owned = id.clone();
        let looked = std::thread::spawn(move || {
            let _done = LookDone(owned);
            panic!("a look that panics");
        })
        .join();
        assert!(looked.is_err());
        assert_eq!(until_learnt(&id), alias_key(&id));
    }

    /// Two landings of one local origin (two base branches, or one tick's lanes) both
    /// started under the key the table held before the path came to reach another
    /// repository. The first landing's look records the new key; the second landing's
    /// look must still say its lane was keyed by another repository (`Relearnt::Same` is
    /// "the repository is the one the lane was keyed by"), or it goes on under the old key
    /// beside a lane of the new repository that the tick saw free.
    #[test]
    fn every_landing_started_under_the_old_key_learns_that_its_repository_changed() {
        let origin = TurningLink::new();
        let id = origin.id();
        let started_under = until_learnt(id);
        origin.turn();
        // Both landings were started by a tick that read `started_under`.
        assert_eq!(key_of(id).unwrap(), started_under);
        assert!(matches!(
            relearn(id, &started_under),
            Ok(Relearnt::Changed { .. })
        ));
        let second_landing = relearn(id, &started_under).unwrap();
        assert!(
            matches!(second_landing, Relearnt::Changed { .. }),
            "a landing started under {started_under} (the old repository) was told {second_landing:?}: it goes on though its path now reaches {}",
            origin.second_key()
        );
    }

    /// The daemon's bookkeeping of a started lane (the release it registers when the
    /// landing ends, the wait of the lane's next landing for it, the lane's retry backoff)
    /// goes by the [`LaneKey`](crate::lane_lock::LaneKey) the tick weighed the lane under,
    /// which its landing keeps. Once another landing of the same path (another base
    /// branch) learnt that the path now reaches another repository, the key the lane
    /// started under stays the one its landing is booked and judged by: booked under the
    /// new one, the release of the lock this lane took in the old repository would be
    /// registered there, and the old repository's next landing (an alias spelling of it)
    /// would not wait for it.
    #[test]
    fn a_started_lanes_key_stays_the_key_it_started_under() {
        let origin = TurningLink::new();
        let id = origin.id();
        let started_under = until_learnt(id);
        let lane = crate::lane_lock::Lane {
            repo_identity: id.to_owned(),
            base_branch: "main".into(),
        };
        let held = crate::lane_lock::lane_key(&lane).unwrap();
        assert_eq!(held.repo, started_under);
        origin.turn();
        // Another lane of the same path (another base branch) looks before its lock.
        assert!(matches!(
            relearn(id, &started_under),
            Ok(Relearnt::Changed { .. })
        ));
        let now = crate::lane_lock::lane_key(&lane).unwrap();
        assert_eq!(now.repo, origin.second_key());
        assert_ne!(
            now.lane, held.lane,
            "the new repository's lane is a lane of its own, free beside the one still held"
        );
        assert_eq!(
            relearn(id, &held.repo).unwrap(),
            Relearnt::Changed {
                was: started_under,
                now: now.repo,
            },
            "the landing that started under the first repository is judged by the second"
        );
    }
}
