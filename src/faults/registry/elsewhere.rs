//! The look for a run's other registries (other state files of the run), at each raise or
//! clear of one of its faults, on the tick's thread. Whoever writes the faults dir can plant
//! a registry of the run of up to 8 MiB under every name a listing reads (hard links: one
//! file's disk). So a look reads each file once per stamp ([`FileStamp`]): every name of
//! one file is one read; and it reads at most [`MAX_ELSEWHERE_READ_BYTES`]. Past that the
//! rest count as unread, once: a fault they may hold is not resolved (it stays raised).

use std::collections::{HashMap, HashSet};

use super::super::json_file::MAX_JSON_BYTES;
use super::super::read_budget::ReadBudget;
use super::{Unread, may_be_registry_name, name_prefix, read_opened_registry, source_is_gone};
use crate::file_stamp::FileStamp;
use crate::private_dir::{MAX_NAMES_PER_LISTING, PrivateDir};

/// What one look for a run's other registries may read: berth's own registries are
/// kilobytes, so a real run's others are read whole; four planted ones of the largest size
/// berth reads fill it.
pub const MAX_ELSEWHERE_READ_BYTES: u64 = 32 * 1024 * 1024;

/// What `run_id`'s other registries (other state files of the run) say about halt ids.
#[derive(Debug, Default)]
pub struct Elsewhere {
    pub(super) raised: HashSet<String>,
    /// The registries that could not be read, each naming the file and the reason: what
    /// they hold is unknown.
    unread: Vec<String>,
}

impl Elsewhere {
    /// Whether a readable other registry holds `fault_id`.
    pub fn contains(&self, fault_id: &str) -> bool {
        self.raised.contains(fault_id)
    }

    /// The other registries that could not be read. While there is one, no fault of the
    /// run is resolved: it may still hold it (a fault stays raised rather than clear on a
    /// read error).
    pub fn unread(&self) -> &[String] {
        &self.unread
    }
}

/// What one file under a name of the run held, shared by all its names in one look.
#[derive(Clone, Debug)]
enum Held {
    /// A registry of another run whose safe run id is this one's.
    OtherRun,
    /// A registry of the run: its state file, and the asked ids it holds.
    Registry { source: String, ids: Vec<String> },
    /// Not a registry (torn, planted): what it holds is unknown.
    Invalid(String),
}

/// One look's reads: what each stamp held, and what it may still read.
struct Look<'a> {
    run_id: &'a str,
    asked: &'a HashSet<&'a str>,
    by_stamp: HashMap<FileStamp, Held>,
    budget: ReadBudget,
}

impl Look<'_> {
    /// What `name` in `dir` holds: `None` when nothing is there or it was left unread past
    /// the budget, `Err` with the reason when the system could not read it.
    fn held(&mut self, dir: &PrivateDir, name: &str) -> Option<Result<Held, NotRead>> {
        let opened = match dir.open_regular(name, MAX_JSON_BYTES) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return None,
            Err(e) => return Some(Err(NotRead::from(Unread::of(e)))),
        };
        let stamp = FileStamp::of(&opened.1);
        if let Some(held) = self.by_stamp.get(&stamp) {
            return Some(Ok(held.clone()));
        }
        if !self.budget.spend(&opened.1) {
            return None;
        }
        let held = match read_opened_registry(opened) {
            Ok(registry) if registry.run_id != self.run_id => Held::OtherRun,
            Ok(registry) => Held::Registry {
                source: registry.source,
                ids: registry
                    .active
                    .into_values()
                    .map(|a| a.fault_id)
                    .filter(|id| self.asked.contains(id.as_str()))
                    .collect(),
            },
            Err(Unread::Invalid(reason)) => Held::Invalid(reason.to_string()),
            Err(failed @ Unread::Failed(_)) => return Some(Err(NotRead::from(failed))),
        };
        self.by_stamp.insert(stamp, held.clone());
        Some(Ok(held))
    }
}

/// Why the system could not read a file under a name of the run (its reason as said).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotRead(String);

impl From<Unread> for NotRead {
    fn from(unread: Unread) -> NotRead {
        NotRead(match unread {
            Unread::Invalid(reason) => reason.to_string(),
            Unread::Failed(reason) => reason.to_string(),
        })
    }
}

/// The halt ids among `asked` raised by `run_id`'s other registries in `dir` (not `own`): a
/// fault one state file still has is not resolved because another state file of the run
/// cleared it. Only the ids asked about are kept: the others' registries may hold up to
/// 8 MiB of ids each, and a pass asks only about the faults its run raises or clears.
/// A registry whose state file is gone is removed instead (the run's lock is held): that
/// file raises nothing any more, and counting it would keep a new state file of the run
/// from filing, and later resolving, the same fault for ever. Its pending events stay
/// for an investigator.
pub fn raised_elsewhere(
    dir: &PrivateDir,
    run_id: &str,
    own: &str,
    asked: &HashSet<&str>,
) -> Elsewhere {
    let prefix = name_prefix(run_id);
    let mut elsewhere = Elsewhere::default();
    let listed = dir.names_matching_up_to(MAX_NAMES_PER_LISTING, |n| {
        n != own && n.starts_with(&prefix) && n.ends_with(".json") && may_be_registry_name(n)
    });
    let names = match listed {
        Ok((names, cut)) => {
            // A registry left unread may hold the fault: it stays raised.
            if cut {
                elsewhere.unread.push(format!(
                    "{}: more than {MAX_NAMES_PER_LISTING} registries of the run",
                    dir.path().display()
                ));
            }
            names
        }
        Err(e) => {
            elsewhere
                .unread
                .push(format!("{}: {e}", dir.path().display()));
            return elsewhere;
        }
    };
    let mut look = Look {
        run_id,
        asked,
        by_stamp: HashMap::new(),
        budget: ReadBudget::new(MAX_ELSEWHERE_READ_BYTES),
    };
    for name in names {
        let path = dir.join(&name);
        match look.held(dir, &name) {
            None | Some(Ok(Held::OtherRun)) => {}
            Some(Ok(Held::Registry { source, .. })) if source_is_gone(&source) => {
                if let Err(e) = dir.remove_if_there(&name) {
                    tracing::warn!(file = %path.display(), "registry of a gone state file not removed: {e}");
                }
            }
            Some(Ok(Held::Registry { ids, .. })) => elsewhere.raised.extend(ids),
            Some(Ok(Held::Invalid(reason))) => elsewhere
                .unread
                .push(format!("{}: {reason}", path.display())),
            Some(Err(not_read)) => elsewhere
                .unread
                .push(format!("{}: {not_read}", path.display())),
        }
    }
    // Said once, however many were left: they may hold any fault, so it stays raised.
    if look.budget.waiting() > 0 {
        elsewhere.unread.push(format!(
            "{}: {} registries of the run not read: one look reads at most {MAX_ELSEWHERE_READ_BYTES} bytes of them; read again next tick",
            dir.path().display(),
            look.budget.waiting()
        ));
    }
    elsewhere
}

#[cfg(test)]
mod tests {
    use super::super::{Registry, name, save};
    use super::*;

    /// Distinct registries of the run past what one look reads: those left unread may hold
    /// the fault, so the look says so, once, and a clear keeps the fault raised.
    #[test]
    fn registries_of_a_run_past_the_looks_read_budget_count_as_unread_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = PrivateDir::ensure(root.path(), "active-faults").unwrap();
        let state = root.path().join("live.json");
        std::fs::write(&state, "{}").unwrap();
        let per_file = MAX_JSON_BYTES - 400;
        let files = (MAX_ELSEWHERE_READ_BYTES / per_file + 2) as usize;
        for n in 0..files {
            let registry = Registry {
                run_id: "run".into(),
                source: state.display().to_string(),
                updated_at: "x".repeat(per_file as usize - 200),
                ..Registry::default()
            };
            save(&dir, &name("run", &format!("/s/{n}.json")), &registry).unwrap();
        }
        let asked = HashSet::from(["K:s:00000000"]);
        let elsewhere = raised_elsewhere(&dir, "run", &name("run", "/s/own.json"), &asked);
        assert!(!elsewhere.contains("K:s:00000000"));
        assert_eq!(elsewhere.unread().len(), 1, "{:?}", elsewhere.unread());
        assert!(
            elsewhere.unread()[0].contains("not read"),
            "{:?}",
            elsewhere.unread()
        );
    }
}
