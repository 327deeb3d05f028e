//! The daemon on a berth dir as another process sees it: the instance lock says whether it
//! runs, the health file what it last did.

use std::path::Path;

use serde_json::{Value, json};

use crate::instance::Holder;
use crate::telemetry::Health;

pub struct DaemonView {
    pub running: std::io::Result<Option<Holder>>,
    pub health: std::io::Result<Option<Health>>,
}

impl DaemonView {
    pub fn read(berth_dir: &Path) -> DaemonView {
        DaemonView {
            running: crate::instance::running(berth_dir),
            health: Health::read(berth_dir),
        }
    }

    /// `status --json`'s `daemon`: `{"running", "pid", "mode", "since", "health"}`.
    pub fn as_json(&self) -> Value {
        let running = match &self.running {
            Ok(Some(holder)) => {
                json!({"running": true, "pid": holder.pid, "mode": holder.mode, "since": holder.since})
            }
            Ok(None) => json!({"running": false}),
            Err(e) => json!({"running": Value::Null, "error": e.to_string()}),
        };
        let mut value = running;
        value["health"] = match &self.health {
            Ok(Some(health)) => serde_json::to_value(health).unwrap_or(Value::Null),
            Ok(None) => Value::Null,
            Err(e) => json!({"error": e.to_string()}),
        };
        value
    }

    /// `daemon: running …` (or not), then its last tick and the forge's last answer.
    pub fn lines(&self, berth_dir: &Path) -> String {
        let mut out = match &self.running {
            Ok(Some(holder)) => format!("daemon: running, {holder}\n"),
            Ok(None) => format!("daemon: not running on {}\n", berth_dir.display()),
            Err(e) => format!(
                "daemon: unknown, cannot read {}: {e}\n",
                crate::instance::lock_path(berth_dir).display()
            ),
        };
        match &self.health {
            Ok(Some(health)) => {
                let suffix = match &self.running {
                    Ok(Some(h)) if h.pid == health.pid => String::new(),
                    _ => format!(" (the last daemon here, pid {})", health.pid),
                };
                out.push_str(&format!("{}{suffix}\n", health.tick_line()));
                out.push_str(&format!("{}\n", health.forge_line()));
            }
            Ok(None) => {}
            Err(e) => out.push_str(&format!(
                "health: {} unreadable: {e}\n",
                Health::path(berth_dir).display()
            )),
        }
        out
    }
}
