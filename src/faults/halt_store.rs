//! The halt-events directory (default `~/.gstack/skill-faults/`, shared with gstack):
//!
//! - `pending-investigations/<safeRunId>-<faultId>.json`: the first occurrence, written once
//!   with an exclusive create and never rewritten;
//! - `collapsed/<same name>`: the latest recurrence and an `occurrences` count;
//! - `resolved/<same name>`: the fault cleared (`resolvedAt`, `resolutions` count);
//! - `active-faults/<safeRunId>.json`: the per-run registry ([`super::registry`]).
//!
//! Architecture Invariant: a file here that cannot be read is reported and left as it is;
//! nothing is ever written over it.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use super::halt::HaltEvent;
use super::json_file;
use super::registry::{self, ActiveFault};
use crate::atomic_file;
use crate::safe_key::safe_key;

pub const PENDING_DIR: &str = "pending-investigations";
pub const COLLAPSED_DIR: &str = "collapsed";
pub const RESOLVED_DIR: &str = "resolved";
pub const ACTIVE_DIR: &str = "active-faults";

/// What [`HaltStore::emit`] did with one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Emitted {
    /// First occurrence: the pending file was created.
    New,
    /// The pending file already records this occurrence (same stdout tail, never resolved).
    Duplicate,
    /// A recurrence (another stdout tail, or raised again after it was resolved), archived
    /// under `collapsed/` as occurrence number `occurrences`.
    Recurred { occurrences: u64 },
}

/// What one [`HaltStore::sync_run`] did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub emitted: Vec<(String, Emitted)>,
    pub resolved: Vec<String>,
    /// Files that could not be read or written, each naming the file and the reason.
    pub problems: Vec<String>,
}

/// Where a listed halt event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HaltStatus {
    Pending,
    Resolved,
}

/// One halt event as `berth faults list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedHalt {
    pub file: String,
    pub status: HaltStatus,
    pub run_id: String,
    pub fault_id: String,
    pub severity: String,
    pub message: String,
    pub first_detected_at: String,
    pub last_detected_at: String,
    pub occurrences: u64,
    pub resolved_at: Option<String>,
}

/// Everything under the halt dir, and every file that could not be read.
#[derive(Debug, Default, Serialize)]
pub struct Listing {
    pub halts: Vec<ListedHalt>,
    pub unreadable: Vec<crate::store::Unreadable>,
}

#[derive(Clone, Debug)]
pub struct HaltStore {
    dir: PathBuf,
}

fn io_problem(action: &str, path: &Path, e: io::Error) -> String {
    format!("{action} {}: {e}", path.display())
}

impl HaltStore {
    pub fn new(dir: impl Into<PathBuf>) -> HaltStore {
        HaltStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<safeRunId>-<faultId>.json`, as gstack names them. A fault id comes from data (a
    /// state file's feature number, a registry on disk): a path separator in it must never
    /// reach the file system, so it is replaced; the run-id prefix keeps `..` from ever
    /// being a whole component.
    fn file_name(run_id: &str, fault_id: &str) -> String {
        let fault_id = fault_id.replace(['/', '\\', '\0'], "_");
        format!("{}-{fault_id}.json", safe_key(run_id))
    }

    pub fn pending_path(&self, run_id: &str, fault_id: &str) -> PathBuf {
        self.dir
            .join(PENDING_DIR)
            .join(Self::file_name(run_id, fault_id))
    }

    pub fn collapsed_path(&self, run_id: &str, fault_id: &str) -> PathBuf {
        self.dir
            .join(COLLAPSED_DIR)
            .join(Self::file_name(run_id, fault_id))
    }

    pub fn resolved_path(&self, run_id: &str, fault_id: &str) -> PathBuf {
        self.dir
            .join(RESOLVED_DIR)
            .join(Self::file_name(run_id, fault_id))
    }

    pub fn registry_path(&self, run_id: &str) -> PathBuf {
        self.dir
            .join(ACTIVE_DIR)
            .join(format!("{}.json", safe_key(run_id)))
    }

    fn ensure(&self, sub: &str) -> Result<PathBuf, String> {
        let dir = self.dir.join(sub);
        atomic_file::ensure_private_dir(&dir).map_err(|e| io_problem("create", &dir, e))?;
        Ok(dir)
    }

    /// Writes one halt event: the pending file on first occurrence, a collapsed archive
    /// on recurrence. The error names the file and the reason.
    pub fn emit(&self, event: &HaltEvent) -> Result<Emitted, String> {
        self.ensure(PENDING_DIR)?;
        let pending = self.pending_path(&event.run_id, &event.fault_id);
        let bytes = json_file::pretty(event).map_err(|e| io_problem("encode", &pending, e))?;
        match atomic_file::create_new(&pending, &bytes, 0o600) {
            Ok(()) => return Ok(Emitted::New),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_problem("write", &pending, e)),
        }
        let first = json_file::read_json(&pending)
            .map_err(|reason| format!("{}: {reason}; left untouched", pending.display()))?
            .unwrap_or(Value::Null);
        let resolved_before = self.resolved_path(&event.run_id, &event.fault_id).exists();
        let same_tail =
            first.get("stdoutTail").and_then(Value::as_str) == event.stdout_tail.as_deref();
        if same_tail && !resolved_before {
            return Ok(Emitted::Duplicate);
        }
        self.ensure(COLLAPSED_DIR)?;
        let collapsed = self.collapsed_path(&event.run_id, &event.fault_id);
        let before = json_file::read_json(&collapsed)
            .map_err(|reason| format!("{}: {reason}; left untouched", collapsed.display()))?;
        let occurrences = before
            .as_ref()
            .and_then(|v| v.get("occurrences"))
            .and_then(Value::as_u64)
            .unwrap_or(1)
            + 1;
        let mut archived = serde_json::to_value(event).map_err(|e| e.to_string())?;
        if let Value::Object(map) = &mut archived {
            map.insert("occurrences".into(), json!(occurrences));
            map.insert(
                "firstDetectedAt".into(),
                first.get("detectedAt").cloned().unwrap_or(Value::Null),
            );
        }
        let bytes =
            json_file::pretty(&archived).map_err(|e| io_problem("encode", &collapsed, e))?;
        atomic_file::write_atomic(&collapsed, &bytes, 0o600)
            .map_err(|e| io_problem("write", &collapsed, e))?;
        Ok(Emitted::Recurred { occurrences })
    }

    /// Writes the resolved marker of a fault that cleared.
    pub fn resolve(&self, run_id: &str, fault_id: &str, fault: &ActiveFault) -> Result<(), String> {
        self.ensure(RESOLVED_DIR)?;
        let path = self.resolved_path(run_id, fault_id);
        let before = json_file::read_json(&path)
            .map_err(|reason| format!("{}: {reason}; left untouched", path.display()))?;
        let resolutions = before
            .as_ref()
            .and_then(|v| v.get("resolutions"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            + 1;
        let marker = json!({
            "runId": run_id,
            "faultId": fault_id,
            "kind": fault.kind,
            "scope": fault.scope,
            "message": fault.message,
            "severity": fault.severity,
            "category": fault.category,
            "firstDetectedAt": fault.first_detected_at,
            "resolvedAt": crate::clock::now_iso(),
            "resolutions": resolutions,
        });
        let bytes = json_file::pretty(&marker).map_err(|e| io_problem("encode", &path, e))?;
        atomic_file::write_atomic(&path, &bytes, 0o600).map_err(|e| io_problem("write", &path, e))
    }

    /// One tick for one run: emits every event not already active, resolves every active
    /// fault not among `events`, and records the new active set. Only faults whose files
    /// were written are recorded, so a failed write is retried on the next tick.
    pub fn sync_run(&self, run_id: &str, events: &[HaltEvent]) -> SyncReport {
        let mut report = SyncReport::default();
        if let Err(problem) = self.ensure(ACTIVE_DIR) {
            report.problems.push(problem);
            return report;
        }
        let path = self.registry_path(run_id);
        let lock_path = path.with_file_name(format!(".{}.lock", safe_key(run_id)));
        let _guard = match atomic_file::lock_exclusive_within(&lock_path, atomic_file::LOCK_WAIT) {
            Ok(guard) => guard,
            Err(e) => {
                report.problems.push(io_problem("lock", &lock_path, e));
                return report;
            }
        };
        let mut registry = match registry::load(&path, run_id) {
            Ok((registry, warning)) => {
                report.problems.extend(warning);
                registry
            }
            Err(problem) => {
                report.problems.push(problem);
                return report;
            }
        };
        let mut changed = false;
        let mut current: HashSet<&str> = HashSet::new();
        for event in events {
            if !current.insert(&event.fault_id) || registry.active.contains_key(&event.fault_id) {
                continue;
            }
            match self.emit(event) {
                Ok(emitted) => {
                    registry
                        .active
                        .insert(event.fault_id.clone(), ActiveFault::of(event));
                    report.emitted.push((event.fault_id.clone(), emitted));
                    changed = true;
                }
                Err(problem) => report.problems.push(problem),
            }
        }
        let cleared: Vec<String> = registry
            .active
            .keys()
            .filter(|id| !current.contains(id.as_str()))
            .cloned()
            .collect();
        for id in cleared {
            let Some(fault) = registry.active.get(&id) else {
                continue;
            };
            match self.resolve(run_id, &id, fault) {
                Ok(()) => {
                    registry.active.remove(&id);
                    report.resolved.push(id);
                    changed = true;
                }
                Err(problem) => report.problems.push(problem),
            }
        }
        if changed {
            registry.run_id = run_id.to_owned();
            registry.updated_at = crate::clock::now_iso();
            let written = json_file::pretty(&registry)
                .and_then(|bytes| atomic_file::write_atomic(&path, &bytes, 0o600));
            if let Err(e) = written {
                report.problems.push(io_problem("write", &path, e));
            }
        }
        report
    }

    /// Every halt event under the dir with its status; unreadable files are listed apart.
    pub fn list(&self) -> Listing {
        let mut listing = Listing::default();
        let mut names = BTreeSet::new();
        for sub in [PENDING_DIR, COLLAPSED_DIR, RESOLVED_DIR] {
            let dir = self.dir.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    listing.unreadable.push(crate::store::Unreadable {
                        file: dir.display().to_string(),
                        reason: format!("cannot read dir: {e}"),
                    });
                    continue;
                }
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && name.ends_with(".json") {
                    names.insert(name);
                }
            }
        }
        for name in names {
            match self.list_one(&name) {
                Ok(halt) => listing.halts.push(halt),
                Err(bad) => listing.unreadable.push(bad),
            }
        }
        listing
    }

    fn list_one(&self, name: &str) -> Result<ListedHalt, crate::store::Unreadable> {
        let read = |sub: &str| {
            let path = self.dir.join(sub).join(name);
            json_file::read_json(&path).map_err(|reason| crate::store::Unreadable {
                file: path.display().to_string(),
                reason,
            })
        };
        let pending = read(PENDING_DIR)?;
        let collapsed = read(COLLAPSED_DIR)?;
        let resolved = read(RESOLVED_DIR)?;
        let text = |v: &Option<Value>, field: &str| {
            v.as_ref()
                .and_then(|v| v.get(field))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let any = [&pending, &collapsed, &resolved];
        let first_text = |field: &str| any.iter().find_map(|v| text(v, field)).unwrap_or_default();
        let first_detected_at = text(&pending, "detectedAt")
            .or_else(|| text(&collapsed, "firstDetectedAt"))
            .or_else(|| text(&resolved, "firstDetectedAt"))
            .unwrap_or_default();
        let last_detected_at = text(&collapsed, "detectedAt").unwrap_or(first_detected_at.clone());
        let resolved_at = text(&resolved, "resolvedAt");
        // Raised again after its last resolution: pending again.
        let still_resolved = resolved_at.as_deref().is_some_and(|at| {
            match (
                crate::clock::parse_iso(at),
                crate::clock::parse_iso(&last_detected_at),
            ) {
                (Some(resolved), Some(detected)) => resolved > detected,
                _ => true,
            }
        });
        Ok(ListedHalt {
            file: name.to_owned(),
            status: if still_resolved {
                HaltStatus::Resolved
            } else {
                HaltStatus::Pending
            },
            run_id: first_text("runId"),
            fault_id: first_text("faultId"),
            severity: first_text("severity"),
            message: first_text("message"),
            first_detected_at,
            last_detected_at,
            occurrences: collapsed
                .as_ref()
                .and_then(|v| v.get("occurrences"))
                .and_then(Value::as_u64)
                .unwrap_or(1),
            resolved_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::fault::{Fault, Severity};

    fn event(run: &str, category: &str, tail: Option<&str>) -> HaltEvent {
        let fault = Fault {
            category: category.into(),
            severity: Severity::High,
            description: format!("{category} happened"),
            source_files: vec![],
            evidence: Default::default(),
        };
        HaltEvent::from_fault(run, &fault, tail.map(str::to_owned))
    }

    #[test]
    fn first_duplicate_and_recurrences() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let first = event("run/1", "X", Some("tail a"));
        assert_eq!(store.emit(&first), Ok(Emitted::New));
        let pending = store.pending_path("run/1", &first.fault_id);
        assert!(pending.ends_with(format!("run-1-{}.json", first.fault_id)));
        let original = fs::read(&pending).unwrap();
        assert_eq!(store.emit(&first), Ok(Emitted::Duplicate));
        let again = event("run/1", "X", Some("tail b"));
        assert_eq!(store.emit(&again), Ok(Emitted::Recurred { occurrences: 2 }));
        assert_eq!(store.emit(&again), Ok(Emitted::Recurred { occurrences: 3 }));
        assert_eq!(
            fs::read(&pending).unwrap(),
            original,
            "first occurrence kept"
        );
        let collapsed: Value = serde_json::from_slice(
            &fs::read(store.collapsed_path("run/1", &first.fault_id)).unwrap(),
        )
        .unwrap();
        assert_eq!(collapsed["occurrences"], 3);
        assert_eq!(collapsed["stdoutTail"], "tail b");
        let listing = store.list();
        assert_eq!(listing.halts.len(), 1);
        assert_eq!(listing.halts[0].occurrences, 3);
        assert_eq!(listing.halts[0].status, HaltStatus::Pending);
    }

    #[test]
    fn unreadable_files_are_reported_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let ev = event("r", "X", Some("a"));
        fs::create_dir_all(dir.path().join(PENDING_DIR)).unwrap();
        let pending = store.pending_path("r", &ev.fault_id);
        fs::write(&pending, b"{ torn").unwrap();
        let err = store.emit(&ev).unwrap_err();
        assert!(
            err.contains("left untouched") && err.contains("not valid JSON"),
            "{err}"
        );
        assert_eq!(fs::read(&pending).unwrap(), b"{ torn");
        let report = store.sync_run("r", std::slice::from_ref(&ev));
        assert!(report.emitted.is_empty() && report.problems.len() == 1);
        let listing = store.list();
        assert_eq!(listing.unreadable.len(), 1);
        assert!(listing.unreadable[0].file.ends_with(".json"));
    }

    #[test]
    fn sync_emits_new_only_and_resolves_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = HaltStore::new(dir.path());
        let x = event("r", "X", None);
        let y = event("r", "Y", None);
        let report = store.sync_run("r", &[x.clone(), y.clone()]);
        assert_eq!(report.emitted.len(), 2);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let report = store.sync_run("r", &[x.clone(), y.clone()]);
        assert!(report.emitted.is_empty() && report.resolved.is_empty());
        let report = store.sync_run("r", std::slice::from_ref(&x));
        assert_eq!(report.resolved, vec![y.fault_id.clone()]);
        let report = store.sync_run("r", std::slice::from_ref(&x));
        assert!(report.resolved.is_empty(), "resolved only once");
        let marker: Value =
            serde_json::from_slice(&fs::read(store.resolved_path("r", &y.fault_id)).unwrap())
                .unwrap();
        assert_eq!(marker["resolutions"], 1);
        assert_eq!(marker["message"], y.message);
        // Raised again after resolution: a recurrence, pending again in the listing.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let y = event("r", "Y", None);
        let report = store.sync_run("r", &[x.clone(), y.clone()]);
        assert_eq!(
            report.emitted,
            vec![(y.fault_id.clone(), Emitted::Recurred { occurrences: 2 })]
        );
        let statuses: Vec<_> = store.list().halts.iter().map(|h| h.status).collect();
        assert_eq!(statuses, vec![HaltStatus::Pending, HaltStatus::Pending]);
    }
}
