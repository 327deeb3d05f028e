//! Hot reload: a debounced watch on the rules root's directories (directories, not files:
//! editors that save by writing a temp file and renaming it over the original replace the
//! inode a file watch would hold). Each burst of changes rebuilds the whole set through
//! [`super::pipeline`] (compile, validate, run its tests); only an accepted set is swapped
//! in, and the outcome goes to the log and to the status file `berth status` reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
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
    wake: SyncSender<()>,
}

impl ReloadWatcher {
    /// Watches `rules.root()` recursively (so a `rules/` or `policies/` created, replaced or
    /// moved in after start is watched as soon as it appears) and reloads on every write
    /// under `rules/` and `policies/`, recording each outcome in
    /// `<berth_dir>/rules-status.json`. `status` is what that file says now (the daemon
    /// writes it at start). Reading the rules (which a reload does) is not a write and
    /// wakes nothing.
    pub fn start(
        rules: Rules,
        berth_dir: PathBuf,
        status: RulesStatus,
    ) -> Result<ReloadWatcher, WatchError> {
        let root = rules.root().ok_or(WatchError::NoRoot)?.to_owned();
        let mut reloader = Reloader {
            rules,
            berth_dir,
            status,
            refusal_may_pass: false,
        };
        // Reloads run the rule tests, i.e. rule code: on a thread with the rules' stack
        // (the watcher's own thread has a small default one). A burst while a reload runs
        // leaves one pending wake-up, which is all a reload of the whole set needs.
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let written = Arc::new(AtomicBool::new(false));
        let seen_write = Arc::clone(&written);
        std::thread::Builder::new()
            .name("berth-rules-reload".into())
            .stack_size(super::RULE_THREAD_STACK)
            .spawn(move || {
                while woken.recv().is_ok() {
                    // Debounce: wait until the burst has been quiet for DEBOUNCE.
                    while woken.recv_timeout(DEBOUNCE).is_ok() {}
                    reloader.reload_once(seen_write.swap(false, Ordering::SeqCst));
                }
            })
            .map_err(|source| WatchError::Thread { source })?;
        let dirs = [(root.clone(), RecursiveMode::Recursive)];
        let under = root.clone();
        let bell = wake.clone();
        let watch = WriteWatch::start(
            &dirs,
            false,
            move |path: &Path| is_rule_path(&under, path),
            move |_: Change| {
                written.store(true, Ordering::SeqCst);
                let _ = bell.try_send(());
            },
        )
        .map_err(|(path, source)| WatchError::Watch { path, source })?;
        // An edit saved after the set was loaded but before the watch began is seen by no
        // event: one check now (unchanged files cost a read and a hash, no rebuild).
        let _ = wake.try_send(());
        tracing::info!(root = %root.display(), "watching the rules root for changes");
        Ok(ReloadWatcher {
            _watch: watch,
            wake,
        })
    }

    /// The backstop for writes no directory watch reports (an edit through a hard link
    /// from outside the root): compares the files' hash with the active set's (a source
    /// load and a sha256, no rebuild) and reloads if they differ. The daemon calls it on
    /// each poll tick. A set refused before is not rebuilt from here.
    pub fn check(&self) {
        let _ = self.wake.try_send(());
    }
}

/// Whether a write to `path` can change the set under `root`: anything under `rules/` or
/// `policies/` (those directories themselves included) but editors' hidden swap files and
/// `~` backups. A directory moved in may be named `team-rules.d`, so names are not judged
/// by their extension; a write that changes no rule file costs a hash, not a rebuild.
fn is_rule_path(root: &Path, path: &Path) -> bool {
    let Ok(inside) = path.strip_prefix(root) else {
        return false;
    };
    let under_rule_dir = inside
        .components()
        .next()
        .is_some_and(|first| RULE_DIRS.iter().any(|dir| first.as_os_str() == *dir));
    under_rule_dir
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.') && !n.ends_with('~'))
}

/// The reload thread's state.
struct Reloader {
    rules: Rules,
    berth_dir: PathBuf,
    status: RulesStatus,
    /// The last refusal came from a rule call stopped at its deadline or an unreadable
    /// file (a loaded machine, not the text): a write to the same files tries them again.
    refusal_may_pass: bool,
}

impl Reloader {
    /// One reload: rebuild, swap or keep, log, record. `written`: a write woke it (not the
    /// poll tick's backstop check).
    fn reload_once(&mut self, written: bool) {
        let status = &mut self.status;
        let last = &status.last_reload;
        let retry = written && self.refusal_may_pass;
        let refused = (!last.ok && !retry).then(|| last.hash.clone()).flatten();
        let changed = match self.rules.reload_after(refused.as_deref()) {
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
                    "rule reload REFUSED, the previous rules stay active: {}",
                    // One line, so each `file:line:col` keeps the line's timestamp.
                    failure.to_string().lines().collect::<Vec<_>>().join("; ")
                );
                self.refusal_may_pass = failure.may_pass_on_retry();
                status.refused(&failure);
                true
            }
        };
        if changed && let Err(e) = status.write(&self.berth_dir) {
            tracing::warn!("cannot write the rules status: {e}");
        }
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
