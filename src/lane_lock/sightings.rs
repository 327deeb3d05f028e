//! Sightings berth keeps across its processes, in a file of its own berth dir.
//!
//! Some judgements count from when berth first saw something unchanged: a planted
//! far-future lock ([`super::expiry_cap`]), a future-dated `.lock` file a dead writer left
//! ([`super::leftover`]). Kept in one process's memory, that first sighting would start again
//! with every process: `berth run --once` from cron, or a daemon restarted more often than
//! the wait, would never see the wait end and the lane would stand still for good. So every
//! process on a berth dir reads the sightings from its file before it judges and writes them
//! back (temp file and rename: never through a symlink, never half) when they changed.
//!
//! The file is berth's own, in its private directory, and still read as if hostile: one
//! that is not a regular file, is larger than [`MAX_FILE_BYTES`] or does not parse is
//! reported and replaced by what this process knows. A damaged file can only make berth
//! forget a sighting (which then starts again, later), never make one earlier. At most
//! [`MAX_SIGHTINGS`] are kept; past that, the one seen least recently is forgotten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::file_stamp::FileStamp;

/// The most sightings one file keeps; past it, the one seen least recently is forgotten.
pub const MAX_SIGHTINGS: usize = 4096;

/// The largest sightings file berth reads: [`MAX_SIGHTINGS`] entries of a few hundred bytes
/// each, with room to spare.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// One kept sighting.
pub(super) trait Sighted: Clone + Serialize + DeserializeOwned {
    /// When berth last saw it (one clock and unit per file), to forget the least recently
    /// seen.
    fn last_seen(&self) -> i64;
}

#[derive(Serialize, Deserialize)]
struct OnDisk<V> {
    sightings: HashMap<String, V>,
}

/// Sightings keyed by what was seen, kept in `path` (only in memory without one).
pub(super) struct Sightings<V> {
    path: Option<PathBuf>,
    state: Mutex<State<V>>,
}

struct State<V> {
    known: HashMap<String, V>,
    /// The file as last read: a file that still shows it is not read again (a listing
    /// looks at every far-future lock of an origin).
    read: Option<FileStamp>,
    /// The file's last problem reported, so a damaged file is named once, not every look.
    reported: Option<String>,
}

impl<V: Sighted> Sightings<V> {
    /// Sightings this process alone keeps.
    pub fn in_memory() -> Sightings<V> {
        Sightings {
            path: None,
            state: Mutex::new(State {
                known: HashMap::new(),
                read: None,
                reported: None,
            }),
        }
    }

    /// Sightings every berth process on `path`'s directory shares.
    pub fn at(path: PathBuf) -> Sightings<V> {
        Sightings {
            path: Some(path),
            ..Sightings::in_memory()
        }
    }

    /// Runs `judge` on the sightings as the last berth process left them; `judge` answers
    /// its result and whether it changed them, and changed ones are written back.
    pub fn with<R>(&self, judge: impl FnOnce(&mut HashMap<String, V>) -> (R, bool)) -> R {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut damaged = false;
        if let Some(path) = &self.path {
            let unchanged = std::fs::symlink_metadata(path)
                .ok()
                .is_some_and(|meta| Some(FileStamp::of(&meta)) == state.read);
            match if unchanged { Ok(None) } else { load(path) } {
                Ok(Some((known, read))) => (state.known, state.read) = (known, Some(read)),
                Ok(None) => {}
                Err(problem) => {
                    damaged = true;
                    let problem = problem.to_string();
                    if state.reported.as_ref() != Some(&problem) {
                        tracing::warn!(
                            file = %path.display(),
                            "the lane lock sightings file is damaged ({problem}): replaced by what this berth process has seen; a sighting it held starts again"
                        );
                        state.reported = Some(problem);
                    }
                }
            }
        }
        let (result, changed) = judge(&mut state.known);
        forget_stalest(&mut state.known);
        if (changed || damaged)
            && let Some(path) = &self.path
        {
            let problem = store(path, &state.known).map_err(|e| e.to_string());
            if let Err(problem) = problem
                && state.reported.as_ref() != Some(&problem)
            {
                tracing::warn!(
                    file = %path.display(),
                    "cannot write the lane lock sightings file ({problem}): sightings are kept in this process only, so a `run --once` or a restart starts them again"
                );
                state.reported = Some(problem);
            }
        }
        result
    }
}

/// Sightings read from a file, and the file as it was read.
type Loaded<V> = (HashMap<String, V>, FileStamp);

/// Why the sightings file could not be read or written.
#[derive(Debug, thiserror::Error)]
enum SightingsError {
    #[error("{0}")]
    Read(#[from] crate::hostile_file::ReadError),
    #[error("not the sightings' JSON: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("{0}")]
    Write(#[from] std::io::Error),
}

/// The sightings in `path` and the file they were read from: `None` when there is no file
/// yet, `Err` for a damaged one.
fn load<V: Sighted>(path: &Path) -> Result<Option<Loaded<V>>, SightingsError> {
    let (file, meta) = match crate::hostile_file::open_regular(path, MAX_FILE_BYTES) {
        Ok(opened) => opened,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let read = FileStamp::of(&meta);
    let bytes = crate::hostile_file::read_from((file, meta), MAX_FILE_BYTES)?;
    let on_disk: OnDisk<V> = serde_json::from_slice(&bytes)?;
    let mut known = on_disk.sightings;
    forget_stalest(&mut known);
    Ok(Some((known, read)))
}

fn store<V: Sighted>(path: &Path, known: &HashMap<String, V>) -> Result<(), SightingsError> {
    let on_disk = OnDisk {
        sightings: known.clone(),
    };
    let bytes = serde_json::to_vec(&on_disk)?;
    Ok(crate::atomic_file::write_atomic(path, &bytes, 0o600)?)
}

/// Forgets the least recently seen until at most [`MAX_SIGHTINGS`] are left.
fn forget_stalest<V: Sighted>(known: &mut HashMap<String, V>) {
    if known.len() <= MAX_SIGHTINGS {
        return;
    }
    let mut by_age: Vec<(i64, String)> = known
        .iter()
        .map(|(key, seen)| (seen.last_seen(), key.clone()))
        .collect();
    by_age.sort_unstable();
    let excess = known.len() - MAX_SIGHTINGS;
    for (_, key) in by_age.into_iter().take(excess) {
        known.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
    struct Seen {
        first: i64,
        last: i64,
    }

    impl Sighted for Seen {
        fn last_seen(&self) -> i64 {
            self.last
        }
    }

    fn first_of(sightings: &Sightings<Seen>, key: &str, now: i64) -> i64 {
        sightings.with(|known| match known.get(key) {
            Some(seen) => (seen.first, false),
            None => {
                known.insert(
                    key.to_owned(),
                    Seen {
                        first: now,
                        last: now,
                    },
                );
                (now, true)
            }
        })
    }

    #[test]
    fn a_sighting_outlives_its_process_and_a_damaged_file_only_restarts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sightings.json");
        assert_eq!(first_of(&Sightings::at(path.clone()), "a", 1), 1);
        // Another process, later: the first sighting holds.
        assert_eq!(first_of(&Sightings::at(path.clone()), "a", 5), 1);
        // A damaged file is replaced, and what it held starts again (never earlier).
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(first_of(&Sightings::at(path.clone()), "a", 9), 9);
        assert_eq!(first_of(&Sightings::at(path.clone()), "a", 12), 9);
        // A symlink at the file is neither read nor written through.
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, "keep").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(first_of(&Sightings::at(path.clone()), "a", 20), 20);
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        // An oversized file is replaced too.
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert_eq!(first_of(&Sightings::at(path.clone()), "a", 30), 30);
        assert!(std::fs::metadata(&path).unwrap().len() < 1024);
    }

    #[test]
    fn past_the_bound_the_least_recently_seen_is_forgotten() {
        let sightings = Sightings::in_memory();
        for i in 0..=MAX_SIGHTINGS as i64 {
            first_of(&sightings, &format!("k{i}"), i);
        }
        sightings.with(|known| {
            assert_eq!(known.len(), MAX_SIGHTINGS);
            assert!(!known.contains_key("k0"));
            assert!(known.contains_key(&format!("k{MAX_SIGHTINGS}")));
            ((), false)
        });
    }
}
