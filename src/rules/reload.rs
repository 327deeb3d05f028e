//! Hot reload: a debounced watch on the rules root's directories (directories, not files:
//! editors that save by writing a temp file and renaming it over the original replace the
//! inode a file watch would hold). Each burst of changes rebuilds the whole set through
//! [`super::pipeline`] (compile, validate, run its tests); only an accepted set is swapped
//! in, and the outcome goes to the log and to the status file `berth status` reads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::RecursiveMode;

use super::source::{RULE_DIRS, SourceSet};
use super::status::RulesStatus;
use super::{Reloaded, Rules};
use crate::write_events::{Change, WriteWatch};

/// How long a burst of writes must stay quiet before the set is rebuilt. Editors finish a
/// rename-on-save within a few milliseconds; 150 ms keeps the edit-to-active time under
/// 250 ms (the target), rebuild included.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start the rules reload thread: {source}")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    #[error("hot reload needs a rules root (the embedded defaults cannot change)")]
    NoRoot,
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// A running watch; dropping it stops the watching and the reloading.
pub struct ReloadWatcher {
    _watch: WriteWatch,
}

impl ReloadWatcher {
    /// Watches `rules.root()` (its `rules/` and `policies/` recursively, the root itself
    /// for those two being created or replaced) and reloads on every write to a rule file,
    /// recording each outcome in `<berth_dir>/rules-status.json`. `status` is what that
    /// file says now (the daemon writes it at start). Reading the rules (which a reload
    /// does) is not a write and wakes nothing.
    pub fn start(
        rules: Rules,
        berth_dir: PathBuf,
        status: RulesStatus,
    ) -> Result<ReloadWatcher, WatchError> {
        let root = rules.root().ok_or(WatchError::NoRoot)?.to_owned();
        let mut status = status;
        // Reloads run the rule tests, i.e. rule code: on a thread with the rules' stack
        // (the watcher's own thread has a small default one). A burst while a reload runs
        // leaves one pending wake-up, which is all a reload of the whole set needs.
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("berth-rules-reload".into())
            .stack_size(super::RULE_THREAD_STACK)
            .spawn(move || {
                while woken.recv().is_ok() {
                    // Debounce: wait until the burst has been quiet for DEBOUNCE.
                    while woken.recv_timeout(DEBOUNCE).is_ok() {}
                    reload_once(&rules, &berth_dir, &mut status);
                }
            })
            .map_err(|source| WatchError::Thread { source })?;
        let mut dirs = vec![(root.clone(), RecursiveMode::NonRecursive)];
        for dir in RULE_DIRS {
            let path = root.join(dir);
            if path.is_dir() {
                dirs.push((path, RecursiveMode::Recursive));
            }
        }
        let first = wake.clone();
        let watch = WriteWatch::start(&dirs, is_rule_file, move |_: Change| {
            let _ = wake.try_send(());
        })
        .map_err(|(path, source)| WatchError::Watch { path, source })?;
        // An edit saved after the set was loaded but before the watch began is seen by no
        // event: one check now (unchanged files cost a read and a hash, no rebuild).
        let _ = first.try_send(());
        tracing::info!(root = %root.display(), "watching the rules root for changes");
        Ok(ReloadWatcher { _watch: watch })
    }
}

/// A file that can be part of a set (`*.rhai`, `*.tests.json`), or a directory that can
/// hold them (a name without an extension, e.g. `rules` replaced whole). Editors' hidden
/// swap files and `~` backups are not.
fn is_rule_file(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        !n.starts_with('.')
            && (n.ends_with(".rhai") || n.ends_with(".json") || !n.contains(['.', '~']))
    })
}

/// One reload: rebuild, swap or keep, log, record.
fn reload_once(rules: &Rules, berth_dir: &Path, status: &mut RulesStatus) {
    let last = &status.last_reload;
    let refused = (!last.ok).then(|| last.hash.clone()).flatten();
    let changed = match rules.reload_after(refused.as_deref()) {
        Ok(Reloaded::Swapped(set)) => {
            tracing::info!(
                rules = set.short_hash(),
                "rule set reloaded and active: {}",
                set.describe_source()
            );
            status.swapped(&set);
            true
        }
        Ok(Reloaded::Unchanged(set)) => {
            // A revert to the active files clears an earlier failure.
            let was_failing = !status.last_reload.ok;
            if was_failing {
                status.swapped(&set);
            }
            was_failing
        }
        Ok(Reloaded::StillRefused) => false,
        Err(failure) => {
            tracing::error!(
                rules = %super::set::short(&status.active_hash),
                "rule reload REFUSED, the previous rules stay active:\n{failure}"
            );
            status.refused(&failure);
            true
        }
    };
    if changed && let Err(e) = status.write(berth_dir) {
        tracing::warn!("cannot write the rules status: {e}");
    }
}

/// What a watching daemon made of a rule edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadSeen {
    /// The set with the edit is active; its hash.
    Active(String),
    /// The reload was refused and the previous set stays; the errors, each starting
    /// `file:line:col`.
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AwaitError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the rules root no longer loads: {0}")]
    Load(#[from] super::LoadFailure),
    #[error("cannot read the rules status in {dir}: {source}")]
    Status {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no reload of the edit was reported within {0:?} (is a daemon running with --watch on this rules root?)"
    )]
    Timeout(Duration),
}

/// Writes `text` to `file` (e.g. `policies/landing.rhai`) under `root` the way an editor
/// does (temp file + rename), then waits until the daemon watching `root` with state dir
/// `berth_dir` has either swapped in the set with this edit or refused it. For `berth demo`
/// and tests; works whether the daemon runs in this process or another.
pub fn write_and_await(
    root: &Path,
    berth_dir: &Path,
    file: &str,
    text: &str,
    timeout: Duration,
) -> Result<ReloadSeen, AwaitError> {
    let path = root.join(file);
    let started = crate::clock::now()
        .checked_sub_signed(chrono::Duration::milliseconds(1))
        .unwrap_or_else(crate::clock::now);
    crate::atomic_file::write_atomic(&path, text.as_bytes(), 0o644)
        .map_err(|source| AwaitError::Write { path, source })?;
    let expected = SourceSet::load(Some(root))?.hash().to_owned();
    let deadline = Instant::now() + timeout;
    loop {
        let status = RulesStatus::read(berth_dir).map_err(|source| AwaitError::Status {
            dir: berth_dir.to_owned(),
            source,
        })?;
        if let Some(status) = status {
            let last = &status.last_reload;
            let fresh = crate::clock::parse_iso(&last.at).is_some_and(|at| at >= started);
            if last.ok && status.active_hash == expected {
                return Ok(ReloadSeen::Active(expected));
            }
            if fresh && !last.ok && last.hash.as_deref() == Some(expected.as_str()) {
                return Ok(ReloadSeen::Refused(last.error.clone().unwrap_or_default()));
            }
        }
        if Instant::now() >= deadline {
            return Err(AwaitError::Timeout(timeout));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
