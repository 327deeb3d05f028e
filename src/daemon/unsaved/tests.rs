use super::*;
use crate::record::{Status, sample};
use crate::store::{CLAIM_TOKEN_FIELD, Expect, Move, QueueStore};

/// A kept verdict is written again on the next tick; if a producer holds the record's
/// lock then (the store answers `Locked`, a passing state like the `Io` it was kept
/// for), it stays kept: dropped, the record would stay claimed in this daemon's name
/// with nothing holding it, and the tick after would reclaim it as "claimed in this
/// daemon's name but no landing of it runs here" and land it again.
#[test]
fn a_kept_verdict_is_not_dropped_when_the_record_lock_is_busy_at_its_retry() {
    let l = landing();
    let full = l.disk_full();
    keep(&l.waiting, OWNER, &l.id, TOKEN, landed(), &full);
    let lock = l.producer_lock();
    retry(&l.waiting, &l.records);
    drop(lock);
    assert!(
        l.waiting.holds(&l.id),
        "the landed verdict was dropped at a busy record lock; the record stays {}",
        l.status()
    );
}

/// A producer grew the record past the cap: even the `landed` verdict without its
/// GitHub fields cannot be written (the store cannot read the record). Fail closed:
/// the verdict is kept (the record stays `landing` in this daemon's name, its lane
/// held, the PR never landed again) until an operator shortens the record, and the
/// retry after that writes it.
#[test]
fn a_verdict_too_large_for_its_record_waits_until_the_record_is_shortened() {
    use crate::store::MAX_RECORD_BYTES;

    let l = landing();
    let file = l.queue.path().join(format!("{}.json", l.id));
    let short = l.records.store().load(&l.id).unwrap().record;
    let mut grown = short.clone();
    let notes = "n".repeat(MAX_RECORD_BYTES as usize);
    grown
        .extra
        .insert("notes".to_owned(), &serde_json::json!(notes));
    std::fs::write(&file, grown.to_compact_json()).unwrap();
    let verdict = landed();
    let refused = verdict.write(&l.records, OWNER, &l.id, None).unwrap_err();
    assert!(super::super::verdict::kept_after(&refused), "{refused}");
    keep(&l.waiting, OWNER, &l.id, TOKEN, verdict, &refused);
    retry(&l.waiting, &l.records);
    assert!(l.waiting.holds(&l.id));
    // The operator's edit: the notes out, the rest as it was.
    std::fs::write(&file, short.to_compact_json()).unwrap();
    assert_eq!(l.status(), Status::Landing);
    retry(&l.waiting, &l.records);
    assert!(!l.waiting.holds(&l.id));
    assert_eq!(l.status(), Status::Landed);
}

/// A producer holds the record's lock past the 250 ms the verdict waits (the store
/// answers `Locked`, a verdict kept) because it is writing the record: what it writes
/// keeps the record `landing` and claimed by this daemon, but moves `lastUpdatedAt`,
/// as every write through the store does. Matched on that exact claim, the retry met
/// `Reclaimed` and dropped the verdict: the record stayed `landing` in this live
/// daemon's name with nothing holding it, and the next tick reclaimed it and landed the
/// merged PR again. Matched on the landing's claim token, which the producer's write
/// carries along, the verdict is written.
#[test]
fn a_kept_verdict_survives_the_write_of_the_producer_that_held_the_lock() {
    let l = landing();
    let lock = l.producer_lock();
    let verdict = landed();
    let refused = verdict.write(&l.records, OWNER, &l.id, None).unwrap_err();
    assert!(matches!(refused, StoreError::Locked { .. }), "{refused}");
    keep(&l.waiting, OWNER, &l.id, TOKEN, verdict, &refused);
    // The producer's write under its lock: a note of its own, and the time of it.
    l.written_by_producer(|r| {
        r.extra
            .insert("notes".to_owned(), &serde_json::json!("rebased"));
        r.last_updated_at = Some(crate::clock::now_iso());
    });
    drop(lock);
    retry(&l.waiting, &l.records);
    let after = l.records.store().load(&l.id).unwrap().record;
    assert!(
        l.waiting.holds(&l.id) || after.status == Status::Landed,
        "the landed verdict was dropped after the producer's write; the record stays {}, claimed by {:?}, and nothing holds it",
        after.status,
        after.claimed_by
    );
}

/// Fail closed: a writer that drops the landing's claim token (the record otherwise
/// still `landing` and this daemon's) leaves nothing that says the claim is the kept
/// verdict's own, so the retry refuses it (`Reclaimed`) and drops the verdict, logged,
/// rather than write it onto a claim it cannot tell from a later landing's.
#[test]
fn a_kept_verdict_is_dropped_when_a_writer_removed_its_claim_token() {
    let l = landing();
    let full = l.disk_full();
    keep(&l.waiting, OWNER, &l.id, TOKEN, landed(), &full);
    l.written_by_producer(|r| r.extra.remove(CLAIM_TOKEN_FIELD));
    retry(&l.waiting, &l.records);
    assert!(!l.waiting.holds(&l.id));
    assert_eq!(l.status(), Status::Landing);
}

/// A daemon stops with a verdict kept: the next daemon on the berth dir takes the
/// listed verdict over, with its landing's owner stamp and token, and writes it onto
/// the stopped daemon's claim;
/// a line of an older berth's list (no claim) is not taken over.
#[test]
fn the_next_daemon_on_the_berth_dir_writes_a_verdict_its_predecessor_left_listed() {
    let l = landing();
    let full = l.disk_full();
    keep(&l.waiting, OWNER, &l.id, TOKEN, landed(), &full);
    let next = Waiting::new(l.berth.path(), l.queue.path());
    assert!(next.holds(&l.id));
    retry(&next, &l.records);
    assert!(!next.holds(&l.id));
    assert_eq!(l.status(), Status::Landed);

    let older =
        serde_json::json!([{"record": "r", "verdict": "landed", "error": "e", "since": "s"}]);
    std::fs::write(l.berth.path().join(UNSAVED_FILE), older.to_string()).unwrap();
    let after_older = Waiting::new(l.berth.path(), l.queue.path());
    assert!(!after_older.holds("r"));
    assert_eq!(read(l.berth.path()).unwrap(), []);
}

/// berth's dir is one per user (`~/.gstack/berth`) whatever queue a daemon serves. A
/// daemon of queue A stops with a verdict kept; the next start on the berth dir serves
/// queue B (another `--config`, a `run --once` on it): it takes the list over, the
/// record is not in its queue (`NotFound`), and the verdict is dropped and unlisted. The
/// daemon of queue A starts again on the berth dir and finds nothing to write: its
/// record, claimed by a gone owner, is reclaimed and landed again.
#[test]
fn a_start_on_another_queue_does_not_drop_a_verdict_its_predecessor_left_listed() {
    let l = landing();
    let full = l.disk_full();
    keep(&l.waiting, OWNER, &l.id, TOKEN, landed(), &full);
    let other_queue = tempfile::tempdir().unwrap();
    let decisions = std::sync::Arc::new(crate::rules::DecisionLog::new(l.berth.path()));
    let other = Records::new(QueueStore::new(other_queue.path()), decisions);
    retry(&Waiting::new(l.berth.path(), other_queue.path()), &other);
    let again = Waiting::new(l.berth.path(), l.queue.path());
    assert!(
        again.holds(&l.id),
        "the verdict was dropped by a daemon of another queue; the record stays {} with nothing to write it",
        l.status()
    );
}

/// ABA: an operator retries a record whose verdict is kept (its owner stopped touching
/// it past the TTL: `berth retry` lets it go); at the next tick's retry a producer
/// holds the record's lock, so the verdict stays kept; then the same daemon claims the
/// record again (claim.rs's moves, below; selection skips it, a claim by any other
/// path must not matter). The old `blocked` verdict must not be written over the new
/// landing: it is written onto the claim its own landing left, and that claim is gone.
#[test]
fn a_kept_verdict_is_not_written_over_a_later_landing_of_the_same_record() {
    let l = landing();
    let full = l.disk_full();
    let failed = Verdict::Settled {
        to: Status::Blocked,
        reason: "land step failed (exit 1)".to_owned(),
        not_before: None,
    };
    keep(&l.waiting, OWNER, &l.id, TOKEN, failed, &full);
    // `berth retry`, by an operator.
    l.records
        .store()
        .transition(Move::new(&l.id, Expect::Any, Status::Queued), |r| {
            r.claimed_by = None;
        })
        .unwrap();
    let lock = l.producer_lock();
    retry(&l.waiting, &l.records);
    drop(lock);
    // The same daemon claims the queued record and lands it again.
    for (from, to) in [
        (Status::Queued, Status::Claiming),
        (Status::Claiming, Status::Landing),
    ] {
        l.records
            .store()
            .transition(Move::new(&l.id, Expect::OneOf(&[from]), to), |r| {
                r.claimed_by = Some(OWNER.to_owned());
            })
            .unwrap();
    }
    retry(&l.waiting, &l.records);
    let now = l.records.store().load(&l.id).unwrap().record;
    assert_eq!(
        now.status,
        Status::Landing,
        "the earlier landing's kept verdict was written over this daemon's new landing of the record: {}",
        now.last_error.unwrap_or_default()
    );
}

const OWNER: &str = "host~boot~1~2.3.4:42:7";
/// The claim token [`landing`]'s claim wrote, as `claim.rs` does.
const TOKEN: &str = "1";

/// A record `landing`, claimed by [`OWNER`], with no verdict kept yet.
struct Landing {
    queue: tempfile::TempDir,
    berth: tempfile::TempDir,
    id: String,
    records: Records,
    waiting: Waiting,
}

impl Landing {
    /// What the store answers a write on a full disk: an error that keeps the verdict.
    fn disk_full(&self) -> StoreError {
        StoreError::Io {
            action: "write",
            path: self.queue.path().join(format!("{}.json", self.id)),
            source: std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
        }
    }

    /// A producer holding the record's lock until the returned file is dropped.
    fn producer_lock(&self) -> std::fs::File {
        use std::os::fd::AsRawFd as _;
        let path = self.queue.path().join(format!(".{}.lock", self.id));
        let lock = std::fs::File::open(path).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(
            unsafe { nix::libc::flock(lock.as_raw_fd(), nix::libc::LOCK_EX) },
            0
        );
        lock
    }

    /// The record as a producer writes it, not through berth's store: `edit` applied
    /// to the record on disk.
    fn written_by_producer(&self, edit: impl FnOnce(&mut crate::record::Record)) {
        let mut record = self.records.store().load(&self.id).unwrap().record;
        edit(&mut record);
        let file = self.queue.path().join(format!("{}.json", self.id));
        std::fs::write(file, record.to_compact_json()).unwrap();
    }

    fn status(&self) -> Status {
        self.records.store().load(&self.id).unwrap().record.status
    }
}

fn landing() -> Landing {
    let (queue, berth) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = QueueStore::new(queue.path());
    let id = store.insert(&sample::queued(5)).unwrap();
    for to in [Status::Claiming, Status::Landing] {
        store
            .transition(Move::new(&id, Expect::Any, to), |r| {
                r.claimed_by = Some(OWNER.to_owned());
                r.extra
                    .insert(CLAIM_TOKEN_FIELD.to_owned(), &serde_json::json!(TOKEN));
            })
            .unwrap();
    }
    let decisions = std::sync::Arc::new(crate::rules::DecisionLog::new(berth.path()));
    let records = Records::new(store, decisions);
    let waiting = Waiting::new(berth.path(), queue.path());
    Landing {
        queue,
        berth,
        id,
        records,
        waiting,
    }
}

fn landed() -> Verdict {
    Verdict::Landed {
        checked_at: crate::clock::now_iso(),
    }
}

/// `berth status` reads `unsaved-verdicts.json`: a FIFO there must give a clear error,
/// not hang `status` in a blocking open.
#[test]
fn a_fifo_unsaved_verdicts_file_does_not_hang_status() {
    let dir = tempfile::tempdir().unwrap();
    nix::unistd::mkfifo(
        &dir.path().join(UNSAVED_FILE),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let berth_dir = dir.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read(&berth_dir).is_err());
    });
    let refused = rx
        .recv_timeout(std::time::Duration::from_secs(3))
        .expect("unsaved::read still blocked on the FIFO after 3s");
    assert!(
        refused,
        "a FIFO is not berth's status file: expected an error"
    );
}

/// What another daemon reads beside a gone owner's instance lock: the record is left for
/// that owner's next start only when listed with the owner stamp and claim token it
/// carries, in its own queue; a list reached through a symlink (the file is data another
/// user may plant) lists nothing.
#[test]
fn a_record_is_left_listed_only_with_its_claim_in_its_queue() {
    let l = landing();
    let full = l.disk_full();
    keep(&l.waiting, OWNER, &l.id, TOKEN, landed(), &full);
    let lock = crate::instance::lock_path(l.berth.path());
    let stored = || l.records.store().load(&l.id).unwrap();
    assert!(left_listed(&stored(), &lock));
    l.written_by_producer(|r| {
        r.extra
            .insert(CLAIM_TOKEN_FIELD.to_owned(), &serde_json::json!("2"));
    });
    assert!(!left_listed(&stored(), &lock), "listed with another token");
    l.written_by_producer(|r| {
        r.extra
            .insert(CLAIM_TOKEN_FIELD.to_owned(), &serde_json::json!(TOKEN));
    });
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join(format!("{}.json", l.id));
    std::fs::copy(&stored().path, &moved).unwrap();
    let in_other_queue = QueueStore::new(elsewhere.path()).load(&l.id).unwrap();
    assert!(
        !left_listed(&in_other_queue, &lock),
        "listed for another queue"
    );
    let linked = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        l.berth.path().join(UNSAVED_FILE),
        linked.path().join(UNSAVED_FILE),
    )
    .unwrap();
    let through_link = crate::instance::lock_path(linked.path());
    assert!(
        !left_listed(&stored(), &through_link),
        "read through a symlink"
    );
}
