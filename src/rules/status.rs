//! `<berth_dir>/rules-status.json`: which rule set the daemon runs and how its last reload
//! went, so `berth status` (another process) can show it and `berth demo` can wait for a
//! reload to land.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::LoadFailure;
use super::set::{RuleSet, short};

pub const STATUS_FILE: &str = "rules-status.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesStatus {
    /// sha256 of the active set's files.
    pub active_hash: String,
    /// `embedded defaults` or the rules root.
    pub active_source: String,
    pub active_since: String,
    pub last_reload: ReloadRecord,
}

/// The last attempt to load a set: at start, or after a change under the rules root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadRecord {
    pub at: String,
    pub ok: bool,
    /// The hash of the files that were tried, when they could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Every error, one per line, each starting `file:line:col`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RulesStatus {
    /// The status of a daemon that just loaded `set`.
    pub fn started(set: &RuleSet) -> RulesStatus {
        let now = crate::clock::now_iso();
        RulesStatus {
            active_hash: set.hash().to_owned(),
            active_source: set.describe_source(),
            active_since: now.clone(),
            last_reload: ReloadRecord {
                at: now,
                ok: true,
                hash: Some(set.hash().to_owned()),
                error: None,
            },
        }
    }

    /// After a reload that swapped `set` in (or found it already active).
    pub fn swapped(&mut self, set: &RuleSet) {
        let now = crate::clock::now_iso();
        if self.active_hash != set.hash() {
            self.active_since = now.clone();
        }
        self.active_hash = set.hash().to_owned();
        self.active_source = set.describe_source();
        self.last_reload = ReloadRecord {
            at: now,
            ok: true,
            hash: Some(set.hash().to_owned()),
            error: None,
        };
    }

    /// After a reload that was refused; the active set stays.
    pub fn refused(&mut self, failure: &LoadFailure) {
        self.last_reload = ReloadRecord {
            at: crate::clock::now_iso(),
            ok: false,
            hash: failure.hash.clone(),
            error: Some(failure.to_string()),
        };
    }

    pub fn path(berth_dir: &Path) -> PathBuf {
        berth_dir.join(STATUS_FILE)
    }

    /// `None` when no daemon has written one in this state dir.
    pub fn read(berth_dir: &Path) -> io::Result<Option<RulesStatus>> {
        let text = match crate::hostile_file::read_regular_string(&Self::path(berth_dir), 1 << 20) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn write(&self, berth_dir: &Path) -> io::Result<()> {
        crate::atomic_file::ensure_private_dir(berth_dir)?;
        let mut text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        text.push('\n');
        crate::atomic_file::write_atomic(&Self::path(berth_dir), text.as_bytes(), 0o600)
    }

    /// `rules: <hash12> (<source>), last reload: ok at T` or
    /// `…, last reload: failed at T: file:line:col message`.
    pub fn line(&self) -> String {
        let result = match (&self.last_reload.ok, &self.last_reload.error) {
            (true, _) => format!("ok at {}", self.last_reload.at),
            (false, error) => format!(
                "failed at {}: {}",
                self.last_reload.at,
                error
                    .as_deref()
                    .unwrap_or("(no message)")
                    .replace('\n', "; ")
            ),
        };
        format!(
            "rules: {} ({}), last reload: {result}",
            short(&self.active_hash),
            self.active_source
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_as_one_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RulesStatus::read(dir.path()).unwrap(), None);
        let mut status = RulesStatus {
            active_hash: "0123456789abcdef".into(),
            active_source: "embedded defaults".into(),
            active_since: "2026-01-01T00:00:00.000Z".into(),
            last_reload: ReloadRecord {
                at: "2026-01-01T00:00:00.000Z".into(),
                ok: true,
                hash: None,
                error: None,
            },
        };
        assert_eq!(
            status.line(),
            "rules: 0123456789ab (embedded defaults), last reload: ok at 2026-01-01T00:00:00.000Z"
        );
        status.refused(&LoadFailure::single(super::super::LoadError::Syntax {
            at: super::super::Location {
                file: "policies/landing.rhai".into(),
                line: Some(3),
                col: Some(9),
            },
            message: "Expecting ')'".into(),
        }));
        status.write(dir.path()).unwrap();
        let back = RulesStatus::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, status);
        assert!(
            back.line().contains("failed at 20")
                && back
                    .line()
                    .ends_with(": policies/landing.rhai:3:9: syntax error: Expecting ')'"),
            "{}",
            back.line()
        );
    }
}
