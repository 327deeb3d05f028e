//! `berth install` / `berth uninstall`: a per-user service that runs `berth run --watch`,
//! as a systemd user unit (Linux) or a launchd agent (macOS).
//!
//! One service per berth dir: the name is derived from the berth dir, the berth dir is
//! recorded in the file (`BERTH_DIR` in its environment), and an install that would
//! replace a service of another berth dir (two dirs whose names fold together) is refused
//! naming it, unless forced. Everything the daemon needs is explicit in the file: the
//! binary's absolute path, `run --watch` with the config, queue dir and project root, and
//! `PATH`/`HOME`, because a service manager starts it with an almost empty environment.

pub mod launchd;
pub mod systemd;

use std::path::{Path, PathBuf};

/// Which service manager a unit is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// A systemd user unit under `~/.config/systemd/user/` (Linux).
    Systemd,
    /// A launchd agent under `~/Library/LaunchAgents/` (macOS).
    Launchd,
}

impl Platform {
    /// The platform of this machine.
    pub fn native() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::Launchd
        } else {
            Platform::Systemd
        }
    }
}

/// What the service runs, all paths absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub binary: PathBuf,
    pub berth_dir: PathBuf,
    pub queue_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub project_root: Option<PathBuf>,
    pub rules_root: Option<PathBuf>,
    /// Roots the installing shell allowed (its environment's), as `--allowed-root`.
    pub allowed_roots: Vec<PathBuf>,
    pub metrics_addr: Option<String>,
    pub home: PathBuf,
    /// `PATH` for the daemon and its landing commands (see [`service_path`]).
    pub path: String,
}

impl ServiceSpec {
    /// `berth run --watch …`: the program and its arguments.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.binary.display().to_string(),
            "run".into(),
            "--watch".into(),
            "--queue-dir".into(),
            self.queue_dir.display().to_string(),
            "--berth-dir".into(),
            self.berth_dir.display().to_string(),
        ];
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                argv.push(name.into());
                argv.push(value);
            }
        };
        flag(
            "--config",
            self.config.as_ref().map(|p| p.display().to_string()),
        );
        flag(
            "--project-root",
            self.project_root.as_ref().map(|p| p.display().to_string()),
        );
        flag(
            "--rules-root",
            self.rules_root.as_ref().map(|p| p.display().to_string()),
        );
        flag("--metrics-addr", self.metrics_addr.clone());
        for root in &self.allowed_roots {
            flag("--allowed-root", Some(root.display().to_string()));
        }
        argv
    }

    /// The environment the service sets: `PATH`, `HOME`, and `BERTH_DIR` (which also
    /// records which berth dir the file belongs to).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PATH", self.path.clone()),
            ("HOME", self.home.display().to_string()),
            ("BERTH_DIR", self.berth_dir.display().to_string()),
        ]
    }

    /// The service's name: `berth` for the default berth dir, else `berth-<dir>` with the
    /// dir relative to `$HOME` folded by `safe_key` (so a name never holds a separator).
    pub fn name(&self) -> String {
        service_name(&self.berth_dir, &self.home)
    }
}

pub fn service_name(berth_dir: &Path, home: &Path) -> String {
    if berth_dir == home.join(".gstack/berth") {
        return "berth".into();
    }
    let shown = berth_dir.strip_prefix(home).unwrap_or(berth_dir);
    let key = crate::safe_key::safe_key(&shown.display().to_string());
    format!("berth-{}", key.trim_start_matches('.'))
}

/// `PATH` for a service: the usual tool dirs (Homebrew, `/usr/local`, `~/.local/bin`,
/// `~/.cargo/bin`), then the `PATH` of the install, then the system dirs; absolute entries
/// only, each once, in that order.
pub fn service_path(inherited: &str, home: &Path) -> String {
    let home_dir = |rel: &str| home.join(rel).display().to_string();
    let mut entries: Vec<String> = [
        "/opt/homebrew/bin",
        "/opt/homebrew/sbin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ]
    .map(String::from)
    .to_vec();
    entries.push(home_dir(".local/bin"));
    entries.push(home_dir(".cargo/bin"));
    entries.extend(std::env::split_paths(inherited).map(|p| p.display().to_string()));
    entries.extend(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(String::from));
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|e| e.starts_with('/') && seen.insert(e.clone()))
        .collect::<Vec<_>>()
        .join(":")
}

/// The file a platform's service lives in, and what it holds.
pub struct UnitFile {
    pub path: PathBuf,
    pub text: String,
    /// e.g. `systemctl --user daemon-reload && systemctl --user enable --now berth`.
    pub start_hint: String,
    pub stop_hint: String,
}

/// The file for `spec` on `platform` (not written).
pub fn unit_for(spec: &ServiceSpec, platform: Platform) -> UnitFile {
    match platform {
        Platform::Systemd => systemd::unit(spec),
        Platform::Launchd => launchd::agent(spec),
    }
}

/// Where `name`'s file lives on `platform` for a user whose home is `home`.
pub fn unit_path(platform: Platform, name: &str, home: &Path) -> PathBuf {
    match platform {
        Platform::Systemd => systemd::unit_path(name, home),
        Platform::Launchd => launchd::agent_path(name, home),
    }
}

/// The berth dir recorded in an installed file, if it is one of berth's.
pub fn recorded_berth_dir(platform: Platform, text: &str) -> Option<PathBuf> {
    match platform {
        Platform::Systemd => systemd::recorded_berth_dir(text),
        Platform::Launchd => launchd::recorded_berth_dir(text),
    }
}

/// The program an installed file runs, if it is one of berth's.
pub fn recorded_binary(platform: Platform, text: &str) -> Option<PathBuf> {
    match platform {
        Platform::Systemd => systemd::recorded_binary(text),
        Platform::Launchd => launchd::recorded_binary(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_berth_dir_and_paths_are_absolute_and_unique() {
        let home = Path::new("/home/me");
        assert_eq!(service_name(&home.join(".gstack/berth"), home), "berth");
        assert_eq!(
            service_name(&home.join("state/night shift"), home),
            "berth-state-night-shift"
        );
        assert_eq!(
            service_name(Path::new("/srv/berth"), home),
            "berth-srv-berth"
        );
        assert_eq!(
            service_path("/usr/bin:relative:/opt/tools:/usr/local/bin:", home),
            "/opt/homebrew/bin:/opt/homebrew/sbin:/usr/local/bin:/usr/local/sbin:\
             /home/me/.local/bin:/home/me/.cargo/bin:/usr/bin:/opt/tools:/bin:/usr/sbin:/sbin"
        );
    }
}
