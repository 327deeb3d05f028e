//! The active-fault registry of one run: which halt events are currently raised, so a tick
//! emits only faults that are new and resolves (once) those that cleared.
//!
//! One file per run, `active-faults/<safeRunId>.json`, replaced atomically under the run's
//! lock. An unreadable registry is moved aside (never overwritten): the halt event files
//! themselves make re-emitting its faults harmless.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fault::Severity;
use super::halt::HaltEvent;
use super::json_file;

/// What the registry remembers of a raised fault: enough to write its resolved marker after
/// the fault (and its detector's output) is gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveFault {
    pub kind: String,
    pub scope: String,
    pub message: String,
    pub severity: Severity,
    pub category: String,
    pub first_detected_at: String,
}

impl ActiveFault {
    pub fn of(event: &HaltEvent) -> ActiveFault {
        ActiveFault {
            kind: event.kind.clone(),
            scope: event.scope.clone(),
            message: event.message.clone(),
            severity: event.severity,
            category: event.category.clone(),
            first_detected_at: event.detected_at.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    pub run_id: String,
    pub updated_at: String,
    pub active: BTreeMap<String, ActiveFault>,
}

/// `KIND:scope:<8 hex>` with no path separator anywhere: the only keys a registry written
/// by berth (or gstack) holds. Anything else was planted, and would become a file name.
fn is_fault_id(id: &str) -> bool {
    let mut parts = id.splitn(3, ':');
    let (Some(kind), Some(scope), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !kind.is_empty()
        && kind.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        && !scope.is_empty()
        && !scope.contains(['/', '\\', '\0'])
        && hash.len() == 8
        && hash.chars().all(|c| c.is_ascii_hexdigit())
}

/// Loads the registry at `path`. `Ok((registry, None))` normally; an unreadable file is
/// renamed to `<name>.unreadable-<time>` and an empty registry returned with the warning.
pub fn load(path: &Path, run_id: &str) -> Result<(Registry, Option<String>), String> {
    let empty = || Registry {
        run_id: run_id.to_owned(),
        ..Registry::default()
    };
    let reason = match json_file::read_json(path) {
        Ok(None) => return Ok((empty(), None)),
        Ok(Some(value)) => match serde_json::from_value::<Registry>(value) {
            Ok(registry) => match registry.active.keys().find(|id| !is_fault_id(id)) {
                None => return Ok((registry, None)),
                Some(bad) => format!("{bad:?} is not a fault id (KIND:scope:8 hex digits)"),
            },
            Err(e) => format!("not an active-fault registry: {e}"),
        },
        Err(reason) => reason,
    };
    let aside = aside_path(path);
    std::fs::rename(path, &aside).map_err(|e| {
        format!(
            "{}: {reason}; could not move it aside to {}: {e}",
            path.display(),
            aside.display()
        )
    })?;
    Ok((
        empty(),
        Some(format!(
            "{}: {reason}; moved aside to {} and started afresh",
            path.display(),
            aside.display()
        )),
    ))
}

fn aside_path(path: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{name}.unreadable-{stamp}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_registry_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        let (registry, warning) = load(&path, "run").unwrap();
        assert!(registry.active.is_empty() && warning.is_none());
        std::fs::write(&path, b"{ torn").unwrap();
        let (registry, warning) = load(&path, "run").unwrap();
        assert!(registry.active.is_empty());
        assert!(warning.unwrap().contains("moved aside"));
        assert!(!path.exists());
        let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(kept.len(), 1);
        let kept = kept[0].as_ref().unwrap().path();
        assert_eq!(std::fs::read(kept).unwrap(), b"{ torn");
    }
}
