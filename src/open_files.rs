//! The process's descriptor limit (`RLIMIT_NOFILE`). `berth run` raises the soft limit to
//! the hard one at start, so the daemon's own work (queue reads, git, child processes) has
//! every descriptor the service was given; what serves clients is capped at a fraction of
//! it ([`crate::http::Limits::within`]).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft limit to the hard limit; returns the soft limit now in force (the old
/// one if raising failed, which is logged).
pub fn raise_to_hard() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            tracing::warn!("cannot raise the open-files limit from {soft} to {hard}: {e}");
            soft
        }
    }
}

/// The soft limit in force (`None` if it cannot be read).
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// How many descriptors the process has open (`None` where `/proc/self/fd` or `/dev/fd`
/// cannot be listed).
pub fn open_count() -> Option<u64> {
    ["/proc/self/fd", "/dev/fd"].iter().find_map(|dir| {
        // The listing's own descriptor is among the entries.
        std::fs::read_dir(dir)
            .ok()
            .map(|entries| (entries.count() as u64).saturating_sub(1))
    })
}
