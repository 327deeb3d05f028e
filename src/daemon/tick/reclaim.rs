//! Step 2 (DESIGN §3): an in-flight record that no live process owns goes back to `queued`.

use crate::record::Status;
use crate::store::{Expect, Move, StoredRecord};

use crate::daemon::{Shared, stranded};

/// Step 2: an in-flight record that no live process owns goes back to `queued`, unless it
/// changed since it was judged (its owner touched it: not stranded after all).
pub fn reclaim(shared: &Shared, stored: &StoredRecord, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(reason) =
        stranded::stranded_reason(&shared.crew, shared.config().lock_ttl(), stored, now)
    else {
        return false;
    };
    if let Err(e) = stranded::end_strays(stored) {
        tracing::error!(record = %stored.id, "not reclaimed: {e}");
        return false;
    }
    let from = stored.record.status;
    let result = shared.crew.records.transition(
        Move::new(&stored.id, Expect::Claim(&stored.record), Status::Queued)
            .waiting(super::PRODUCER_LOCK_WAIT),
        |r| {
            if from == Status::DriftRepairing {
                r.retries = Some(0);
            }
            r.claimed_by = None;
            r.last_error = Some(format!("reclaimed: {reason}"));
        },
    );
    match result {
        Ok(_) => {
            tracing::warn!(record = %stored.id, "reclaimed stranded record: {reason}");
            true
        }
        Err(e) => {
            tracing::warn!(record = %stored.id, "reclaim skipped: {e}");
            false
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::daemon::unsaved;
    use crate::daemon::verdict::Verdict;
    use crate::record::sample;
    use crate::store::{CLAIM_TOKEN_FIELD, QueueStore, StoreError};

    /// A daemon stopped with a `landed` verdict kept; the next daemon on its berth dir takes
    /// the listed verdict over (docs/lane-locks.md, "A kept verdict when its daemon stops":
    /// "it does not reclaim a record whose verdict it holds, and keeps one still refused as
    /// its own"). Its first tick's retry meets a producer's lock on the record (kept again),
    /// the producer lets go, and the same tick's reclaim step judges the record: claimed by
    /// the stopped daemon, not by this one, so the verdict this daemon holds is not looked
    /// at, the stopped owner is gone, and the record is queued. The next retry then meets
    /// `Reclaimed` and drops the verdict: the merged PR is landed again.
    #[test]
    fn a_record_whose_taken_over_verdict_is_kept_is_not_reclaimed_by_the_daemon_keeping_it() {
        let s = stopped_with_a_kept_verdict();
        let next = Shared::on_queue(&s.queue, s.dir.path(), "berth");
        assert!(next.holds(&s.id), "the listed verdict was not taken over");
        // The first tick's retry, a producer holding the record's lock.
        let lock = std::fs::File::open(s.queue.join(format!(".{}.lock", s.id))).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        let locked =
            unsafe { nix::libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), nix::libc::LOCK_EX) };
        assert_eq!(locked, 0);
        unsaved::retry(&next.crew.unsaved, &next.crew.records);
        drop(lock);
        assert!(next.holds(&s.id), "the verdict was dropped at a busy lock");
        // The same tick's reclaim step, then the next tick's retry.
        let reclaimed = reclaim(&next, &s.store.load(&s.id).unwrap(), crate::clock::now());
        unsaved::retry(&next.crew.unsaved, &next.crew.records);
        s.assert_landed(reclaimed, next.holds(&s.id));
    }

    /// The same stop, and another daemon on the queue (its own berth dir, this host) ticks
    /// before the stopped daemon starts again: the owner is gone, so it reclaims the record
    /// at once, long before the TTL docs/lane-locks.md ("A kept verdict and another daemon")
    /// counts on. The next start on the stopped daemon's berth dir then finds the claim
    /// gone and drops the verdict it took over: the merged PR is landed again.
    #[test]
    fn another_daemon_does_not_reclaim_a_record_whose_verdict_waits_for_the_next_start() {
        let s = stopped_with_a_kept_verdict();
        let other = Shared::on_queue(&s.queue, s.dir.path(), "other");
        let reclaimed = reclaim(&other, &s.store.load(&s.id).unwrap(), crate::clock::now());
        let next = Shared::on_queue(&s.queue, s.dir.path(), "berth");
        unsaved::retry(&next.crew.unsaved, &next.crew.records);
        s.assert_landed(reclaimed, next.holds(&s.id));
    }

    /// The taken-over verdict of [`a_record_whose_taken_over_verdict_is_kept_is_not_reclaimed_by_the_daemon_keeping_it`]
    /// also keeps the queue detectors from calling its record stranded: STRANDED_RECORD
    /// ("no live process owns it") would be raised for a record this live daemon holds.
    /// The list file is gone (removed by hand, or its write failed): only what this daemon
    /// holds in memory says the record is its own.
    #[test]
    fn no_stranded_record_fault_for_a_record_whose_taken_over_verdict_is_kept() {
        let s = stopped_with_a_kept_verdict();
        let next = Shared::on_queue(&s.queue, s.dir.path(), "berth");
        assert!(next.holds(&s.id), "the listed verdict was not taken over");
        std::fs::remove_file(s.dir.path().join("berth").join(unsaved::UNSAVED_FILE)).unwrap();
        // The tick's sweep, so the detectors see the record.
        next.crew
            .records
            .view()
            .refresh(&s.store, &crate::queue_view::Refresh::Sweep);
        crate::daemon::forge_round::detect_queue_faults(&next, true, &[]);
        let pending = next
            .config()
            .faults_dir_or_default()
            .join("pending-investigations");
        // The events filed (none: no dir), each naming its category in its message.
        let stranded = std::fs::read_dir(&pending)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("[STRANDED_RECORD]"))
            })
            .count();
        assert_eq!(
            stranded, 0,
            "STRANDED_RECORD raised for a record whose verdict this daemon keeps"
        );
    }

    /// A record `landing` on queue `queue`, claimed (token "1") by a daemon of this host
    /// that stopped, its `landed` verdict refused and listed in `dir/berth`.
    pub(crate) struct Stopped {
        pub(crate) dir: tempfile::TempDir,
        pub(crate) queue: std::path::PathBuf,
        pub(crate) store: QueueStore,
        pub(crate) id: String,
    }

    impl Stopped {
        fn assert_landed(&self, reclaimed: bool, held: bool) {
            let after = self.store.load(&self.id).unwrap().record;
            assert!(
                !reclaimed && after.status == Status::Landed,
                "the record whose landed verdict waits was reclaimed (reclaimed: {reclaimed}); the verdict is dropped (still held: {held}), the record is {}: {:?}",
                after.status,
                after.last_error
            );
        }
    }

    pub(crate) fn stopped_with_a_kept_verdict() -> Stopped {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("queue");
        std::fs::create_dir_all(&queue).unwrap();
        let store = QueueStore::new(&queue);
        let id = store.insert(&sample::queued(5)).unwrap();
        // The stopped daemon's stamp: this machine, a pid that runs no more, and the
        // instance lock it held on its berth dir, `dir/berth`, as a daemon's stamp names it.
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let lock = crate::instance::lock_path(&dir.path().join("berth"));
        let stopped = format!(
            "{}:{}:1:{}",
            crate::ownership::machine(),
            exited.id(),
            lock.display()
        );
        exited.wait().unwrap();
        for to in [Status::Claiming, Status::Landing] {
            store
                .transition(Move::new(&id, Expect::Any, to), |r| {
                    r.claimed_by = Some(stopped.clone());
                    r.extra
                        .insert(CLAIM_TOKEN_FIELD.to_owned(), &serde_json::json!("1"));
                })
                .unwrap();
        }
        // What the stopped daemon left listed on its berth dir.
        let before = Shared::on_queue(&queue, dir.path(), "berth");
        let full = StoreError::Io {
            action: "write",
            path: queue.join(format!("{id}.json")),
            source: std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
        };
        let landed = Verdict::Landed {
            checked_at: crate::clock::now_iso(),
        };
        unsaved::keep(&before.crew.unsaved, &stopped, &id, "1", landed, &full);
        Stopped {
            dir,
            queue,
            store,
            id,
        }
    }
}
