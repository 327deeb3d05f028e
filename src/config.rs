//! Daemon configuration: a TOML file an operator writes by hand, every key optional.
//!
//! Unknown keys are refused (a typo must not silently fall back to a default), and every
//! error names the file, the key and the reason.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lane_lock::LONGEST_TTL;
use crate::rules::contracts::landing::MAX_LANES_CAP;
use crate::runner::CommandTemplate;

/// Which service proves that a PR merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// GitHub through the `gh` CLI.
    Gh,
    /// Plain git: a PR is its feature branch; merged when reachable from the base.
    Git,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// argv template of the landing command (`{pr}`, `{branch}`, `{base}`, `{repo}`,
    /// `{worktree}`, `{log}`).
    pub land_command: CommandTemplate,
    /// argv template of the ship command run once on a drift signature.
    pub ship_command: CommandTemplate,
    pub forge: ForgeKind,
    /// The `gh` program (a path, or a name looked up on `PATH`).
    pub gh_program: String,
    pub lock_ttl_secs: u64,
    pub heartbeat_secs: u64,
    pub poll_secs: u64,
    pub land_timeout_secs: u64,
    pub forge_timeout_secs: u64,
    pub remote_timeout_secs: u64,
    /// How often one blocked record is re-checked against the forge.
    pub reconcile_every_secs: u64,
    /// How many lanes may land at once.
    pub max_lanes: usize,
    /// Where the orchestrators' run state files are (detectors read `*.json` directly in
    /// it); default `~/.gstack/build-state/`.
    pub build_state_dir: Option<PathBuf>,
    /// The halt-events dir (and `learned-patterns.json`); default `~/.gstack/skill-faults/`.
    pub faults_dir: Option<PathBuf>,
    /// Repos whose queued PRs are discovered every tick, even with no local record (gated
    /// like a record's `repoPath`); the project root is always one of them.
    pub repos: Vec<String>,
    /// Roots under which a record's repo may live, besides gstack's `$HOME` defaults,
    /// `GSTACK_DAEMON_REPO_ALLOWLIST` and the project root (each repo in `repos` is
    /// allowed too). Absolute paths.
    pub allowed_roots: Vec<PathBuf>,
}

fn template(argv: &[&str]) -> CommandTemplate {
    CommandTemplate::parse(argv.iter().map(|a| a.to_string()).collect())
        .expect("the built-in templates use only known placeholders")
}

impl Default for Config {
    fn default() -> Config {
        Config {
            land_command: template(&["gstack", "land", "--pr", "{pr}", "--base", "{base}"]),
            ship_command: template(&["gstack", "ship", "--pr", "{pr}"]),
            forge: ForgeKind::Gh,
            gh_program: "gh".into(),
            lock_ttl_secs: 2 * 3600,
            heartbeat_secs: 15 * 60,
            poll_secs: 60,
            land_timeout_secs: 3600,
            forge_timeout_secs: 30,
            remote_timeout_secs: 30,
            reconcile_every_secs: 600,
            max_lanes: 1,
            build_state_dir: None,
            faults_dir: None,
            repos: Vec::new(),
            allowed_roots: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Invalid { path: PathBuf, source: Invalid },
    /// A TOML error, where it is: `config <path>:<line>:<col>: <message>`, one line.
    #[error("config {}:{line}:{col}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
}

/// A value the configuration may not have, and the bound it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("lock_ttl_secs ({0}) must be at most {MAX_LOCK_TTL_SECS} (365 days)")]
    LockTtl(u64),
    #[error(
        "heartbeat_secs ({heartbeat_secs}) must be positive and shorter than lock_ttl_secs ({lock_ttl_secs})"
    )]
    Heartbeat {
        heartbeat_secs: u64,
        lock_ttl_secs: u64,
    },
    #[error(
        "heartbeat_secs ({heartbeat_secs}) must be at most half of lock_ttl_secs ({lock_ttl_secs}) minus the lease margin ({:.2}s), {:.2}s, so one failed refresh does not stop a landing",
        .margin.as_secs_f64(), .lease.as_secs_f64() / 2.0
    )]
    HeartbeatPastLease {
        heartbeat_secs: u64,
        lock_ttl_secs: u64,
        margin: Duration,
        lease: Duration,
    },
    #[error("allowed_roots entry {} is not an absolute path", .0.display())]
    RelativeRoot(PathBuf),
    #[error("max_lanes must be at least 1")]
    NoLanes,
    #[error("max_lanes ({0}) must be at most {MAX_LANES_CAP}")]
    TooManyLanes(usize),
}

impl ConfigError {
    fn syntax(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
        let at = error.span().map_or(0, |span| span.start).min(text.len());
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            col,
            message: error
                .message()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// The longest `lock_ttl_secs` a file may give: past it the file is refused. Up to it, a
/// TTL above [`LONGEST_TTL`] is used as that ([`Clamped::LockTtl`]).
pub const MAX_LOCK_TTL_SECS: u64 = 365 * 24 * 3600;

impl Config {
    /// Reads `path`; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_keys(path).map(|(config, _)| config)
    }

    /// [`Config::load`], and the keys the file itself sets (read once: what `config show`
    /// says came from the file is what this load parsed).
    pub fn load_with_keys(path: Option<&Path>) -> Result<(Config, BTreeSet<String>), ConfigError> {
        Config::load_all(path).map(|(config, keys, _)| (config, keys))
    }

    /// [`Config::load`], with what it lowered (also logged): `berth doctor` warns of it.
    pub fn load_with_clamps(path: Option<&Path>) -> Result<(Config, Vec<Clamped>), ConfigError> {
        Config::load_all(path).map(|(config, _, clamped)| (config, clamped))
    }

    fn load_all(
        path: Option<&Path>,
    ) -> Result<(Config, BTreeSet<String>, Vec<Clamped>), ConfigError> {
        let Some(path) = path else {
            return Ok((Config::default(), BTreeSet::new(), Vec::new()));
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let syntax = |e: toml::de::Error| ConfigError::syntax(path, &text, &e);
        let mut config: Config = toml::from_str(&text).map_err(syntax)?;
        let keys = text.parse::<toml::Table>().map_err(syntax)?.into_iter();
        config.validate().map_err(|source| ConfigError::Invalid {
            path: path.to_owned(),
            source,
        })?;
        let clamped = config.clamp_to_longest_ttl();
        for clamped in &clamped {
            tracing::warn!(
                config = %path.display(),
                field = clamped.field(),
                "config {}: {clamped}",
                path.display()
            );
        }
        Ok((config, keys.map(|(key, _)| key).collect(), clamped))
    }

    /// The halt-events dir: `faults_dir`, else gstack's `~/.gstack/skill-faults/`.
    pub fn faults_dir_or_default(&self) -> PathBuf {
        self.faults_dir
            .clone()
            .unwrap_or_else(crate::paths::default_faults_dir)
    }

    fn validate(&self) -> Result<(), Invalid> {
        // A lock's `expiresAt` is its write time plus the TTL, in a calendar that ends.
        if self.lock_ttl_secs > MAX_LOCK_TTL_SECS {
            return Err(Invalid::LockTtl(self.lock_ttl_secs));
        }
        if self.lock_ttl_secs == 0
            || self.heartbeat_secs == 0
            || self.heartbeat_secs >= self.lock_ttl_secs
        {
            return Err(Invalid::Heartbeat {
                heartbeat_secs: self.heartbeat_secs,
                lock_ttl_secs: self.lock_ttl_secs,
            });
        }
        // The step's lease ends `margin` before the lock would expire: two refreshes must
        // fit in it, so one failed refresh does not stop a landing.
        let ttl = Duration::from_secs(self.lock_ttl_secs);
        if self.heartbeat_secs > longest_heartbeat_secs(ttl) {
            let margin = crate::runner::lease_margin(ttl);
            return Err(Invalid::HeartbeatPastLease {
                heartbeat_secs: self.heartbeat_secs,
                lock_ttl_secs: self.lock_ttl_secs,
                margin,
                lease: ttl.saturating_sub(margin),
            });
        }
        if let Some(relative) = self.allowed_roots.iter().find(|p| !p.is_absolute()) {
            return Err(Invalid::RelativeRoot(relative.clone()));
        }
        if self.max_lanes == 0 {
            return Err(Invalid::NoLanes);
        }
        // The max_lanes contract caps a rule's answer there; the shipped rule answers this.
        if self.max_lanes > MAX_LANES_CAP {
            return Err(Invalid::TooManyLanes(self.max_lanes));
        }
        Ok(())
    }

    /// Holds a valid configuration's lock TTL to [`LONGEST_TTL`] (and its heartbeat to
    /// what fits that TTL's lease), saying what it changed. A file written when berth took
    /// longer TTLs still starts, and no lease of this berth outlives what a contender
    /// believes of its lock.
    fn clamp_to_longest_ttl(&mut self) -> Vec<Clamped> {
        let mut clamped = Vec::new();
        let longest = LONGEST_TTL.as_secs();
        if self.lock_ttl_secs > longest {
            clamped.push(Clamped::LockTtl {
                asked: self.lock_ttl_secs,
            });
            self.lock_ttl_secs = longest;
        }
        let heartbeat = longest_heartbeat_secs(self.lock_ttl());
        if self.heartbeat_secs > heartbeat {
            clamped.push(Clamped::Heartbeat {
                asked: self.heartbeat_secs,
                used: heartbeat,
            });
            self.heartbeat_secs = heartbeat;
        }
        clamped
    }

    pub fn lock_ttl(&self) -> Duration {
        Duration::from_secs(self.lock_ttl_secs)
    }
}

/// The longest `heartbeat_secs` for a lock of `ttl`: two refreshes fit in the step's
/// lease, which ends the lease margin before the lock would expire.
fn longest_heartbeat_secs(ttl: Duration) -> u64 {
    (ttl.saturating_sub(crate::runner::lease_margin(ttl)) / 2).as_secs()
}

/// A value of a valid file that berth uses lowered, and why (logged as a warning naming
/// the file and the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamped {
    /// `lock_ttl_secs` above [`LONGEST_TTL`]: used as that.
    LockTtl { asked: u64 },
    /// `heartbeat_secs` too long for the lowered TTL's lease: used as `used`.
    Heartbeat { asked: u64, used: u64 },
}

impl Clamped {
    /// The configuration key lowered.
    pub fn field(&self) -> &'static str {
        match self {
            Clamped::LockTtl { .. } => "lock_ttl_secs",
            Clamped::Heartbeat { .. } => "heartbeat_secs",
        }
    }
}

impl std::fmt::Display for Clamped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let longest = LONGEST_TTL.as_secs();
        match self {
            Clamped::LockTtl { asked } => write!(
                f,
                "lock_ttl_secs ({asked}) is above {longest}, gstack's 2 h TTL and the longest any berth believes a lane lock's holder writes: using {longest}, so a paused landing's lease ends before another berth may judge its lock expired"
            ),
            Clamped::Heartbeat { asked, used } => write!(
                f,
                "heartbeat_secs ({asked}) is above {used}, half of the lease of lock_ttl_secs {longest}: using {used}"
            ),
        }
    }
}

/// Which configuration file a command reads, and why that one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`.
    Flag(PathBuf),
    /// `BERTH_CONFIG=FILE`.
    Env(PathBuf),
    /// `$XDG_CONFIG_HOME/berth/config.toml` (or `~/.config/berth/config.toml`), present.
    Discovered(PathBuf),
    /// No file: every value is its default.
    Defaults,
}

impl ConfigSource {
    /// `--config` wins, then `BERTH_CONFIG`, then the user's config file when it exists.
    pub fn locate(flag: Option<&Path>) -> ConfigSource {
        if let Some(path) = flag {
            return ConfigSource::Flag(path.to_owned());
        }
        if let Some(path) = std::env::var_os("BERTH_CONFIG").filter(|v| !v.is_empty()) {
            return ConfigSource::Env(PathBuf::from(path));
        }
        match user_config_path() {
            // `symlink_metadata`: a dangling link is still "present" and fails loudly on read.
            Some(path) if path.symlink_metadata().is_ok() => ConfigSource::Discovered(path),
            _ => ConfigSource::Defaults,
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::Flag(p) | ConfigSource::Env(p) | ConfigSource::Discovered(p) => Some(p),
            ConfigSource::Defaults => None,
        }
    }

    /// `/x/berth.toml (--config)`, `… (BERTH_CONFIG)`, `… (found at the user config path)`,
    /// or `none (defaults; <path> not present)`.
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::Flag(p) => format!("{} (--config)", p.display()),
            ConfigSource::Env(p) => format!("{} (BERTH_CONFIG)", p.display()),
            ConfigSource::Discovered(p) => {
                format!("{} (found at the user config path)", p.display())
            }
            ConfigSource::Defaults => match user_config_path() {
                Some(p) => format!("none (built-in defaults; {} not present)", p.display()),
                None => "none (built-in defaults; no $XDG_CONFIG_HOME or $HOME)".into(),
            },
        }
    }

    /// The file an operator edits to change a setting: the one read, else the user config
    /// path berth would find.
    pub fn file_to_edit(&self) -> String {
        match self.path().map(Path::to_path_buf).or_else(user_config_path) {
            Some(path) => path.display().to_string(),
            None => "$XDG_CONFIG_HOME/berth/config.toml".into(),
        }
    }
}

/// `$XDG_CONFIG_HOME/berth/config.toml`, else `~/.config/berth/config.toml`.
pub fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        // The XDG spec: a relative value is invalid and must be ignored.
        .filter(|p| p.is_absolute())
        .or_else(|| crate::paths::home_dir().map(|home| home.join(".config")))?;
    Some(base.join("berth").join("config.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_a_file_sets_come_from_the_same_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "max_lanes = 2\nforge = \"git\"\n").unwrap();
        let (config, keys) = Config::load_with_keys(Some(&path)).unwrap();
        assert_eq!(config.max_lanes, 2);
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["forge", "max_lanes"]);
        let (_, none) = Config::load_with_keys(None).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "max_lanes = 2\nland_comand = [\"x\"]\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("berth.toml"), "{err}");
        assert!(err.contains("land_comand"), "{err}");
        assert!(err.contains("berth.toml:2:1: "), "{err}");
        std::fs::write(&path, "poll_secs = \n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            !err.contains('\n') && err.contains("berth.toml:1:"),
            "{err}"
        );
        std::fs::write(&path, "heartbeat_secs = 10\nlock_ttl_secs = 5\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("shorter than lock_ttl_secs"), "{err}");
        std::fs::write(&path, "heartbeat_secs = 7199\nlock_ttl_secs = 7200\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("berth.toml") && err.contains("heartbeat_secs (7199)"),
            "{err}"
        );
        assert!(err.contains("lease margin"), "{err}");
        std::fs::write(&path, "heartbeat_secs = 3597\nlock_ttl_secs = 7200\n").unwrap();
        Config::load(Some(&path)).unwrap();
        std::fs::write(&path, "forge = \"git\"\nmax_lanes = 3\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(
            (config.forge, config.max_lanes, config.poll_secs),
            (ForgeKind::Git, 3, 60)
        );
    }

    /// A file from when berth took TTLs up to 365 days still loads, its TTL lowered to the
    /// 2 h every contender believes (and its heartbeat to what fits that lease), each
    /// change named; what was refused before is refused still.
    #[test]
    fn a_lock_ttl_above_two_hours_is_used_as_two_hours_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "lock_ttl_secs = 21600\nheartbeat_secs = 7000\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!((config.lock_ttl_secs, config.heartbeat_secs), (7200, 3597));
        let mut asked: Config = toml::from_str("lock_ttl_secs = 21600\n").unwrap();
        let clamped = asked.clamp_to_longest_ttl();
        assert_eq!(clamped, [Clamped::LockTtl { asked: 21600 }]);
        assert_eq!((asked.lock_ttl_secs, asked.heartbeat_secs), (7200, 900));
        let said = clamped[0].to_string();
        assert!(
            said.starts_with("lock_ttl_secs (21600) is above 7200"),
            "{said}"
        );
        let mut kept = Config::default();
        assert_eq!(kept.clamp_to_longest_ttl(), []);
        let said = Clamped::Heartbeat {
            asked: 7000,
            used: 3597,
        }
        .to_string();
        assert!(
            said.starts_with("heartbeat_secs (7000) is above 3597"),
            "{said}"
        );
        for refused in [
            "lock_ttl_secs = 31536001\n",
            "lock_ttl_secs = 21600\nheartbeat_secs = 15000\n",
        ] {
            std::fs::write(&path, refused).unwrap();
            let err = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(
                err.contains("berth.toml") && err.contains("lock_ttl_secs"),
                "{err}"
            );
        }
    }
}
