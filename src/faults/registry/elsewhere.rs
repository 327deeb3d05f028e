//! The look for a run's other registries (other state files of the run), at each raise or
//! clear of one of its faults, on the tick's thread. Whoever writes the faults dir can plant
//! a registry of up to 8 MiB under every name a listing reads, of every run (hard links:
//! one file's disk). So every look of one fault-watch pass shares what the pass read
//! ([`PassReads`]): a file is read once a pass by stamp ([`FileStamp`]), however many names
//! or runs reach it, and the pass reads at most [`MAX_ELSEWHERE_READ_BYTES`] and
//! [`MAX_ELSEWHERE_FILES`] files in all. Past that the rest count as unread: a fault they
//! may hold is not resolved (it stays raised).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::super::json_file::MAX_JSON_BYTES;
use super::super::read_budget::ReadBudget;
use super::{
    Unread, may_be_registry_name, name_prefix, read_opened_registry, said_cut, source_is_gone,
};
use crate::file_stamp::FileStamp;
use crate::hostile_file::ReadError;
use crate::private_dir::{MAX_NAMES_PER_LISTING, PrivateDir};

/// What the looks of one fault-watch pass may read of runs' other registries: berth's own
/// registries are kilobytes, so a real pass reads them whole; four planted ones of the
/// largest size berth reads fill it.
pub const MAX_ELSEWHERE_READ_BYTES: u64 = 32 * 1024 * 1024;

/// The files the looks of one fault-watch pass keep what they read of: the byte budget
/// bounds files with content, this the empty ones (each kept with why it is no registry).
pub const MAX_ELSEWHERE_FILES: usize = 20_000;

/// The longest source path a system call takes (`PATH_MAX`): a longer one is never found
/// gone, so it is not kept.
const MAX_SOURCE_BYTES: usize = 4096;

/// What the looks of one fault-watch pass read: what each stamp held, the fault ids each
/// run's looks asked, and what the pass may still read. Made afresh each pass (a file may
/// change between passes) and dropped with it.
#[derive(Debug)]
pub struct PassReads {
    by_stamp: HashMap<FileStamp, Held>,
    /// By run id's SHA-256, each fault id its looks asked (its SHA-256: a scope may be any
    /// length), once, with its place in the order they were first asked: a file keeps only
    /// how far into its run's ids it was asked, so they are held once a run, not once a file.
    asked: HashMap<[u8; 32], HashMap<[u8; 32], usize>>,
    budget: ReadBudget,
    /// The files it keeps at most ([`MAX_ELSEWHERE_FILES`]).
    max_files: usize,
    /// Whether the pass logged that its budget ran out: said once a pass.
    warned: bool,
    /// The unread registries the pass has said ([`PassReads::unsaid`]), by run id's SHA-256
    /// and what the line is about, at most `max_files`: each is said once a run a pass,
    /// however many looks of that run find it (another run's look says its own).
    said: HashSet<([u8; 32], Said)>,
}

impl Default for PassReads {
    fn default() -> PassReads {
        PassReads {
            by_stamp: HashMap::new(),
            asked: HashMap::new(),
            budget: ReadBudget::new(MAX_ELSEWHERE_READ_BYTES),
            max_files: MAX_ELSEWHERE_FILES,
            warned: false,
            said: HashSet::new(),
        }
    }
}

/// What `run_id`'s other registries (other state files of the run) say about halt ids.
#[derive(Debug, Default)]
pub struct Elsewhere {
    /// The SHA-256 of the run id looked for: what it says is said once a pass for this run.
    run: [u8; 32],
    pub(super) raised: HashSet<String>,
    /// The registries that could not be read, each naming the file and the reason: what
    /// they hold is unknown.
    unread: Vec<String>,
    /// What each line of `unread` is about, to say it once a pass.
    about: Vec<Said>,
}

/// What an unread line is about: the file by its stamp, or (no file to stamp: a failed
/// listing or read, the count left past the budget) the line's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Said {
    File(FileStamp),
    Line([u8; 32]),
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

    /// Adds an unread line about `about` (a line's own SHA-256 when `None`).
    fn push_unread(&mut self, about: Option<Said>, line: String) {
        self.about
            .push(about.unwrap_or_else(|| Said::Line(Sha256::digest(&line).into())));
        self.unread.push(line);
    }
}

/// What one file under a name of a run held, shared by every name and look of the pass.
#[derive(Debug)]
enum Held {
    Registry(Registered),
    /// Not a registry (torn, planted): what it holds is unknown. Why, cut
    /// ([`said_cut`]), shared by every name of the file.
    Invalid(Arc<str>),
}

/// A registry, as the looks of a pass need it.
#[derive(Debug)]
struct Registered {
    /// Its run id's SHA-256: a planted run id may be megabytes, and each look compares it.
    run: [u8; 32],
    /// Its state file; `None` when longer than a system call takes (never found gone).
    source: Option<Box<str>>,
    /// How many of its run's asked ids ([`PassReads::asked`]) it was read for, and the places
    /// of those it holds: never every id it holds (up to 8 MiB of them).
    asked_up_to: usize,
    holds: HashSet<usize>,
}

/// What a look learns of one name of the run.
enum Found {
    /// A registry of another run whose safe run id is this one's.
    OtherRun,
    /// A registry of the run: its state file, and the asked ids it holds.
    Registry {
        source: Option<Box<str>>,
        ids: Vec<String>,
    },
    /// Not a registry: the file (by its stamp, said once a look) and why.
    Invalid(FileStamp, Arc<str>),
}

impl Held {
    /// What the look of `run` asking about `asked` (each id with its place in the run's asked
    /// ids) learns from it; `None` when it must be read again: a registry of that run not
    /// yet read for all of `asked` (its run has several state files that changed this pass).
    fn answer(&self, stamp: FileStamp, run: &[u8; 32], asked: &[(usize, &str)]) -> Option<Found> {
        match self {
            Held::Invalid(reason) => Some(Found::Invalid(stamp, reason.clone())),
            Held::Registry(registered) if &registered.run != run => Some(Found::OtherRun),
            Held::Registry(registered) => {
                if asked.iter().any(|(at, _)| *at >= registered.asked_up_to) {
                    return None;
                }
                let ids = asked
                    .iter()
                    .filter(|(at, _)| registered.holds.contains(at))
                    .map(|(_, id)| (*id).to_owned())
                    .collect();
                Some(Found::Registry {
                    source: registered.source.clone(),
                    ids,
                })
            }
        }
    }
}

impl PassReads {
    /// Adds the ids the look of `run` asks about to the run's asked ids, and returns each
    /// with its place there.
    fn ask<'a>(&mut self, run: &[u8; 32], asked: &HashSet<&'a str>) -> Vec<(usize, &'a str)> {
        let places = self.asked.entry(*run).or_default();
        asked
            .iter()
            .map(|id| {
                let next = places.len();
                (
                    *places.entry(Sha256::digest(id).into()).or_insert(next),
                    *id,
                )
            })
            .collect()
    }

    /// What `name` in `dir` holds for the look of `run` (its run id's SHA-256) asking about
    /// `asked` (placed by [`PassReads::ask`]): `None` when nothing is there or it was left
    /// unread past the budget, `Err` with the reason when the system could not read it.
    fn found(
        &mut self,
        dir: &PrivateDir,
        name: &str,
        run: &[u8; 32],
        asked: &[(usize, &str)],
    ) -> Option<Result<Found, NotRead>> {
        let opened = match dir.open_regular(name, MAX_JSON_BYTES) {
            Ok(opened) => opened,
            Err(e) if e.is_not_found() => return None,
            Err(e) => return self.not_opened(dir, name, (run, asked), e),
        };
        let stamp = FileStamp::of(&opened.1);
        if let Some(known) = self.known(stamp, run, asked) {
            return known.map(Ok);
        }
        if !self.budget.spend(&opened.1) {
            return None;
        }
        let held = match read_opened_registry(opened) {
            Ok(registry) => {
                let registry_run: [u8; 32] = Sha256::digest(registry.run_id.as_bytes()).into();
                let places = self.asked.get(&registry_run);
                let holds = registry
                    .active
                    .values()
                    .filter_map(|a| {
                        let id: [u8; 32] = Sha256::digest(&a.fault_id).into();
                        places?.get(&id).copied()
                    })
                    .collect();
                Held::Registry(Registered {
                    run: registry_run,
                    source: (registry.source.len() <= MAX_SOURCE_BYTES)
                        .then(|| registry.source.into()),
                    asked_up_to: places.map_or(0, HashMap::len),
                    holds,
                })
            }
            Err(Unread::Invalid(reason)) => Held::Invalid(said_cut(&reason.to_string()).into()),
            Err(failed @ Unread::Failed(_)) => return Some(Err(NotRead::from(failed))),
        };
        self.keep(stamp, held, run, asked).map(Ok)
    }

    /// What `name` holds when its open was refused (over 8 MiB, not a regular file) or
    /// failed (`EACCES`): no handle's `fstat` stamps it, so the name's `fstatat` (no open,
    /// no following) does, and the file is kept once a pass and said once a look however
    /// many names it has. Should it change between the two, its reason is kept under
    /// another stamp, which only says that file unread too (its faults stay raised).
    fn not_opened(
        &mut self,
        dir: &PrivateDir,
        name: &str,
        (run, asked): (&[u8; 32], &[(usize, &str)]),
        e: ReadError,
    ) -> Option<Result<Found, NotRead>> {
        let reason = NotRead::from(Unread::of(e));
        let stamp = match dir.stat_nofollow(name) {
            Ok(Some(stat)) => FileStamp::of_stat(&stat),
            Ok(None) => return None,
            Err(_) => return Some(Err(reason)),
        };
        if let Some(known) = self.known(stamp, run, asked) {
            return known.map(Ok);
        }
        let held = Held::Invalid(said_cut(&reason.0).into());
        self.keep(stamp, held, run, asked).map(Ok)
    }

    /// What the pass already has for the file `stamp`: `Some` with the look's answer, or
    /// `Some(None)` when it keeps no more files (the file is left unread); `None` when the
    /// file is to be read.
    fn known(
        &mut self,
        stamp: FileStamp,
        run: &[u8; 32],
        asked: &[(usize, &str)],
    ) -> Option<Option<Found>> {
        let earlier = self.by_stamp.get(&stamp);
        if let Some(found) = earlier.and_then(|held| held.answer(stamp, run, asked)) {
            return Some(Some(found));
        }
        if earlier.is_none() && self.by_stamp.len() >= self.max_files {
            self.budget.leave();
            return Some(None);
        }
        None
    }

    /// Keeps what the file `stamp` held for the rest of the pass, and answers the look.
    fn keep(
        &mut self,
        stamp: FileStamp,
        held: Held,
        run: &[u8; 32],
        asked: &[(usize, &str)],
    ) -> Option<Found> {
        let found = held.answer(stamp, run, asked);
        self.by_stamp.insert(stamp, held);
        found
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

/// The halt ids among `asked` raised by `run_id`'s other registries in `dir` (not `own`),
/// read through the pass's `reads`: a fault one state file still has is not resolved
/// because another state file of the run cleared it. Only the ids asked about are kept:
/// the others' registries may hold up to 8 MiB of ids each, and a pass asks only about the
/// faults its run raises or clears.
/// A registry whose state file is gone is removed instead (the run's lock is held): that
/// file raises nothing any more, and counting it would keep a new state file of the run
/// from filing, and later resolving, the same fault for ever. Its pending events stay
/// for an investigator.
pub fn raised_elsewhere(
    reads: &mut PassReads,
    dir: &PrivateDir,
    (run_id, own): (&str, &str),
    asked: &HashSet<&str>,
) -> Elsewhere {
    let prefix = name_prefix(run_id);
    let mut elsewhere = Elsewhere {
        run: Sha256::digest(run_id).into(),
        ..Elsewhere::default()
    };
    let listed = dir.names_matching_up_to(MAX_NAMES_PER_LISTING, |n| {
        n != own && n.starts_with(&prefix) && n.ends_with(".json") && may_be_registry_name(n)
    });
    let names = match listed {
        Ok((names, cut)) => {
            // A registry left unread may hold the fault: it stays raised.
            if cut {
                elsewhere.push_unread(
                    None,
                    format!(
                        "{}: more than {MAX_NAMES_PER_LISTING} registries of the run",
                        dir.path().display()
                    ),
                );
            }
            names
        }
        Err(e) => {
            elsewhere.push_unread(None, format!("{}: {e}", dir.path().display()));
            return elsewhere;
        }
    };
    let run: [u8; 32] = Sha256::digest(run_id.as_bytes()).into();
    let asked = reads.ask(&run, asked);
    let waiting_before = reads.budget.waiting();
    // A file under many names (hard links) is said once, with how many more names it had.
    let mut said: HashMap<FileStamp, (usize, usize)> = HashMap::new();
    for name in names {
        let path = dir.join(&name);
        match reads.found(dir, &name, &run, &asked) {
            None | Some(Ok(Found::OtherRun)) => {}
            Some(Ok(Found::Registry {
                source: Some(source),
                ..
            })) if source_is_gone(&source) => {
                if let Err(e) = dir.remove_if_there(&name) {
                    tracing::warn!(file = %path.display(), "registry of a gone state file not removed: {e}");
                }
            }
            Some(Ok(Found::Registry { ids, .. })) => elsewhere.raised.extend(ids),
            Some(Ok(Found::Invalid(stamp, reason))) => {
                let line = elsewhere.unread.len();
                let (first, more) = said.entry(stamp).or_insert((line, 0));
                if *first == line {
                    elsewhere.push_unread(
                        Some(Said::File(stamp)),
                        format!("{}: {reason}", path.display()),
                    );
                } else {
                    *more += 1;
                }
            }
            Some(Err(not_read)) => {
                elsewhere.push_unread(None, format!("{}: {not_read}", path.display()))
            }
        }
    }
    for (line, more) in said.into_values().filter(|(_, more)| *more > 0) {
        elsewhere.unread[line].push_str(&format!(" (the same file under {more} more names)"));
    }
    reads.left_unread(&mut elsewhere, dir, reads.budget.waiting() - waiting_before);
    elsewhere
}

impl PassReads {
    /// Counts the `left` registries the look left unread past the pass's budget as one
    /// unread entry (they may hold any fault, so it stays raised), and logs, once a pass,
    /// that the budget ran out.
    fn left_unread(&mut self, elsewhere: &mut Elsewhere, dir: &PrivateDir, left: usize) {
        if left == 0 {
            return;
        }
        elsewhere.push_unread(None, format!(
            "{}: {left} registries of the run not read: one fault-watch pass reads at most {MAX_ELSEWHERE_READ_BYTES} bytes and {MAX_ELSEWHERE_FILES} files of runs' other registries; read again next tick",
            dir.path().display()
        ));
        if !self.warned {
            self.warned = true;
            tracing::warn!(dir = %dir.path().display(), "this pass read {MAX_ELSEWHERE_READ_BYTES} bytes or {MAX_ELSEWHERE_FILES} files of runs' other registries: the rest are left unread, and the faults of their runs stay raised until a later pass reads them");
        }
    }

    /// The lines of `elsewhere`'s unread registries this pass has not yet said: each look
    /// of the run's state files finds them again, and saying them each look is looks ×
    /// files lines a pass. Past `max_files` said, a new one is said each look rather than
    /// go unsaid. Saying is all this decides: the faults they may hold stay raised.
    pub fn unsaid<'a>(&mut self, elsewhere: &'a Elsewhere) -> Vec<&'a str> {
        elsewhere
            .about
            .iter()
            .zip(&elsewhere.unread)
            .filter(|(about, _)| {
                let key = (elsewhere.run, **about);
                !self.said.contains(&key)
                    && (self.said.len() >= self.max_files || self.said.insert(key))
            })
            .map(|(_, line)| line.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests;
