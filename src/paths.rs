//! Where berth reads and writes by default: the gstack layout under `~/.gstack`, so berth
//! and the TypeScript daemon it replaces find each other's files.

use std::path::PathBuf;

/// The user's home directory as gstack's producers see it (`$HOME`).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn under_home(rel: &str) -> PathBuf {
    // Without a home, relative paths would land in whatever the cwd is; an explicit
    // `--queue-dir` (or friends) is required then, and the error says so.
    home_dir()
        .unwrap_or_else(|| PathBuf::from("/nonexistent-home"))
        .join(rel)
}

/// `~/.gstack/build-state/release-queue/`: one JSON record per queued PR.
pub fn default_queue_dir() -> PathBuf {
    under_home(".gstack/build-state/release-queue")
}

/// `~/.gstack/build-state/`: the orchestrators' state files that detectors read.
pub fn default_build_state_dir() -> PathBuf {
    under_home(".gstack/build-state")
}

/// `~/.gstack/skill-faults/`: halt events and learned patterns.
pub fn default_faults_dir() -> PathBuf {
    under_home(".gstack/skill-faults")
}

/// `~/.gstack/berth/`: berth's own private state (lock scratch repo, logs, scratch worktrees).
pub fn default_berth_dir() -> PathBuf {
    under_home(".gstack/berth")
}
