//! `berth doctor`: one line per check; exit 1 when any check failed.

use std::path::PathBuf;

use super::{Context, Outcome};
use crate::doctor::{self, Inputs};
use crate::service::Platform;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  berth doctor
  berth doctor --json | jq '.[] | select(.verdict != \"ok\")'")]
pub struct DoctorArgs {
    #[command(flatten)]
    pub repos: super::RepoArgs,
    /// The berth dir whose daemon, service and lock scratch repo to check.
    #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
    pub berth_dir: Option<PathBuf>,
    /// The rules root to check (as `berth rules check` does).
    #[arg(long, env = "BERTH_RULES_ROOT", value_name = "DIR")]
    pub rules_root: Option<PathBuf>,
    /// Which service manager's unit to look for; default: this machine's.
    #[arg(long, value_enum, value_name = "PLATFORM")]
    pub platform: Option<Platform>,
    /// Print `[{"name", "verdict", "detail"}]` instead of lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub reach: super::reach::ReachArgs,
}

pub fn run(ctx: &Context, args: &DoctorArgs) -> anyhow::Result<Outcome> {
    // A config that does not load is the config check's failure, not doctor's.
    let allowlist = ctx.allowlist(&ctx.config().unwrap_or_default());
    let checks = doctor::run(&Inputs {
        store: &ctx.store,
        allowlist: &allowlist,
        project_root: ctx.project_root.clone(),
        config_source: ctx.config_source.clone(),
        berth_dir: args
            .berth_dir
            .clone()
            .unwrap_or_else(crate::paths::default_berth_dir),
        rules_root: args.rules_root.clone(),
        platform: args.platform.unwrap_or_else(Platform::native),
        home: crate::paths::home_dir(),
        reach: args.reach.reach(&super::reach::progress_line),
    });
    let healthy = doctor::healthy(&checks);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for check in &checks {
            println!("{}", check.line());
        }
        println!("{}", if healthy { "HEALTHY" } else { "UNHEALTHY" });
    }
    Ok(if healthy {
        Outcome::Clean
    } else {
        Outcome::NeedsAttention
    })
}
