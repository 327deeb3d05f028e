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
        /// Print one document: `{"configFile", "settings": {"<key>": {"value", "from"}}}`
        /// (`value` null when unset).
        #[arg(long)]
        json: bool,
    },
}

/// One setting: its effective value (`None`: unset) and where it came from.
struct Setting {
    key: String,
    value: Option<toml::Value>,
    from: String,
}

impl ConfigCommand {
    pub fn repos(&self) -> &super::RepoArgs {
        let ConfigCommand::Show { repos, .. } = self;
        repos
    }
}

pub fn run(ctx: &Context, command: &ConfigCommand) -> anyhow::Result<Outcome> {
    let ConfigCommand::Show { daemon, json, .. } = command;
    let source = &ctx.config_source;
    let (config, file_keys) = daemon.config_with_keys(source)?;
    let mut settings = paths(ctx, daemon);
    settings.extend(file_settings(&config, &file_keys, source, daemon)?);
    if *json {
        let settings: serde_json::Map<String, serde_json::Value> = settings
            .into_iter()
            .map(|s| {
                let value = serde_json::to_value(&s.value)?;
                Ok((s.key, serde_json::json!({"value": value, "from": s.from})))
            })
            .collect::<anyhow::Result<_>>()?;
        let doc = serde_json::json!({"configFile": source.describe(), "settings": settings});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Outcome::Clean);
    }
    println!("# config file: {}", source.describe());
    for s in settings {
        let shown = match &s.value {
            Some(value) => value.to_string(),
            None if s.key.ends_with("_root") => "(none)".into(),
            None => "(unset)".into(),
        };
        println!("{} = {shown}  # {}", s.key, s.from);
    }
    Ok(Outcome::Clean)
}

/// The dirs that come from flags and the environment, not from the file.
fn paths(ctx: &Context, daemon: &DaemonArgs) -> Vec<Setting> {
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
    paths
        .into_iter()
        .map(|(key, value, flag, env, given)| {
            let from = match (&value, given) {
                (Some(path), true) => flag_or_env(path, flag, env),
                (Some(_), false) if key == "project_root" => {
                    "the git toplevel of the current directory".into()
                }
                (None, _) if key == "rules_root" => "default: the embedded rules".into(),
                _ => "default".into(),
            };
            Setting {
                key: key.into(),
                value: value.map(|p| toml::Value::String(p.display().to_string())),
                from,
            }
        })
        .collect()
}

/// Every key of the configuration: from a flag, the file, or the default.
fn file_settings(
    config: &crate::config::Config,
    file_keys: &std::collections::BTreeSet<String>,
    source: &crate::config::ConfigSource,
    daemon: &DaemonArgs,
) -> anyhow::Result<Vec<Setting>> {
    let file_origin = source
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let effective = toml::Table::try_from(config)?;
    let mut settings: Vec<Setting> = effective
        .iter()
        .map(|(key, value)| {
            let from = match key.as_str() {
                "forge" if daemon.forge.is_some() => "--forge".to_owned(),
                "max_lanes" if daemon.max_lanes.is_some() => "--max-lanes".to_owned(),
                _ if file_keys.contains(key) => file_origin.clone(),
                _ => "default".to_owned(),
            };
            Setting {
                key: key.clone(),
                value: Some(value.clone()),
                from,
            }
        })
        .collect();
    for key in ["build_state_dir", "faults_dir"] {
        if !effective.contains_key(key) {
            settings.push(Setting {
                key: key.into(),
                value: None,
                from: "default: under ~/.gstack".into(),
            });
        }
    }
    Ok(settings)
}

/// A value clap took from a flag or from its environment variable.
fn flag_or_env(value: &Path, flag: &str, env: &str) -> String {
    match std::env::var_os(env) {
        Some(from_env) if Path::new(&from_env) == value => env.to_owned(),
        _ => flag.to_owned(),
    }
}
