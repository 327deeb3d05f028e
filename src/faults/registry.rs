//! The active-fault registry of one run's state file: which detector faults are currently
//! raised and which halt event each was filed as, so a tick files only what is new and
//! resolves (once) what cleared.
//!
//! Keyed as gstack's monitor keys its registry, by detector id (`<category>:<phase>:<src>`,
//! a long one cut to a fixed size, [`key`]): two faults with one detector id (two hand-merged features) are one raised fault and one
//! halt event, the first one's. One file per (run id, state file),
//! `active-faults/<fileRunId>-<8 hex of sha256(state file)>.json`, replaced atomically under
//! the run's lock: two state files that carry the same run id keep separate registries, so
//! neither clears the other's faults. A registry whose content is invalid is moved aside
//! (never overwritten): the halt event files themselves make re-filing its faults harmless.
//! One the system could not read (`EMFILE`, `EIO`) is left alone and read again next tick.
//! berth never writes one larger than it reads ([`save`]): a run's own one that large is
//! moved aside as invalid; another run's, looked at, is left unread.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::json_file::{self, JsonFileError};
use super::run_id::{file_run_id, fit_stem};
use crate::hostile_file::ReadError;
use crate::private_dir::{MAX_NAMES_PER_LISTING, PrivateDir};

mod elsewhere;
pub use elsewhere::{Elsewhere, MAX_ELSEWHERE_READ_BYTES, PassReads, raised_elsewhere};

/// A raised detector fault: the halt event it was filed as.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveFault {
    pub fault_id: String,
    pub first_detected_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    pub run_id: String,
    /// The state file (or, for the queue, the queue dir) the faults were detected in.
    pub source: String,
    pub updated_at: String,
    /// Detector id → the halt event it was filed as.
    pub active: BTreeMap<String, ActiveFault>,
}

/// `KIND:scope:<8 hex>` with no path separator anywhere: the only halt ids a registry
/// written by berth holds. Anything else was planted, and would become a file name.
fn is_fault_id(id: &str) -> bool {
    let mut parts = id.splitn(3, ':');
    let (Some(kind), Some(scope), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !kind.is_empty()
        && kind.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        && !scope.is_empty()
        && !scope.contains(['/', '\\', '\0'])
        && hash.len() == 8
        && hash.chars().all(|c| c.is_ascii_hexdigit())
}

/// What a registry stores of one detector id at most, as written (JSON escapes counted):
/// a detector id carries its fault's first source file, which a state may name at any
/// length (a path of control bytes takes six times its size written), and a registry holds
/// one per raised detector id: 400 of a 23 KB plan path would be past the 8 MiB berth
/// reads back.
pub const MAX_KEY_BYTES: u64 = 512;

/// The key a registry keeps `detector_id` under: the id itself when it takes at most
/// [`MAX_KEY_BYTES`] written, else its start and `~<sha256 of the whole id, 64 hex>`,
/// within that bound. gstack never reads berth's registries (its monitor keeps its own,
/// `<safeRunId>.json`), so only berth compares these keys, always made by this function.
/// An id planted to equal another's cut key is one raised fault with it, as two
/// hand-merged features are.
pub fn key(detector_id: &str) -> String {
    const HASH: u64 = "~".len() as u64 + 64;
    let mut written = 0;
    let mut start = None;
    for (at, c) in detector_id.char_indices() {
        written += json_file::escaped_len(c);
        if start.is_none() && written > MAX_KEY_BYTES - HASH {
            start = Some(at);
        }
        if written > MAX_KEY_BYTES {
            let hex = sha256_hex(detector_id, 32);
            return format!("{}~{hex}", &detector_id[..start.unwrap_or(at)]);
        }
    }
    detector_id.to_owned()
}

/// The registry file of `run_id` detected in `source`, under `dir`.
pub fn path(dir: &Path, run_id: &str, source: &str) -> PathBuf {
    dir.join(name(run_id, source))
}

/// The name of the registry file of `run_id` detected in `source`.
pub fn name(run_id: &str, source: &str) -> String {
    format!("{}{}.json", name_prefix(run_id), sha256_hex(source, 4))
}

/// The first `bytes` of `text`'s SHA-256, in hex.
fn sha256_hex(text: &str, bytes: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..bytes].iter().map(|b| format!("{b:02x}")).collect()
}

/// What starts the name of every registry of `run_id`: its file run id (cut to fit, with
/// room for `<8 hex>.json` and the suffix a move aside adds) and `-`.
fn name_prefix(run_id: &str) -> String {
    const AFTER: usize = "-01234567.json".len() + ASIDE_SUFFIX_BYTES;
    format!("{}-", fit_stem(&file_run_id(run_id), AFTER))
}

/// `.unreadable-<%Y%m%dT%H%M%S%.3fZ>`, which [`aside_path`] adds to a registry's name.
const ASIDE_SUFFIX_BYTES: usize = ".unreadable-20260101T000000.000Z".len();

/// Moved-aside files kept per registry name, the newest: whoever writes the faults dir can
/// plant content at a registry's name on every pass, which would otherwise leave one file
/// per pass for good.
pub const MAX_ASIDE_PER_REGISTRY: usize = 3;

/// Why a registry could not be had.
#[derive(Debug)]
enum Unread {
    /// The file is there and is not a registry (torn, planted, a FIFO): it is moved aside.
    Invalid(Invalid),
    /// The system could not read it (`EMFILE`, `EIO`, `EACCES`), or it is another
    /// run's registry larger than berth reads (berth never writes one: [`save`] refuses): nothing is known about its
    /// content, so it stays where it is, its faults stay raised, and the next tick tries
    /// again. Only content read and found to be no registry is moved aside.
    Failed(ReadError),
}

/// What makes a file at a registry's path not a registry.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error(transparent)]
    Refused(ReadError),
    #[error(transparent)]
    Json(#[from] JsonFileError),
    #[error("not an active-fault registry: {0}")]
    NotRegistry(serde_json::Error),
    /// The id as [`said_cut`] quotes it: a planted one may be megabytes.
    #[error("{0} is not a fault id (KIND:scope:8 hex digits)")]
    NotFaultId(String),
}

/// Why a registry could not be loaded; both leave the file where it is.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}: {source}; left in place, read again next tick", .path.display())]
    Unread { path: PathBuf, source: ReadError },
    #[error(
        "{}: {reason}; could not move it aside to {}: {source}",
        .path.display(), .aside.display()
    )]
    NotMovedAside {
        path: PathBuf,
        /// Why it is no registry, cut ([`said_cut`]): a parse error may quote megabytes.
        reason: String,
        aside: PathBuf,
        source: std::io::Error,
    },
}

/// Loads the registry `name` in `dir` (`active-faults/`). `Ok((registry, None))` normally; a file whose content is
/// not a registry is renamed to `<name>.unreadable-<time>` and an empty registry returned
/// with the warning. A file the system could not read is an `Err` and stays in place: its
/// faults are neither forgotten nor filed again.
pub fn load(
    dir: &PrivateDir,
    name: &str,
    run_id: &str,
    source: &str,
) -> Result<(Registry, Option<String>), RegistryError> {
    let path = dir.join(name);
    let empty = || Registry {
        run_id: run_id.to_owned(),
        source: source.to_owned(),
        ..Registry::default()
    };
    let reason = match read(dir, name) {
        Ok(None) => return Ok((empty(), None)),
        Ok(Some(registry)) => return Ok((registry, None)),
        Err(Unread::Failed(source)) => return Err(RegistryError::Unread { path, source }),
        Err(Unread::Invalid(reason)) => said_cut(&reason.to_string()),
    };
    let aside_name = aside_name(name);
    let aside = dir.join(&aside_name);
    if let Err(source) = dir.rename_to(name, dir, &aside_name) {
        return Err(RegistryError::NotMovedAside {
            path,
            reason,
            aside,
            source,
        });
    }
    prune_asides(dir, name);
    Ok((
        empty(),
        Some(format!(
            "{}: {reason}; moved aside to {} and started afresh",
            path.display(),
            aside.display()
        )),
    ))
}

fn read(dir: &PrivateDir, name: &str) -> Result<Option<Registry>, Unread> {
    let text = match json_file::read_text_in(dir, name) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(None),
        // A run's own registry past what berth reads: berth writes none ([`save`]), so a
        // planted one or one a berth before 3ada9b0 wrote. Left unread it would hide every
        // new fault of its state file for good; as invalid content it is moved aside and
        // its faults filed anew (fail closed for halts). Other runs' stay unread.
        Err(e @ ReadError::TooLarge { .. }) => return Err(Unread::Invalid(Invalid::Refused(e))),
        Err(e) => return Err(Unread::of(e)),
    };
    parse(&text).map(Some).map_err(Unread::Invalid)
}

impl Unread {
    fn of(e: ReadError) -> Unread {
        if e.is_refused() && !matches!(e, ReadError::TooLarge { .. }) {
            Unread::Invalid(Invalid::Refused(e))
        } else {
            Unread::Failed(e)
        }
    }
}

fn parse(text: &str) -> Result<Registry, Invalid> {
    let value = json_file::parse(text)?;
    let registry: Registry = serde_json::from_value(value).map_err(Invalid::NotRegistry)?;
    match registry.active.values().find(|a| !is_fault_id(&a.fault_id)) {
        None => Ok(registry),
        Some(bad) => Err(Invalid::NotFaultId(quoted_cut(&bad.fault_id))),
    }
}

/// What a reason a registry is unreadable says at most of what the file holds: one line
/// (its id, a parse error quoting a string), not the megabytes a planted file may hold.
pub const MAX_SAID_BYTES: usize = 256;

/// `text` cut to [`MAX_SAID_BYTES`], saying so and how long it was.
pub fn said_cut(text: &str) -> String {
    let end = said_end(text);
    if end == text.len() {
        return text.to_owned();
    }
    format!("{}… (cut from {} bytes)", &text[..end], text.len())
}

/// Where `text` is cut to [`MAX_SAID_BYTES`]: the last char boundary up to it
/// (`str::floor_char_boundary` is newer than the crate's MSRV).
fn said_end(text: &str) -> usize {
    let mut end = MAX_SAID_BYTES.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// `id` quoted, its first [`MAX_SAID_BYTES`] only, saying so and how long it was.
fn quoted_cut(id: &str) -> String {
    let end = said_end(id);
    let quoted = format!("{:?}", &id[..end]);
    if end == id.len() {
        return quoted;
    }
    format!("{quoted}… (cut from {} bytes)", id.len())
}

/// The registry in a file the caller opened ([`PrivateDir::open_regular`]) to look at its
/// stamp first: `Ok(None)` when its content is no registry, an error when the system could
/// not read it (nothing is known about its content then).
pub fn read_opened(opened: (File, Metadata)) -> Result<Option<Registry>, ReadError> {
    match read_opened_registry(opened) {
        Ok(registry) => Ok(Some(registry)),
        Err(Unread::Invalid(_)) => Ok(None),
        Err(Unread::Failed(e)) => Err(e),
    }
}

fn read_opened_registry(opened: (File, Metadata)) -> Result<Registry, Unread> {
    let text = json_file::read_opened(opened, json_file::MAX_JSON_BYTES).map_err(Unread::of)?;
    parse(&text).map_err(Unread::Invalid)
}

/// Whether `name` (read lossily) may be the name of a registry, or of one moved aside:
/// those names are ASCII ([`name`], [`aside_name`]), so one that is not, or was not UTF-8
/// at all, is no run's.
pub fn may_be_registry_name(name: &str) -> bool {
    name.is_ascii() && !name.starts_with('.')
}

/// Whether `dir` holds a registry of `run_id` other than `own` (or a file that may be one,
/// moved aside included): while one does, the run's lock file stays.
pub fn others_exist(dir: &PrivateDir, run_id: &str, own: &str) -> bool {
    let prefix = name_prefix(run_id);
    let listed = dir.names_matching_up_to(1, |n| {
        n != own && n.starts_with(&prefix) && may_be_registry_name(n)
    });
    !matches!(listed, Ok((names, _)) if names.is_empty())
}

/// Whether a registry's source is a state file that is no longer there. The queue's
/// registry names the queue dir, never a `.json` file.
pub fn source_is_gone(source: &str) -> bool {
    source.ends_with(".json")
        && matches!(fs::symlink_metadata(source), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Removes all but the newest [`MAX_ASIDE_PER_REGISTRY`] moved-aside files of `name`. Their
/// stamps have one width, so the names sort as their times do.
fn prune_asides(dir: &PrivateDir, name: &str) {
    let prefix = format!("{name}.unreadable-");
    let mut asides = match dir
        .names_matching_up_to(MAX_NAMES_PER_LISTING, |n| n.starts_with(&prefix))
    {
        Ok((asides, false)) => asides,
        // Past the cap the newest may be among the unread: none is removed.
        Ok((_, true)) => {
            tracing::warn!(dir = %dir.path().display(), "moved-aside registries not pruned: more than {MAX_NAMES_PER_LISTING}");
            return;
        }
        Err(e) => {
            tracing::warn!(dir = %dir.path().display(), "moved-aside registries not pruned: {e}");
            return;
        }
    };
    asides.sort_unstable_by(|a, b| b.cmp(a));
    for old in asides.iter().skip(MAX_ASIDE_PER_REGISTRY) {
        if let Err(e) = dir.remove_if_there(old) {
            tracing::warn!(file = %dir.join(old).display(), "old moved-aside registry not removed: {e}");
        }
    }
}

fn aside_name(name: &str) -> String {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    format!("{name}.unreadable-{stamp}")
}

/// Writes `registry` as `name` in `dir` (atomic), pretty JSON or, past what berth reads
/// back, compact ([`json_file::within`]). One larger even so keeps only the first detector
/// id of each fault id (how many it left out is the answer): the others are found again
/// next pass, their fault held by that entry, so none is filed or resolved twice. One
/// larger still is refused (an error of kind `FileTooLarge` naming the bound) and the file
/// there is kept: berth never writes a registry it would refuse to read.
pub fn save(dir: &PrivateDir, name: &str, registry: &Registry) -> std::io::Result<usize> {
    let (bytes, left_out) = encode(registry)?;
    dir.write_atomic(name, &bytes, 0o600)?;
    Ok(left_out)
}

/// Whether [`save`] would write `registry` (within what berth reads back), built no
/// further than that bound: a pass asks before filing, so nothing is filed that the
/// registry cannot record (filed again every pass, an ack undone).
pub fn fits(registry: &Registry) -> bool {
    encode(registry).is_ok()
}

/// What [`save`] writes of `registry` and how many detector ids it leaves out.
fn encode(registry: &Registry) -> Result<(Vec<u8>, usize), json_file::WriteError> {
    const CAP: u64 = json_file::MAX_JSON_BYTES;
    Ok(match json_file::within(registry, CAP) {
        Ok(bytes) => (bytes, 0),
        Err(json_file::WriteError::TooLarge { .. }) => {
            let mut faults = std::collections::HashSet::new();
            let first_of_each = Registry {
                run_id: registry.run_id.clone(),
                source: registry.source.clone(),
                updated_at: registry.updated_at.clone(),
                active: registry
                    .active
                    .iter()
                    .filter(|(_, a)| faults.insert(a.fault_id.as_str()))
                    .map(|(id, a)| (id.clone(), a.clone()))
                    .collect(),
            };
            let left_out = registry.active.len() - first_of_each.active.len();
            (json_file::within(&first_of_each, CAP)?, left_out)
        }
        Err(e) => return Err(e),
    })
}

#[cfg(test)]
mod tests;
