//! `<berth_dir>/daemon-health.json`: what the running daemon last did, written atomically
//! after every tick so `berth status` and `berth doctor` (other processes) can show it.
//! Whether the daemon is still alive is not in this file: that is the instance lock's job
//! (a crashed daemon leaves its last health behind).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const HEALTH_FILE: &str = "daemon-health.json";

/// Larger than any health file berth writes by far; a bigger one is not berth's.
const MAX_HEALTH_BYTES: u64 = 64 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub mode: String,
    pub forge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick: Option<TickReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_forge_answer: Option<ForgeAnswer>,
    /// The last SIGHUP's re-read of the configuration file; none before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_config_reload: Option<ConfigReload>,
}

/// One SIGHUP's re-read of the configuration file: when, and whether it loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReload {
    pub at: String,
    /// False when the file did not load and the running configuration stayed.
    pub ok: bool,
    /// What was applied and what waits for a restart, or why the file was refused.
    pub detail: String,
}

/// One tick: when it ended, how long it took, and what it came to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TickReport {
    pub at: String,
    pub duration_ms: u64,
    pub ok: bool,
    /// e.g. `ok: 1 reconciled, 0 reclaimed, 0 discovered, 2 blocked at the gates`.
    pub result: String,
}

/// The forge's last answer: which call, about what, when, and whether it answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForgeAnswer {
    pub at: String,
    pub call: String,
    pub repo: String,
    pub ok: bool,
    /// The error, when the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    pub fn path(berth_dir: &Path) -> PathBuf {
        berth_dir.join(HEALTH_FILE)
    }

    /// `None` when no daemon ever reported in this berth dir.
    pub fn read(berth_dir: &Path) -> io::Result<Option<Health>> {
        use std::io::Read;
        let file = match crate::atomic_file::open_read_nofollow(&Self::path(berth_dir)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        file.take(MAX_HEALTH_BYTES).read_to_string(&mut text)?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn write(&self, berth_dir: &Path) -> io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        text.push('\n');
        crate::atomic_file::write_atomic(&Self::path(berth_dir), text.as_bytes(), 0o600)
    }

    /// `last tick: <at> (<ms> ms): <result>` or `no tick yet`.
    pub fn tick_line(&self) -> String {
        match &self.last_tick {
            Some(t) => format!("last tick: {} ({} ms): {}", t.at, t.duration_ms, t.result),
            None => "last tick: none yet".into(),
        }
    }

    /// `forge: <call> <repo> at <at>: ok` or `…: failed: <error>`.
    pub fn forge_line(&self) -> String {
        match &self.last_forge_answer {
            Some(a) => format!(
                "forge ({}): last answer {} {} at {}: {}",
                self.forge,
                a.call,
                a.repo,
                a.at,
                match &a.error {
                    None => "ok".to_owned(),
                    Some(e) => format!("failed: {}", e.replace('\n', " ")),
                }
            ),
            None => format!("forge ({}): not asked yet", self.forge),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Health::read(dir.path()).unwrap(), None);
        let health = Health {
            pid: 7,
            version: "0.1.0".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            mode: "watch".into(),
            forge: "gh".into(),
            last_tick: Some(TickReport {
                at: "2026-01-01T00:00:01.000Z".into(),
                duration_ms: 12,
                ok: true,
                result: "ok".into(),
            }),
            last_forge_answer: Some(ForgeAnswer {
                at: "2026-01-01T00:00:01.000Z".into(),
                call: "list_queued".into(),
                repo: "github.com/a/b".into(),
                ok: false,
                error: Some("gh: timed out".into()),
            }),
            last_config_reload: Some(ConfigReload {
                at: "2026-01-01T00:00:02.000Z".into(),
                ok: false,
                detail: "config /x: TOML parse error at line 2, column 5".into(),
            }),
        };
        health.write(dir.path()).unwrap();
        assert_eq!(Health::read(dir.path()).unwrap(), Some(health.clone()));
        assert_eq!(
            health.forge_line(),
            "forge (gh): last answer list_queued github.com/a/b at 2026-01-01T00:00:01.000Z: failed: gh: timed out"
        );
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(Health::path(dir.path()), Health::path(other.path())).unwrap();
        assert!(Health::read(other.path()).is_err());
    }
}
