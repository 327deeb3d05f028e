//! `--offline` and `--timeout` for the commands that ask origins on an operator's behalf
//! (`status`, `doctor`), and the progress line they show on a terminal while they wait.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::lane_lock::survey::Reach;

#[derive(clap::Args, Debug, Clone)]
pub struct ReachArgs {
    /// Ask no origin and no forge: lane locks (and `gh auth`) are shown as not checked.
    #[arg(long)]
    pub offline: bool,
    /// Bound on each connect and read to an origin; origins are asked at once, so one
    /// unreachable origin costs at most this.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
}

impl ReachArgs {
    /// The reach for a listing; `progress` is [`progress_line`].
    pub fn reach<'a>(&self, progress: &'a (dyn Fn(usize, usize) + Sync)) -> Reach<'a> {
        Reach {
            offline: self.offline,
            timeout: Duration::from_secs(self.timeout),
            progress,
        }
    }
}

/// `listing lane locks: 2/5 origins answered` on stderr, rewritten in place, when stderr is
/// a terminal; nothing when it is piped or a file.
pub fn progress_line(done: usize, total: usize) {
    let mut err = std::io::stderr();
    if !err.is_terminal() {
        return;
    }
    let _ = if done < total {
        write!(err, "\rlisting lane locks: {done}/{total} origins answered")
    } else {
        write!(err, "\r\x1b[K")
    };
    let _ = err.flush();
}
