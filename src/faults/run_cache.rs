//! What the fault watch found over each run, kept with the identity of everything the
//! detectors read for it: the state (as the [`super::state_file::StateCache`] parsed it),
//! the stamps of its plan, stdout log and review report, whether its worktree exists, the
//! environment's iteration limits, the rule set and the learned set. The detectors are pure
//! over these, so a pass over a run none of them changed for reruns nothing and reads no
//! attachment: it costs a `stat` per attachment.
//!
//! Not remembered (so run again next pass): an answer read under a racy stamp
//! ([`crate::file_stamp`]), one a detector timed out on (a timeout under load is not the
//! run's answer; a script error or an engine limit is), one whose plan, stdout log or
//! review report the system failed to read (`EMFILE`, `ENOMEM`, `EIO`…: tried again; a
//! refusal such as no access is kept until a stamp moves), and one whose learned patterns the
//! tick's budget cut short.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;

use super::detect::{self, AttachedPaths, DetectError, RunInput};
use super::fault::Fault;
use super::halt::{Pointers, RunRef, stdout_tail};
use super::learned::LearnedSet;
use super::learned_match::Budget;
use super::state_jsonpath::Document;
use crate::file_stamp::{FileStamp, ReadStart, Sighting};
use crate::rules::{RuleError, RuleSet};

/// What the detectors found over one run, and what its halt events name.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub state_slug: String,
    pub pointers: Pointers,
    pub stdout_tail: String,
    /// [`RunInput::withheld`].
    pub withheld: Vec<String>,
    pub faults: Vec<Fault>,
    /// One line per detector that failed, naming the rule file and the reason.
    pub errors: Vec<String>,
    /// Whether a detector was stopped at its deadline.
    timed_out: bool,
    /// Whether an attachment there could not be read ([`RunInput::unread`]).
    unread: bool,
}

impl RunOutcome {
    /// The run as its halt events name it; `state` is the run's parsed state.
    pub fn run_ref<'a>(&'a self, state: &'a Value) -> RunRef<'a> {
        RunRef {
            run_id: &self.run_id,
            state_slug: &self.state_slug,
            pointers: self.pointers.clone(),
            state: Some(state),
            stdout_tail: self.stdout_tail.clone(),
            withheld: self.withheld.clone(),
        }
    }
}

/// The identity of everything the detectors read for a run, but the state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Inputs {
    /// Plan, stdout log, review report: the stamp of what is there, if anything.
    files: [Option<FileStamp>; 3],
    worktree_exists: bool,
    limits: (i64, i64),
    rules: String,
    learned: u64,
}

struct Remembered {
    /// The state the outcome was found over, not kept alive here: the state cache decides
    /// what stays in memory, and a state it let go can never be the one loaded next.
    state: Weak<Document>,
    inputs: Inputs,
    sightings: [Option<Sighting>; 3],
    /// Whether `outcome` is the run's answer for these inputs (see the module's doc).
    trusted: bool,
    outcome: Arc<RunOutcome>,
}

/// Each run's last outcome, by state file. Holds only the runs whose state the state
/// cache still keeps ([`RunCache::keep_only`]).
#[derive(Default)]
pub struct RunCache {
    entries: Mutex<HashMap<PathBuf, Remembered>>,
}

/// What [`RunCache::answer`] gives: the outcome, and whether the detectors ran for it (a
/// pass over unchanged runs runs none; the watch report counts them).
pub struct Answer {
    pub outcome: Arc<RunOutcome>,
    pub detectors_ran: bool,
}

impl RunCache {
    /// The outcome of the detectors over the run of `file` (whose state is `state`),
    /// remembered from an earlier pass when nothing they read changed since.
    pub fn answer(
        &self,
        file: &Path,
        state: &Arc<Document>,
        set: &RuleSet,
        learned: &LearnedSet,
        budget: &mut Budget,
    ) -> Answer {
        let start = ReadStart::now();
        let paths = AttachedPaths::of(state.value(), Some(file), None, None);
        let inputs = Inputs {
            files: [
                stamp(paths.plan.as_deref(), Link::Follow),
                stamp(paths.stdout.as_deref(), Link::Follow),
                stamp(paths.review.as_deref(), Link::Refuse),
            ],
            worktree_exists: paths.worktree.as_ref().is_some_and(|w| w.is_dir()),
            limits: detect::iteration_limits(),
            rules: set.hash().to_owned(),
            learned: learned.id(),
        };
        let last_sightings = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let last = entries.get(file);
            if let Some(last) = last
                && last.trusted
                && Weak::ptr_eq(&last.state, &Arc::downgrade(state))
                && last.inputs == inputs
            {
                return Answer {
                    outcome: Arc::clone(&last.outcome),
                    detectors_ran: false,
                };
            }
            last.map(|last| last.sightings)
        };
        let mut racy = false;
        let sightings: [Option<Sighting>; 3] = std::array::from_fn(|i| {
            let stamp = inputs.files[i]?;
            let last = last_sightings.as_ref().and_then(|s| s[i].as_ref());
            let (seen, young) = start.judge(stamp, last);
            racy |= young;
            Some(seen)
        });
        let exhausted_before = budget.exhausted.is_some();
        let outcome = detect_one(file, state, set, learned, budget);
        let trusted = !racy
            && !outcome.timed_out
            && !outcome.unread
            && !exhausted_before
            && budget.exhausted.is_none()
            // Its backtracking patterns kept their last answers, unmatched: as a system
            // failure, tried again next pass.
            && budget.worker.failed.is_none();
        let outcome = Arc::new(outcome);
        let remembered = Remembered {
            state: Arc::downgrade(state),
            inputs,
            sightings,
            trusted,
            outcome: Arc::clone(&outcome),
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(file.to_owned(), remembered);
        Answer {
            outcome,
            detectors_ran: true,
        }
    }

    /// Forgets every run of `dir` not in `paths` (removed since, or no longer a state file),
    /// and every run whose state the state cache let go (its outcome can never be used).
    pub fn keep_only(&self, dir: &Path, paths: &HashSet<PathBuf>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|path, last| {
            last.state.strong_count() > 0 && (path.parent() != Some(dir) || paths.contains(path))
        });
    }
}

/// Whether an attachment is read through a link at its path (plan and log) or refuses one
/// (the review report, read as a faults-dir JSON file).
#[derive(Clone, Copy)]
enum Link {
    Follow,
    Refuse,
}

/// The stamp of what the attachment's read would open at `path`, `None` when nothing is
/// there.
fn stamp(path: Option<&Path>, link: Link) -> Option<FileStamp> {
    let meta = match link {
        Link::Follow => std::fs::metadata(path?),
        Link::Refuse => std::fs::symlink_metadata(path?),
    };
    meta.ok().map(|meta| FileStamp::of(&meta))
}

/// The detectors over the run of `file`, reading its attachments.
fn detect_one(
    file: &Path,
    state: &Arc<Document>,
    set: &RuleSet,
    learned: &LearnedSet,
    budget: &mut Budget,
) -> RunOutcome {
    let run = RunInput::from_document(Arc::clone(state), Some(file), None, None);
    let detection = detect::detect_run_within(set, &run, learned, budget);
    let path_text = |path: Option<&PathBuf>| path.map(|p| p.display().to_string());
    RunOutcome {
        run_id: run_id_of(&run, file),
        state_slug: file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pointers: Pointers {
            state_file: file.display().to_string(),
            stdout_log: path_text(run.stdout.as_ref().map(|a| &a.path)).unwrap_or_default(),
            living_plan: path_text(run.plan.as_ref().map(|a| &a.path)).unwrap_or_default(),
            worktree_path: path_text(run.worktree.as_ref()).unwrap_or_default(),
        },
        stdout_tail: run
            .stdout
            .as_ref()
            .map(|s| stdout_tail(&s.content))
            .unwrap_or_default(),
        withheld: run.withheld.clone(),
        timed_out: detection
            .errors
            .iter()
            .any(|e| matches!(e, DetectError::Rule(RuleError::Timeout { .. }))),
        unread: run.unread,
        faults: detection.faults,
        errors: detection.errors.iter().map(ToString::to_string).collect(),
    }
}

/// A run's id as gstack names it (its `--run-id`, else the state slug): the state's
/// `launch.runId`, else its `slug`, else the file's stem.
fn run_id_of(run: &RunInput, file: &Path) -> String {
    ["/launch/runId", "/slug"]
        .iter()
        .find_map(|pointer| {
            run.state
                .value()
                .pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".to_owned())
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::{Duration, Instant};

    use super::*;

    fn categories(answer: &Answer) -> Vec<String> {
        answer
            .outcome
            .faults
            .iter()
            .map(|f| f.category.clone())
            .collect()
    }

    /// A stdout log the daemon may not read (`EACCES`) is a refusal, kept like a missing
    /// log rather than read again on every pass; fixing its mode moves its stamp (ctime),
    /// and the next pass reads it.
    #[test]
    fn a_stdout_log_refused_for_access_is_read_again_once_its_mode_is_fixed() {
        use nix::unistd::{Uid, geteuid, setfsuid};
        if !geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("out.log");
        std::fs::write(&log, "VERIFICATION: GAPS\n").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = dir.path().join("run.json");
        let state = serde_json::json!({"slug": "r", "stdoutLog": log.to_str().unwrap()});
        std::fs::write(&file, state.to_string()).unwrap();
        let rules = crate::rules::Rules::embedded().unwrap();
        let set = rules.current();
        let learned = LearnedSet::default();
        let cache = RunCache::default();
        let doc = Arc::new(Document::new(state));
        // This thread alone reads files as nobody: the log is root's, 0600.
        let as_nobody = |then: &(dyn Fn() -> Answer + Sync)| {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        setfsuid(Uid::from_raw(65534));
                        then()
                    })
                    .join()
                    .unwrap()
            })
        };
        let answer = || cache.answer(&file, &doc, &set, &learned, &mut Budget::unlimited());
        // Until the stamps are old enough to be trusted, every pass runs the detectors.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pass = as_nobody(&answer);
            assert!(categories(&pass).is_empty(), "the log was read");
            if !pass.detectors_ran {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a refused log was read on every pass"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
        let fixed = as_nobody(&answer);
        assert!(fixed.detectors_ran, "the log's new mode was not noticed");
        assert_eq!(categories(&fixed), ["FEATURE_VERIFIER_SCOPE"]);
    }

    /// A stdout log the state names that is a symlink is refused (not followed), not a
    /// read the system failed: like a missing log, the run's answer is kept once its stamps
    /// settle, though `attachment::open_regular` passes the raw `ELOOP` on.
    #[test]
    fn a_symlinked_stdout_log_is_refused_not_read_again_on_every_pass() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.log");
        std::fs::write(&target, "VERIFICATION: GAPS\n").unwrap();
        let link = dir.path().join("out.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let rules = crate::rules::Rules::embedded().unwrap();
        let set = rules.current();
        let learned = LearnedSet::default();
        let settles = |name: &str, log: &Path| {
            let file = dir.path().join(format!("{name}.json"));
            let state = serde_json::json!({"slug": name, "stdoutLog": log.to_str().unwrap()});
            std::fs::write(&file, state.to_string()).unwrap();
            let cache = RunCache::default();
            let doc = Arc::new(Document::new(state));
            let deadline = Instant::now() + Duration::from_secs(10);
            while cache
                .answer(&file, &doc, &set, &learned, &mut Budget::unlimited())
                .detectors_ran
            {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            true
        };
        assert!(settles("missing", &dir.path().join("absent.log")));
        assert!(
            settles("linked", &link),
            "a symlinked stdoutLog made the run's detectors run on every pass for 10 s"
        );
    }

    /// A stdout log whose name the state makes longer than a file name may be
    /// (`ENAMETOOLONG`) is what the state names and stays so, like a symlink or a socket:
    /// the run's answer is kept once its stamps settle, its detectors not run every pass.
    #[test]
    fn a_stdout_log_named_too_long_is_refused_not_read_again_on_every_pass() {
        let dir = tempfile::tempdir().unwrap();
        let rules = crate::rules::Rules::embedded().unwrap();
        let set = rules.current();
        let learned = LearnedSet::default();
        let file = dir.path().join("long.json");
        let log = dir.path().join(format!("{}.log", "l".repeat(300)));
        let state = serde_json::json!({"slug": "long", "stdoutLog": log.to_str().unwrap()});
        std::fs::write(&file, state.to_string()).unwrap();
        let cache = RunCache::default();
        let doc = Arc::new(Document::new(state));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut settled = false;
        while Instant::now() < deadline {
            if !cache
                .answer(&file, &doc, &set, &learned, &mut Budget::unlimited())
                .detectors_ran
            {
                settled = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            settled,
            "a stdoutLog named too long (ENAMETOOLONG) made the run's detectors run on every \
             pass for 10 s"
        );
    }
}
