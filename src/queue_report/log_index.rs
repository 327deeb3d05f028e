//! The decision log as the queue page reads it again and again: followed, not re-read. Each
//! request opens the generations (as every reader does, under the rotation lock) and
//! parses only the lines appended since the last one, from the offset it reached in the
//! generation it was reading; a rotation renames that file, so it is found again by its
//! device and inode among the generations. Past a rotation that dropped a generation it
//! had read (or a file shorter than the offset reached), the index is built again from
//! the start, so it holds what a whole read would find, never a dropped generation's lines.
//!
//! What it keeps: the queue page's folds (policy waits, landing history), and where each
//! PR's lines and each forced lock release are ([`LineRef`]), at most [`MAX_PLACES`]; a
//! PR's story re-reads just its own lines by offset. Past that cap stories are told by a
//! whole read of the log, as `berth explain` tells them; so is the story of a PR whose
//! number a place cannot hold (`u32::MAX` and past), whose lines get no place, but only
//! once such a line was read: until then such a PR has no lines and its story is told
//! without reading any (anyone who reaches the endpoint can ask for any number).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::history::{History, HistoryFold};
use crate::rules::decisions::{self, PolicyWait, PrHistory};
use crate::rules::journal::JournalLine;

/// Places the index keeps (16 bytes each, so 32 MiB; a forced lock release about a PR takes
/// two, one as the PR's line and one as a release): more than the lines of the 320 MiB of a
/// full log family at its usual ~300 bytes a line.
pub const MAX_PLACES: usize = 2 * 1024 * 1024;

/// Where one line is and whose it is, in 16 bytes: its generation (position among those
/// read, oldest first) in the top [`GENERATION_BITS`] of `at` and its offset below them,
/// its length (its line end left out), and its PR ([`NO_PR`]: none). The places are one
/// flat list, so a place costs these 16 bytes and no map entry or list of its own; a PR's
/// story scans the list (32 MiB at most) instead of looking its PR up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct LineRef {
    at: u64,
    len: u32,
    pr: u32,
}

const GENERATION_BITS: u32 = 16;
const OFFSET_BITS: u32 = u64::BITS - GENERATION_BITS;
/// The `pr` of a place about no PR (a forced lock release).
const NO_PR: u32 = u32::MAX;

/// The `pr` a place holds for PR `pr`, `None` when it cannot hold it (past `u32`, or the
/// no-PR mark): that PR's lines get no place and its story is a whole read.
fn placed_pr(pr: u64) -> Option<u32> {
    u32::try_from(pr).ok().filter(|pr| *pr != NO_PR)
}

impl LineRef {
    /// Where a line is, about no PR, if that fits in 16 bytes (a line past it makes the
    /// index full).
    fn new(generation: usize, offset: u64, len: usize) -> Option<LineRef> {
        let generation = u64::try_from(generation)
            .ok()
            .filter(|g| *g < 1 << GENERATION_BITS)?;
        Some(LineRef {
            at: (generation << OFFSET_BITS) | (offset < 1 << OFFSET_BITS).then_some(offset)?,
            len: u32::try_from(len).ok()?,
            pr: NO_PR,
        })
    }

    fn generation(self) -> usize {
        (self.at >> OFFSET_BITS) as usize
    }

    fn offset(self) -> u64 {
        self.at & ((1 << OFFSET_BITS) - 1)
    }
}

/// One generation read so far: its identity and how far it was read.
#[derive(Debug)]
struct Generation {
    dev: u64,
    ino: u64,
    offset: u64,
}

#[derive(Debug, Default)]
struct Index {
    generations: Vec<Generation>,
    /// The places of the PRs' lines, in the order read.
    places: Vec<LineRef>,
    releases: Vec<LineRef>,
    indexed: usize,
    /// Lines about a PR no place can hold (`u32::MAX` and past).
    unplaced: usize,
    /// More places than [`MAX_PLACES`], or a line no place can locate: stories need a
    /// whole read.
    full: bool,
    waits: HashMap<String, PolicyWait>,
    history: HistoryFold,
}

/// The followed decision log of one berth dir.
#[derive(Debug, Default)]
pub struct DecisionIndex {
    index: Mutex<Index>,
    /// Bytes of log lines parsed since this index was made, for tests and operators.
    parsed: Mutex<u64>,
}

impl DecisionIndex {
    /// Bytes of lines parsed so far.
    pub fn bytes_parsed(&self) -> u64 {
        *self.parsed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`decisions::policy_waits`], from what was appended since the last call.
    pub fn policy_waits(&self, berth_dir: &Path) -> io::Result<HashMap<String, PolicyWait>> {
        let mut index = self.lock();
        self.follow(&mut index, berth_dir)?;
        Ok(index.waits.clone())
    }

    /// [`History::read`], from what was appended since the last call.
    pub fn history(&self, berth_dir: &Path) -> io::Result<History> {
        let mut index = self.lock();
        self.follow(&mut index, berth_dir)?;
        Ok(index.history.history())
    }

    /// [`decisions::pr_history`]: the PR's own lines read again by offset, the rest of the
    /// log only where it was appended.
    pub fn pr_history(
        &self,
        berth_dir: &Path,
        pr: u64,
        repo: Option<&str>,
    ) -> io::Result<PrHistory> {
        let mut index = self.lock();
        let files = self.follow(&mut index, berth_dir)?;
        // A PR no place can hold has lines only if one such line was read.
        let whole_read = index.full || (placed_pr(pr).is_none() && index.unplaced > 0);
        if whole_read {
            drop(index);
            return decisions::pr_history(berth_dir, pr, repo);
        }
        let own: Vec<LineRef> = match placed_pr(pr) {
            Some(placed) => index
                .places
                .iter()
                .filter(|at| at.pr == placed)
                .copied()
                .collect(),
            None => Vec::new(),
        };
        let mut found = PrHistory::default();
        let mut taken = HashSet::new();
        for (at, line) in read_lines(&files, &own)? {
            if repo.is_none_or(|r| line.repo() == Some(r)) {
                taken.insert(at.at);
                found.lines.push(line);
            }
        }
        let releases: Vec<LineRef> = index
            .releases
            .iter()
            .filter(|at| !taken.contains(&at.at))
            .copied()
            .collect();
        found.lock_releases = read_lines(&files, &releases)?
            .into_iter()
            .map(|(_, line)| line)
            .collect();
        Ok(found)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the generations and takes in what was appended; the open files, oldest first.
    fn follow(&self, index: &mut Index, berth_dir: &Path) -> io::Result<Vec<File>> {
        let files = decisions::files(berth_dir).open_all()?;
        let mut ids = Vec::with_capacity(files.len());
        for file in &files {
            let meta = file.metadata()?;
            ids.push((meta.dev(), meta.ino(), meta.len()));
        }
        let resumable = index.generations.len() <= ids.len()
            && index
                .generations
                .iter()
                .zip(&ids)
                .all(|(g, &(dev, ino, len))| g.dev == dev && g.ino == ino && len >= g.offset);
        if !resumable {
            *index = Index::default();
        }
        let last = files.len().saturating_sub(1);
        for (n, (file, &(dev, ino, _))) in files.iter().zip(&ids).enumerate() {
            if n == index.generations.len() {
                index.generations.push(Generation {
                    dev,
                    ino,
                    offset: 0,
                });
            }
            // A rotated generation is written no more: a torn last line there is whole.
            let parsed = take_from(index, n, file, n < last)?;
            *self.parsed.lock().unwrap_or_else(PoisonError::into_inner) += parsed;
        }
        Ok(files)
    }
}

/// Takes in generation `n`'s lines from the offset reached; an unended last line only when
/// `finished`. Returns the bytes parsed.
fn take_from(index: &mut Index, n: usize, file: &File, finished: bool) -> io::Result<u64> {
    let start = index.generations[n].offset;
    let mut reader = io::BufReader::new(file);
    reader.seek(SeekFrom::Start(start))?;
    let mut offset = start;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = reader.by_ref().read_until(b'\n', &mut buf)?;
        if read == 0 || (buf.last() != Some(&b'\n') && !finished) {
            break;
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if let Ok(line) = serde_json::from_slice::<JournalLine>(text) {
            let at = LineRef::new(n, offset, text.len());
            index.take(&line, at);
        }
        offset += read as u64;
    }
    index.generations[n].offset = offset;
    Ok(offset - start)
}

impl Index {
    /// Takes in one line; `at` is where it is, `None` if that does not fit a [`LineRef`].
    fn take(&mut self, line: &JournalLine, at: Option<LineRef>) {
        decisions::fold_wait(&mut self.waits, line);
        self.history.take(line);
        let release = decisions::is_lock_release(line);
        // A PR no place can hold gets none: its story is a whole read (`pr_history`).
        let own = line.pr().and_then(placed_pr);
        self.unplaced += usize::from(line.pr().is_some() && own.is_none());
        let wanted = usize::from(own.is_some()) + usize::from(release);
        if wanted == 0 || self.full {
            return;
        }
        let Some(at) = at.filter(|_| self.indexed + wanted <= MAX_PLACES) else {
            self.full = true;
            self.places = Vec::new();
            self.releases = Vec::new();
            return;
        };
        self.indexed += wanted;
        if let Some(pr) = own {
            self.places.push(LineRef { pr, ..at });
        }
        if release {
            self.releases.push(at);
        }
    }
}

/// The lines at `refs`, parsed again; a line that no longer parses (the file was written
/// over) is left out.
fn read_lines(files: &[File], refs: &[LineRef]) -> io::Result<Vec<(LineRef, JournalLine)>> {
    let mut lines = Vec::with_capacity(refs.len());
    let mut buf = Vec::new();
    for at in refs {
        let Some(file) = files.get(at.generation()) else {
            continue;
        };
        buf.resize(at.len as usize, 0);
        file.read_exact_at(&mut buf, at.offset())?;
        if let Ok(line) = serde_json::from_slice(&buf) {
            lines.push((*at, line));
        }
    }
    Ok(lines)
}

#[cfg(test)]
#[path = "log_index_tests.rs"]
pub(super) mod tests;
