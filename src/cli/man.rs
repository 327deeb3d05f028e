//! `berth man`: the manual pages (roff, from the clap tree with `clap_mangen`) and the
//! Markdown CLI reference.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory;

use super::{Cli, Outcome};

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// `roff` (a man page) or `markdown` (the CLI reference in docs/).
    #[arg(long, value_enum, default_value_t = ManFormat::Roff, value_name = "FORMAT")]
    pub format: ManFormat,
    /// Write `berth.1` and one page per command (`berth-status.1`, `berth-lock-status.1`, …)
    /// into DIR instead of printing `berth.1`.
    #[arg(long, value_name = "DIR", conflicts_with = "format")]
    pub out_dir: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManFormat {
    Roff,
    Markdown,
}

pub fn run(args: &ManArgs) -> anyhow::Result<Outcome> {
    let cli = Cli::command();
    match (args.format, &args.out_dir) {
        (ManFormat::Markdown, _) => print!("{}", super::reference::markdown(cli)),
        (ManFormat::Roff, None) => print!("{}", String::from_utf8(page(cli)?)?),
        (ManFormat::Roff, Some(dir)) => {
            let mut cli = cli.disable_help_subcommand(true);
            cli.build();
            let written = write_pages(&cli, dir)?;
            println!("wrote {written} pages into {}", dir.display());
        }
    }
    Ok(Outcome::Clean)
}

/// One command's page, rendered.
fn page(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

/// `cmd`'s page in `dir`, then its subcommands' (a built tree names them `berth-lock-status`,
/// the page `man berth-lock-status` finds); how many.
fn write_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<usize> {
    let man = clap_mangen::Man::new(cmd.clone());
    let file = dir.join(man.get_filename());
    let mut bytes = Vec::new();
    man.render(&mut bytes)?;
    crate::atomic_file::write_atomic(&file, &bytes, 0o644)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_pages(sub, dir)?;
    }
    Ok(written)
}
