//! The queue store: the directory of record files, and the one function that changes them.
//!
//! Architecture Invariant: every write of a record goes through [`QueueStore::transition`]
//! (or [`QueueStore::insert`] for a new one). It re-reads the file under the record's
//! advisory lock, checks the move against the status *on disk*, and replaces the file
//! atomically. A file berth cannot read is reported, never rewritten.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::atomic_file;
use crate::file_stamp::FileStamp;
use crate::hostile_file::ReadError;
use crate::record::Record;

mod error;
mod fit;
mod names;
mod record_file;
mod transition;

pub use error::StoreError;
pub use fit::CLAIM_ROOM;
use fit::encode;
use names::check_id;
pub use names::{MAX_ID_LEN, file_name_of, id_of, is_record_name};
pub use record_file::RecordError;
use record_file::read_record;
pub use transition::{CLAIM_TOKEN_FIELD, Expect, Move};

/// Records larger than this are refused unread: a queue record is a few hundred bytes.
pub const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// A record as found on disk. `id` is the file name less one `.json` ([`id_of`]).
#[derive(Clone, Debug)]
pub struct StoredRecord {
    pub id: String,
    pub path: PathBuf,
    pub record: Record,
    /// The file's ctime when it was read: when anyone last wrote it. Unlike `lastUpdatedAt`
    /// and the mtime, no writer can set it (`ownership` ages a record by it).
    pub changed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A file in the queue dir that is not a usable record, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub file: String,
    pub reason: String,
}

/// One read of a queue file, for a caller that keeps what it read by the file's stamp.
#[derive(Debug)]
pub struct NamedRead {
    pub content: Result<StoredRecord, Unreadable>,
    /// The `fstat` of the file read, when it could be opened.
    pub opened: Option<fs::Metadata>,
    /// The system failed the read (out of descriptors or memory, an I/O error, no access):
    /// nothing was learned about the file, so the failure must not be kept as its answer.
    pub system_failed: bool,
}

/// Everything one pass over the queue dir found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<StoredRecord>,
    pub unreadable: Vec<Unreadable>,
}

/// The queue directory.
#[derive(Clone, Debug)]
pub struct QueueStore {
    dir: PathBuf,
}

impl QueueStore {
    pub fn new(dir: impl Into<PathBuf>) -> QueueStore {
        QueueStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the queue dir (owner-only) if it is missing.
    pub fn ensure_dir(&self) -> Result<(), StoreError> {
        atomic_file::ensure_private_dir(&self.dir).map_err(StoreError::io("create", &self.dir))
    }

    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(file_name_of(id))
    }

    fn lock_path_of(&self, id: &str) -> PathBuf {
        // Hidden, so no scan ever mistakes it for a record.
        self.dir.join(format!(".{id}.lock"))
    }

    /// The record's advisory lock, waited for at most `wait`: a producer holding it longer
    /// makes this write fail (the tick skips the record and logs it), never hang.
    fn lock(&self, id: &str, wait: Duration) -> Result<fs::File, StoreError> {
        let lock = self.lock_path_of(id);
        atomic_file::lock_exclusive_within(&lock, wait).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                StoreError::Locked {
                    id: id.to_owned(),
                    lock,
                    waited: wait,
                }
            } else {
                StoreError::io("lock", &self.path_of(id))(e)
            }
        })
    }

    /// Lists every record and reports every `*.json` file that is not one. A missing
    /// queue dir is an empty queue.
    pub fn scan(&self) -> Result<Scan, StoreError> {
        let (names, unreadable) = self.names()?;
        let mut scan = Scan {
            records: Vec::with_capacity(names.len()),
            unreadable,
        };
        let mut buffer = Vec::new();
        for name in names {
            match self.read_named_into(&name, &mut buffer) {
                Ok(stored) => scan.records.push(stored),
                Err(bad) => scan.unreadable.push(bad),
            }
        }
        Ok(scan)
    }

    /// The sorted names of the queue dir's `*.json` files (hidden ones are berth's lock and
    /// temp files, not records), and the names that are not even UTF-8. A missing queue
    /// dir has none.
    pub fn names(&self) -> Result<(Vec<String>, Vec<Unreadable>), StoreError> {
        let mut unreadable = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), unreadable)),
            Err(e) => return Err(StoreError::io("read dir", &self.dir)(e)),
        };
        let mut names: Vec<String> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StoreError::io("read dir", &self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                unreadable.push(Unreadable {
                    file: name.to_string_lossy().into_owned(),
                    reason: "file name is not UTF-8".into(),
                });
                continue;
            };
            if is_record_name(name) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok((names, unreadable))
    }

    /// Reads the queue-dir file `name` (`<id>.json`): the record, or why it is not one.
    /// The one way a queue file is parsed, for a whole scan and for the daemon's
    /// incremental view alike.
    pub fn read_named(&self, name: &str) -> Result<StoredRecord, Unreadable> {
        self.read_named_into(name, &mut Vec::new())
    }

    /// [`Self::read_named`] reading through `buffer`, which a sweep reuses for every file.
    pub fn read_named_into(
        &self,
        name: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<StoredRecord, Unreadable> {
        self.read_named_opened(name, buffer).content
    }

    /// [`Self::read_named_into`], with the `fstat` of the file it read when it could be
    /// opened (what identifies the content read, with no second look at the path) and
    /// whether the system failed the read.
    pub fn read_named_opened(&self, name: &str, buffer: &mut Vec<u8>) -> NamedRead {
        let mut opened = None;
        let mut system_failed = false;
        let content = self.read_named_with(name, buffer, &mut opened, &mut system_failed);
        NamedRead {
            content,
            opened,
            system_failed,
        }
    }

    fn read_named_with(
        &self,
        name: &str,
        buffer: &mut Vec<u8>,
        opened: &mut Option<fs::Metadata>,
        system_failed: &mut bool,
    ) -> Result<StoredRecord, Unreadable> {
        let id = id_of(name).unwrap_or_default().to_owned();
        if let Err(e) = check_id(&id) {
            // Every write is by id: a record berth could never update must not be
            // offered to the tick, where it would be claimed and skipped forever.
            let reason = match e {
                StoreError::IdTooLong { reason, .. } => reason,
                _ => "file name is not a record id (only A-Z a-z 0-9 . _ - are allowed)".into(),
            };
            return Err(Unreadable {
                file: name.to_owned(),
                reason,
            });
        }
        let path = self.dir.join(name);
        match read_record(&path, buffer, opened) {
            Ok(record) => Ok(StoredRecord {
                id,
                path,
                record,
                changed_at: opened.as_ref().and_then(changed_at),
            }),
            Err(reason) => {
                *system_failed = matches!(reason, RecordError::Read(ReadError::Io(_)));
                Err(Unreadable {
                    file: name.to_owned(),
                    reason: reason.to_string(),
                })
            }
        }
    }

    /// Reads one record by id.
    pub fn load(&self, id: &str) -> Result<StoredRecord, StoreError> {
        self.load_stamped(id).map(|(stored, _)| stored)
    }

    /// [`QueueStore::load`], with the stamp of the file read (from its open handle, so of
    /// the very version parsed).
    fn load_stamped(&self, id: &str) -> Result<(StoredRecord, Option<FileStamp>), StoreError> {
        check_id(id)?;
        let path = self.path_of(id);
        if !path.exists() {
            return Err(StoreError::NotFound {
                id: id.to_owned(),
                dir: self.dir.clone(),
            });
        }
        let mut opened = None;
        let record = read_record(&path, &mut Vec::new(), &mut opened).map_err(|reason| {
            StoreError::Unreadable {
                file: path.clone(),
                reason,
            }
        })?;
        let stored = StoredRecord {
            id: id.to_owned(),
            path,
            record,
            changed_at: opened.as_ref().and_then(changed_at),
        };
        Ok((stored, opened.as_ref().map(FileStamp::of)))
    }

    /// Writes a new record under its expected id; never replaces an existing file.
    pub fn insert(&self, record: &Record) -> Result<String, StoreError> {
        self.insert_under(&record.identity_or_path(), record)
    }

    /// [`QueueStore::insert`] filed under the repo identity `identity` (a legacy record's
    /// origin identity, which the record itself does not carry).
    pub fn insert_under(&self, identity: &str, record: &Record) -> Result<String, StoreError> {
        self.ensure_dir()?;
        let id = record.id_under(identity);
        let path = self.path_of(&id);
        let text = encode(record, &path, 0)?;
        let _guard = self.lock(&id, atomic_file::LOCK_WAIT)?;
        match atomic_file::create_new(&path, text.as_bytes(), 0o600) {
            Ok(()) => Ok(id),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let status = read_record(&path, &mut Vec::new(), &mut None)
                    .map(|r| r.status.to_string())
                    .unwrap_or_else(|reason| format!("unreadable: {reason}"));
                Err(StoreError::AlreadyExists { id, status })
            }
            Err(e) => Err(StoreError::io("write", &path)(e)),
        }
    }
}

/// A file's ctime as a time.
fn changed_at(meta: &fs::Metadata) -> Option<chrono::DateTime<chrono::Utc>> {
    use std::os::unix::fs::MetadataExt as _;
    let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
    chrono::DateTime::from_timestamp(meta.ctime(), nanos)
}

#[cfg(test)]
mod owners_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;
    use serde_json::json;

    fn record_json(pr: u64) -> serde_json::Value {
        json!({
            "runId": "run-1", "repoPath": "/r", "baseBranch": "main", "featureBranch": "feat/a",
            "prNumber": pr, "version": "1.0.0", "livingPlanPath": "/r/PLAN.md",
            "worktreePath": "/r", "queuedAt": "2026-05-17T08:37:01.000Z", "status": "queued",
            "repoIdentity": "github.com/acme/widget", "extraField": "kept"
        })
    }

    fn store_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, QueueStore) {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let store = QueueStore::new(dir.path());
        (dir, store)
    }

    #[test]
    fn insert_then_transition_keeps_unknown_fields_and_mode() {
        let (_dir, store) = store_with(&[]);
        let record = Record::from_json(record_json(7)).unwrap();
        let id = store.insert(&record).unwrap();
        assert_eq!(id, "github.com-acme-widget-main-pr-7");
        let updated = store
            .transition(
                Move::new(&id, Expect::OneOf(&[Status::Queued]), Status::Claiming),
                |r| r.claimed_by = Some("host:1".into()),
            )
            .unwrap();
        assert_eq!(updated.status, Status::Claiming);
        let on_disk: serde_json::Value =
            serde_json::from_slice(&fs::read(store.path_of(&id)).unwrap()).unwrap();
        assert_eq!(on_disk["extraField"], "kept");
        assert_eq!(on_disk["status"], "claiming");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(store.path_of(&id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            store.insert(&record),
            Err(StoreError::AlreadyExists { .. })
        ));
    }

    /// A record near the cap is written compact when pretty would pass it, so berth can read
    /// back what it wrote; a move whose record is over the cap even compact is refused with
    /// the file, the size and the cap, and the file is left as it was.
    #[test]
    fn a_write_never_passes_the_cap_it_reads_with() {
        let (_dir, store) = store_with(&[]);
        let mut value = record_json(9);
        let base = serde_json::to_string(&value).unwrap().len();
        // Room for the claim's `lastUpdatedAt` (42 bytes compact), not for its indentation.
        let room = MAX_RECORD_BYTES as usize - base - ",\"notes\":\"\"\n".len() - 50;
        value["notes"] = json!("n".repeat(room));
        let id = store.insert(&Record::from_json(value).unwrap()).unwrap();
        let claimed = Move::new(&id, Expect::OneOf(&[Status::Queued]), Status::Claiming);
        let record = store.transition(claimed, |_| {}).unwrap();
        assert!(record.to_pretty_json().len() as u64 > MAX_RECORD_BYTES);
        let written = fs::read(store.path_of(&id)).unwrap();
        assert!(
            written.len() as u64 <= MAX_RECORD_BYTES,
            "{}",
            written.len()
        );
        assert_eq!(store.load(&id).unwrap().record.status, Status::Claiming);
        let err = store
            .transition(Move::new(&id, Expect::Any, Status::Blocked), |r| {
                r.claimed_by = Some("o".repeat(64))
            })
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{text}");
        assert!(
            text.contains(&format!("{}-byte limit", MAX_RECORD_BYTES)),
            "{text}"
        );
        assert!(
            text.contains(&store.path_of(&id).display().to_string()),
            "{text}"
        );
        assert_eq!(fs::read(store.path_of(&id)).unwrap(), written);
    }

    /// A claim leaves [`CLAIM_ROOM`] bytes under the cap or is refused; a later write that
    /// sets `lastError` past the cap has it cut to fit, the record's own fields whole.
    #[test]
    fn a_claimed_record_is_always_settled_with_its_last_error_cut_to_fit() {
        let (_dir, store) = store_with(&[]);
        let mut value = record_json(9);
        let base = serde_json::to_string(&value).unwrap().len();
        let notes = MAX_RECORD_BYTES as usize - base - CLAIM_ROOM as usize - 200;
        value["notes"] = json!("n".repeat(notes));
        let id = store.insert(&Record::from_json(value).unwrap()).unwrap();
        let claim =
            |room| Move::new(&id, Expect::OneOf(&[Status::Queued]), Status::Claiming).leaving(room);
        let owner = |r: &mut Record| r.claimed_by = Some("o".repeat(300));
        let err = store.transition(claim(CLAIM_ROOM), owner).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("bytes a claim leaves"), "{err}");
        assert_eq!(store.load(&id).unwrap().record.status, Status::Queued);
        store
            .transition(claim(CLAIM_ROOM), |r| r.claimed_by = Some("o".repeat(40)))
            .unwrap();
        let reason = "\u{1}é".repeat(3 * CLAIM_ROOM as usize);
        let blocked = store
            .transition(Move::new(&id, Expect::Any, Status::Blocked), |r| {
                r.claimed_by = None;
                r.last_error = Some(reason.clone());
            })
            .unwrap();
        let written = fs::read(store.path_of(&id)).unwrap();
        assert!(written.len() as u64 <= MAX_RECORD_BYTES);
        let error = blocked.last_error.unwrap();
        assert!(error.len() >= CLAIM_ROOM as usize / 4, "{}", error.len());
        let kept = error.strip_suffix(fit::CUT_MARK).unwrap();
        assert!(reason.starts_with(kept));
        let read = store.load(&id).unwrap().record;
        assert_eq!(read.status, Status::Blocked);
        assert_eq!(
            read.extra.get("notes").map(|n| n.get().len()),
            Some(notes + 2),
            "the record's own field was cut"
        );
    }

    #[test]
    fn illegal_and_unexpected_moves_never_write() {
        let (_dir, store) = store_with(&[]);
        let id = store
            .insert(&Record::from_json(record_json(8)).unwrap())
            .unwrap();
        let before = fs::read(store.path_of(&id)).unwrap();
        let err = store
            .transition(Move::new(&id, Expect::Any, Status::Landed), |_| {})
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("record `{id}`: illegal move queued -> landed")
        );
        let err = store
            .transition(
                Move::new(&id, Expect::OneOf(&[Status::Landing]), Status::Landed),
                |_| {},
            )
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Moved {
                found: Status::Queued,
                ..
            }
        ));
        assert_eq!(fs::read(store.path_of(&id)).unwrap(), before);
    }

    #[test]
    fn every_kind_of_bad_file_is_reported_and_left_alone() {
        let mut deep = String::new();
        for _ in 0..200 {
            deep.push('[');
        }
        let huge = vec![b' '; (MAX_RECORD_BYTES + 1) as usize];
        let mut missing = record_json(1);
        missing.as_object_mut().unwrap().remove("runId");
        let missing = serde_json::to_vec(&missing).unwrap();
        let good = serde_json::to_vec(&record_json(2)).unwrap();
        let files: Vec<(&str, &[u8])> = vec![
            ("a-not-json.json", b"{ nope"),
            ("b-latin1.json", b"{\"runId\": \"\xe9\"}"),
            ("c-deep.json", deep.as_bytes()),
            ("d-huge.json", &huge),
            ("e-missing.json", &missing),
            ("f-good.json", &good),
            ("g bad name.json", &good),
            ("notes.txt", b"ignored: not a .json file"),
        ];
        let (dir, store) = store_with(&files);
        let snapshot: Vec<Vec<u8>> = files
            .iter()
            .map(|(n, _)| fs::read(dir.path().join(n)).unwrap())
            .collect();
        let scan = store.scan().unwrap();
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.records[0].id, "f-good");
        let reasons: Vec<(String, String)> = scan
            .unreadable
            .iter()
            .map(|u| (u.file.clone(), u.reason.clone()))
            .collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reasons[0].1.starts_with("not valid JSON"));
        assert!(reasons[1].1.starts_with("not UTF-8"));
        assert_eq!(reasons[2].1, "JSON nested deeper than 128 levels");
        assert!(reasons[3].1.contains("over the 1048576-byte limit"));
        assert_eq!(reasons[4].1, "field `runId`: required field is missing");
        assert!(
            reasons[5].1.starts_with("file name is not a record id"),
            "{reasons:?}"
        );
        let err = store
            .transition(Move::new("e-missing", Expect::Any, Status::Blocked), |_| {})
            .unwrap_err();
        assert!(matches!(err, StoreError::Unreadable { .. }));
        for ((name, _), before) in files.iter().zip(snapshot) {
            assert_eq!(
                fs::read(dir.path().join(name)).unwrap(),
                before,
                "{name} changed"
            );
        }
    }

    /// A queue file named `a.json.json` is read as record `a` (every `.json` ending is
    /// trimmed), though every write of record `a` goes to `a.json`: a record berth can never
    /// update is offered to the tick (claimed and refused every tick), and beside a real
    /// `a.json` two files answer to one id, the scan holding both.
    #[test]
    fn a_file_is_read_as_the_record_whose_writes_go_to_it() {
        let good = serde_json::to_vec(&record_json(2)).unwrap();
        let (_dir, store) = store_with(&[("a.json.json", &good)]);
        let scan = store.scan().unwrap();
        for stored in &scan.records {
            let name = format!("{}.json", stored.id);
            assert_eq!(
                store
                    .path_of(&stored.id)
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap(),
                "a.json.json",
                "a.json.json is read as record {:?}, whose writes go to {name}",
                stored.id
            );
        }
    }

    /// A record swapped for a FIFO between a type check and the open must not block the
    /// tick: the type is checked on the opened handle.
    #[test]
    fn a_record_swapped_for_a_fifo_never_blocks_a_scan() {
        let (dir, store) = store_with(&[]);
        let good = serde_json::to_vec(&record_json(3)).unwrap();
        crate::hostile_file::fifo_race::reads_finish(
            &dir.path().join("r.json"),
            &good,
            3000,
            std::time::Duration::from_secs(20),
            move || {
                store.scan().unwrap();
            },
        );
    }

    #[test]
    fn ids_cannot_escape_the_queue_dir() {
        let (_dir, store) = store_with(&[]);
        assert!(matches!(
            store.load("../etc/passwd"),
            Err(StoreError::BadId(_))
        ));
        assert!(matches!(
            store.transition(Move::new("a/b", Expect::Any, Status::Queued), |_| {}),
            Err(StoreError::BadId(_))
        ));
    }
}
