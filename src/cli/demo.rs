//! `berth demo`: the README's "run it" command.

use super::Outcome;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Keep the throwaway world afterwards (its path is printed), and serve its queue page
    /// on a loopback port (the URL is printed) until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<Outcome> {
    Ok(if crate::demo::run(args.keep)? {
        Outcome::Clean
    } else {
        Outcome::NeedsAttention
    })
}
