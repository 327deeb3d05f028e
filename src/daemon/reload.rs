//! SIGHUP in `--watch`: re-read the configuration file and the rules root. What a running
//! daemon can take live (the allowed roots and the repos it discovers) is swapped in; every
//! other changed key is named in the log as taking effect on restart. A file that does not
//! load is refused on one log line naming it (with `line:col`), and the running
//! configuration stays.

use std::path::PathBuf;

use crate::config::Config;
use crate::gates::Allowlist;
use crate::rules::ReloadWatcher;

use super::Shared;

/// The keys a SIGHUP applies to a running daemon.
pub const LIVE_KEYS: [&str; 2] = ["allowed_roots", "repos"];

/// How a running daemon re-reads its configuration.
pub struct ConfigReload {
    /// The file the daemon started from; `None`: built-in defaults, nothing to re-read.
    pub path: Option<PathBuf>,
    /// The command line's overrides (`--forge`, `--max-lanes`), applied after the file.
    pub overrides: Box<dyn Fn(&mut Config) + Send + Sync>,
    /// The allowlist for a configuration: the process's own roots plus the config's.
    pub allowlist: Box<dyn Fn(&Config) -> Allowlist + Send + Sync>,
}

/// What one SIGHUP did with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigReloaded {
    /// No file to re-read, or it did not change.
    Unchanged,
    /// Loaded; the live keys that changed were applied, the others wait for a restart.
    Applied {
        live: Vec<String>,
        restart: Vec<String>,
    },
    /// The file does not load; the running configuration stays.
    Refused(String),
}

/// Handles one SIGHUP: the rules root is checked again (its watcher rebuilds the set if
/// the files changed), then the configuration.
pub fn on_hup(shared: &Shared, rules: Option<&ReloadWatcher>) -> ConfigReloaded {
    match rules {
        Some(watcher) => watcher.check(),
        None => tracing::info!("SIGHUP: the rules are the embedded defaults; nothing to reload"),
    }
    let outcome = reload_config(shared);
    match &outcome {
        ConfigReloaded::Unchanged => {
            tracing::info!("SIGHUP: configuration unchanged")
        }
        ConfigReloaded::Applied { live, restart } => {
            if !live.is_empty() {
                tracing::info!(
                    "SIGHUP: configuration reloaded; applied {}",
                    live.join(", ")
                );
            }
            if !restart.is_empty() {
                tracing::warn!(
                    "SIGHUP: {} changed in the config file but cannot change in a running daemon; restart it to apply",
                    restart.join(", ")
                );
            }
        }
        ConfigReloaded::Refused(why) => tracing::error!(
            "SIGHUP: configuration reload REFUSED, the running configuration stays: {why}"
        ),
    }
    let (ok, detail) = outcome.summary();
    shared.crew.telemetry.config_reloaded(ok, detail);
    outcome
}

impl ConfigReloaded {
    /// Whether the file loaded, and one line saying what came of it (for the health file).
    pub fn summary(&self) -> (bool, String) {
        match self {
            ConfigReloaded::Unchanged => (true, "unchanged".into()),
            ConfigReloaded::Applied { live, restart } => {
                let mut parts = Vec::new();
                if !live.is_empty() {
                    parts.push(format!("applied {}", live.join(", ")));
                }
                if !restart.is_empty() {
                    parts.push(format!("{} wait for a restart", restart.join(", ")));
                }
                (true, parts.join("; "))
            }
            ConfigReloaded::Refused(why) => (false, format!("refused: {why}")),
        }
    }
}

fn reload_config(shared: &Shared) -> ConfigReloaded {
    let Some(reload) = &shared.config_reload else {
        return ConfigReloaded::Unchanged;
    };
    let Some(path) = &reload.path else {
        return ConfigReloaded::Unchanged;
    };
    let mut next = match Config::load(Some(path)) {
        Ok(config) => config,
        // One line naming `file:line:col` (`ConfigError` never spans lines).
        Err(e) => return ConfigReloaded::Refused(e.to_string()),
    };
    (reload.overrides)(&mut next);
    let mut current = shared.running_config();
    let changed = changed_keys(&current, &next);
    if changed.is_empty() {
        return ConfigReloaded::Unchanged;
    }
    let (live, restart): (Vec<String>, Vec<String>) = changed
        .into_iter()
        .partition(|key| LIVE_KEYS.contains(&key.as_str()));
    if !live.is_empty() {
        shared.apply_live((reload.allowlist)(&next), &next.repos);
        current.allowed_roots = next.allowed_roots;
        current.repos = next.repos;
        shared.set_running_config(current);
    }
    ConfigReloaded::Applied { live, restart }
}

/// The top-level keys whose values differ.
fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (toml::Table::try_from(a), toml::Table::try_from(b)) else {
        return Vec::new();
    };
    a.keys()
        .chain(b.keys())
        .filter(|key| a.get(*key) != b.get(*key))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_the_top_level_keys_that_differ() {
        let a = Config::default();
        let b = Config {
            poll_secs: 5,
            allowed_roots: vec![PathBuf::from("/srv")],
            ..Config::default()
        };
        assert_eq!(changed_keys(&a, &b), ["allowed_roots", "poll_secs"]);
    }
}
