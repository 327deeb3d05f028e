//! `berth config show`: the effective configuration, and where each value came from.

use std::path::Path;

use super::Context;
use super::Outcome;
use super::run::DaemonArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print every setting with its value and its origin (default, the file, a flag or an
    /// environment variable).
    #[command(after_help = "Examples:
  berth config show
  berth config show --config ./berth.toml --forge git")]
    Show {
        #[command(flatten)]
        repos: super::RepoArgs,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
}

impl ConfigCommand {
    pub fn repos(&self) -> &super::RepoArgs {
        let ConfigCommand::Show { repos, .. } = self;
        repos
    }
}

pub fn run(ctx: &Context, command: &ConfigCommand) -> anyhow::Result<Outcome> {
    let ConfigCommand::Show { daemon, .. } = command;
    let source = &ctx.config_source;
    let config = daemon.config(source)?;
    println!("# config file: {}", source.describe());
    let file_keys: toml::Table = match source.path() {
        Some(path) => std::fs::read_to_string(path)?.parse()?,
        None => toml::Table::new(),
    };
    let file_origin = source
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let paths = [
        (
            "queue_dir",
            Some(ctx.store.dir().to_path_buf()),
            "--queue-dir",
            "BERTH_QUEUE_DIR",
            ctx.queue_dir_given,
        ),
        (
            "berth_dir",
            Some(
                daemon
                    .berth_dir
                    .clone()
                    .unwrap_or_else(crate::paths::default_berth_dir),
            ),
            "--berth-dir",
            "BERTH_DIR",
            daemon.berth_dir.is_some(),
        ),
        (
            "rules_root",
            daemon.rules_root.clone(),
            "--rules-root",
            "BERTH_RULES_ROOT",
            daemon.rules_root.is_some(),
        ),
        (
            "project_root",
            ctx.project_root.clone(),
            "--project-root",
            "BERTH_PROJECT_ROOT",
            ctx.project_root_given,
        ),
    ];
    for (key, value, flag, env, given) in paths {
        let shown = match &value {
            Some(path) => toml::Value::String(path.display().to_string()).to_string(),
            None => "(none)".into(),
        };
        let origin = match (&value, given) {
            (Some(path), true) => flag_or_env(path, flag, env),
            (Some(_), false) if key == "project_root" => {
                "the git toplevel of the current directory".into()
            }
            (None, _) if key == "rules_root" => "default: the embedded rules".into(),
            _ => "default".into(),
        };
        println!("{key} = {shown}  # {origin}");
    }
    let effective = toml::Table::try_from(&config)?;
    for (key, value) in &effective {
        let origin = match key.as_str() {
            "forge" if daemon.forge.is_some() => "--forge".to_owned(),
            "max_lanes" if daemon.max_lanes.is_some() => "--max-lanes".to_owned(),
            _ if file_keys.contains_key(key) => file_origin.clone(),
            _ => "default".to_owned(),
        };
        println!("{key} = {value}  # {origin}");
    }
    for key in ["build_state_dir", "faults_dir"] {
        if !effective.contains_key(key) {
            println!("{key} = (unset)  # default: under ~/.gstack");
        }
    }
    Ok(Outcome::Clean)
}

/// A value clap took from a flag or from its environment variable.
fn flag_or_env(value: &Path, flag: &str, env: &str) -> String {
    match std::env::var_os(env) {
        Some(from_env) if Path::new(&from_env) == value => env.to_owned(),
        _ => flag.to_owned(),
    }
}
