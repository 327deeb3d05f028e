//! `berth install` / `berth uninstall`: the per-user service that runs `berth run --watch`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::{Context, Outcome};
use crate::config::Config;
use crate::service::{self, Platform, ServiceSpec};

/// The service files berth writes are a few KB; a larger file at that path is not ours.
const MAX_UNIT_BYTES: u64 = 256 * 1024;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  berth install --print                      # show the unit, write nothing
  berth install --config ~/berth.toml --metrics-addr 127.0.0.1:9464
  systemctl --user daemon-reload && systemctl --user enable --now berth")]
pub struct InstallArgs {
    #[command(flatten)]
    pub repos: super::RepoArgs,
    /// Print the service file and where it would go; write nothing.
    #[arg(long)]
    pub print: bool,
    /// Replace a service file that belongs to another berth dir (or was not written by berth).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    /// A rules root for the service (recorded as `--rules-root`).
    #[arg(long, env = "BERTH_RULES_ROOT", value_name = "DIR")]
    pub rules_root: Option<PathBuf>,
    /// Have the service serve Prometheus metrics on `HOST:PORT`.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

/// Which service: the berth dir it runs on, and the platform.
#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    /// The berth dir the service runs on; it also names the service.
    #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
    pub berth_dir: Option<PathBuf>,
    /// `systemd` (a user unit) or `launchd` (a user agent); default: this machine's.
    #[arg(long, value_enum, value_name = "PLATFORM")]
    pub platform: Option<Platform>,
}

impl TargetArgs {
    fn platform(&self) -> Platform {
        self.platform.unwrap_or_else(Platform::native)
    }

    fn berth_dir(&self) -> anyhow::Result<PathBuf> {
        absolute(
            &self
                .berth_dir
                .clone()
                .unwrap_or_else(crate::paths::default_berth_dir),
        )
    }
}

#[derive(clap::Args, Debug)]
pub struct UninstallArgs {
    /// Remove the file even if it belongs to another berth dir.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

fn home() -> anyhow::Result<PathBuf> {
    crate::paths::home_dir().context("HOME is not set; the service needs a home directory")
}

pub fn install(ctx: &Context, args: &InstallArgs) -> anyhow::Result<Outcome> {
    let config = match ctx.config_source.path() {
        Some(path) => {
            // A config the daemon would refuse is refused now, not at the service's start.
            Config::load(Some(path))?;
            Some(absolute(path)?)
        }
        None => None,
    };
    let home = home()?;
    let spec = ServiceSpec {
        binary: std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .context("cannot find berth's own binary")?,
        berth_dir: args.target.berth_dir()?,
        queue_dir: absolute(ctx.store.dir())?,
        config,
        project_root: ctx.project_root.as_deref().map(absolute).transpose()?,
        rules_root: args.rules_root.as_deref().map(absolute).transpose()?,
        allowed_roots: shell_allowed_roots(ctx),
        metrics_addr: args.metrics_addr.clone(),
        path: service::service_path(&std::env::var("PATH").unwrap_or_default(), &home),
        home,
    };
    let unit = service::unit_for(&spec, args.target.platform());
    if args.print {
        println!("# {}", unit.path.display());
        print!("{}", unit.text);
        return Ok(Outcome::Clean);
    }
    refuse_foreign(
        args.target.platform(),
        &unit.path,
        &spec.berth_dir,
        args.force,
    )?;
    let dir = unit.path.parent().expect("a unit path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::atomic_file::write_atomic(&unit.path, unit.text.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", unit.path.display()))?;
    println!("Installed {}", unit.path.display());
    println!("Start it:  {}", unit.start_hint);
    println!("Stop it:   {}", unit.stop_hint);
    Ok(Outcome::Clean)
}

/// The roots this shell allows beyond the config and the project root (gstack's `$HOME`
/// defaults, `GSTACK_DAEMON_REPO_ALLOWLIST`, `--allowed-root`), recorded in the unit as
/// `--allowed-root` so the service, started with none of this environment, allows them too.
fn shell_allowed_roots(ctx: &Context) -> Vec<PathBuf> {
    let (mut shell, _) = crate::gates::Allowlist::from_env(None);
    shell.extend(
        "--allowed-root",
        ctx.allowed_roots.iter().map(PathBuf::as_path),
    );
    shell.prefixes().to_vec()
}

pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<Outcome> {
    let berth_dir = args.target.berth_dir()?;
    let home = home()?;
    let platform = args.target.platform();
    let path = service::unit_path(platform, &service::service_name(&berth_dir, &home), &home);
    if path.symlink_metadata().is_err() {
        println!(
            "No berth service for {} at {}",
            berth_dir.display(),
            path.display()
        );
        return Ok(Outcome::Clean);
    }
    refuse_foreign(platform, &path, &berth_dir, args.force)?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    println!("Removed {}", path.display());
    Ok(Outcome::Clean)
}

/// An existing file at `path` that is not the service of `berth_dir` is left alone unless
/// `force`: two berth dirs whose names fold together must not silently take each other's
/// service.
fn refuse_foreign(
    platform: Platform,
    path: &Path,
    berth_dir: &Path,
    force: bool,
) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let text = match read_unit(path) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(()),
        Err(e) => anyhow::bail!(
            "{} exists but cannot be read ({e}); pass --force to replace it",
            path.display()
        ),
    };
    match service::recorded_berth_dir(platform, &text) {
        Some(recorded) if recorded == berth_dir => Ok(()),
        Some(recorded) => anyhow::bail!(
            "{} is the service of another berth dir, {}; give this one another --berth-dir, or pass --force to replace it",
            path.display(),
            recorded.display()
        ),
        None => anyhow::bail!(
            "{} exists and was not written by `berth install` (it records no BERTH_DIR); pass --force to replace it",
            path.display()
        ),
    }
}

/// The installed file's text; `None` when there is none.
pub fn read_unit(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let file = match crate::atomic_file::open_read_nofollow(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(MAX_UNIT_BYTES).read_to_string(&mut text)?;
    Ok(Some(text))
}
