//! The active-fault registry of one run's state file: which detector faults are currently
//! raised and which halt event each was filed as, so a tick files only what is new and
//! resolves (once) what cleared.
//!
//! Keyed as gstack's monitor keys its registry, by detector id (`<category>:<phase>:<src>`):
//! two faults with one detector id (two hand-merged features) are one raised fault and one
//! halt event, the first one's. One file per (run id, state file),
//! `active-faults/<fileRunId>-<8 hex of sha256(state file)>.json`, replaced atomically under
//! the run's lock: two state files that carry the same run id keep separate registries, so
//! neither clears the other's faults. A registry whose content is invalid is moved aside
//! (never overwritten): the halt event files themselves make re-filing its faults harmless.
//! One the system could not read (`EMFILE`, `EIO`) is left alone and read again next tick.

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

/// The registry file of `run_id` detected in `source`, under `dir`.
pub fn path(dir: &Path, run_id: &str, source: &str) -> PathBuf {
    dir.join(name(run_id, source))
}

/// The name of the registry file of `run_id` detected in `source`.
pub fn name(run_id: &str, source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}{hex}.json", name_prefix(run_id))
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
    /// The file is there and is not a registry (torn, planted, a FIFO, too large): it is
    /// moved aside.
    Invalid(Invalid),
    /// The system could not read it (`EMFILE`, `EIO`, `EACCES`): nothing is known about its
    /// content, so it stays where it is and the next tick tries again.
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
        Err(e) => return Err(Unread::of(e)),
    };
    parse(&text).map(Some).map_err(Unread::Invalid)
}

impl Unread {
    fn of(e: ReadError) -> Unread {
        if e.is_refused() {
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

/// Writes `registry` as `name` in `dir` (pretty JSON, atomic).
pub fn save(dir: &PrivateDir, name: &str, registry: &Registry) -> std::io::Result<()> {
    let bytes = json_file::pretty(registry)?;
    dir.write_atomic(name, &bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// `active-faults/` in a fresh temp dir: the temp dir (kept alive) and the handle.
    fn active() -> (tempfile::TempDir, PrivateDir) {
        let root = tempfile::tempdir().unwrap();
        let dir = PrivateDir::ensure(root.path(), "active-faults").unwrap();
        (root, dir)
    }

    /// A look for a run's other registries keeps only the fault ids the pass asks about
    /// (the faults the run raises or clears): ten registries of the run planted within the
    /// 8 MiB a registry may be, each of distinct ids, are more than one faults-dir parse
    /// may take. Those past the look's read budget count as unread, the fault stays raised.
    #[test]
    fn a_look_for_a_runs_other_registries_holds_at_most_one_parse_of_fault_ids() {
        const REGISTRIES: usize = 10;
        const ENTRIES: usize = 1_900;
        let (_root, dir) = active();
        let scope = "s".repeat(4_000);
        for r in 0..REGISTRIES {
            let active = (0..ENTRIES)
                .map(|n| {
                    let fault = ActiveFault {
                        fault_id: format!("K:{scope}:{:08x}", r * ENTRIES + n),
                        first_detected_at: String::new(),
                    };
                    (format!("d{n}"), fault)
                })
                .collect();
            let registry = Registry {
                run_id: "run".into(),
                source: format!("/queue-{r}"),
                updated_at: String::new(),
                active,
            };
            let name = name("run", &format!("/queue-{r}"));
            save(&dir, &name, &registry).unwrap();
            let size = dir.entry(&name).unwrap().unwrap().size;
            assert!(size <= json_file::MAX_JSON_BYTES, "{size}");
        }
        // What a pass asks about: the faults its run raises or clears, here every tenth id
        // planted (as many as one registry of the run holds) and one held nowhere.
        let ids: Vec<String> = (0..REGISTRIES * ENTRIES)
            .step_by(10)
            .map(|n| format!("K:{scope}:{n:08x}"))
            .chain(["K:elsewhere:00000000".to_owned()])
            .collect();
        let asked: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let elsewhere = raised_elsewhere(
            &mut PassReads::default(),
            &dir,
            ("run", &name("run", "/s/own.json")),
            &asked,
        );
        assert_eq!(elsewhere.unread().len(), 1, "{:?}", elsewhere.unread());
        assert!(!elsewhere.raised.is_empty());
        assert!(
            elsewhere
                .raised
                .iter()
                .all(|id| asked.contains(id.as_str()))
        );
        assert!(!elsewhere.contains(&ids[ids.len() - 1]));
        let held: usize = elsewhere.raised.iter().map(String::len).sum();
        assert!(
            held <= json_file::MAX_JSON_PARSE,
            "one look holds {} fault ids, {held} bytes of them",
            elsewhere.raised.len()
        );
    }

    #[test]
    fn unreadable_registry_is_moved_aside_not_lost() {
        let (_root, dir) = active();
        let path = dir.join("run.json");
        let (registry, warning) = load(&dir, "run.json", "run", "/s.json").unwrap();
        assert!(registry.active.is_empty() && warning.is_none());
        std::fs::write(&path, b"{ torn").unwrap();
        let (registry, warning) = load(&dir, "run.json", "run", "/s.json").unwrap();
        assert!(registry.active.is_empty());
        assert!(warning.unwrap().contains("moved aside"));
        assert!(!path.exists());
        let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(kept.len(), 1);
        let kept = kept[0].as_ref().unwrap().path();
        assert_eq!(std::fs::read(kept).unwrap(), b"{ torn");
    }

    /// A run's own registry whose content quotes a megabyte string where a map belongs:
    /// serde's error quotes it whole, but the move aside's line says a cut of it.
    #[test]
    fn a_moved_aside_registry_is_said_in_a_bounded_line() {
        let (_root, dir) = active();
        let planted = format!(
            r#"{{"run_id":"run","source":"/s.json","updated_at":"","active":"{}"}}"#,
            "x".repeat(1 << 20)
        );
        std::fs::write(dir.join("run.json"), planted).unwrap();
        let (_, warning) = load(&dir, "run.json", "run", "/s.json").unwrap();
        let warning = warning.unwrap();
        assert!(warning.contains("moved aside"), "{warning}");
        assert!(
            warning.len() < 2 * MAX_SAID_BYTES + 400,
            "{} bytes",
            warning.len()
        );
    }

    /// Content planted at a registry's name on every pass leaves the newest few moved-aside
    /// files, not one per pass for good; other registries' files are not touched.
    #[test]
    fn only_the_newest_moved_aside_registries_are_kept() {
        let (_root, dir) = active();
        let older: Vec<String> = (1..=5)
            .map(|n| format!("run.json.unreadable-2020010{n}T000000.000Z"))
            .collect();
        for name in &older {
            std::fs::write(dir.join(name), b"{ torn").unwrap();
        }
        let other = "other.json.unreadable-20200101T000000.000Z";
        std::fs::write(dir.join(other), b"{ torn").unwrap();
        std::fs::write(dir.join("run.json"), b"{ torn").unwrap();
        load(&dir, "run.json", "run", "/s.json").unwrap();
        let (mut kept, _) = dir.names_up_to(usize::MAX).unwrap();
        kept.sort();
        assert_eq!(kept.len(), MAX_ASIDE_PER_REGISTRY + 1, "{kept:?}");
        assert_eq!(kept[0], other);
        assert_eq!(kept[1..3], older[3..5]);
        assert!(kept[3] > older[4], "{kept:?}");
    }

    /// Whoever writes the faults dir fills `active-faults/` with 60,000 names of 240 bytes:
    /// a fault watch pass's look for the run's other registries (and the move aside's
    /// pruning) holds them all, not the 10,000 names a listing of a halt subdir reads.
    #[test]
    fn a_look_for_a_runs_other_registries_holds_a_bounded_listing() {
        let (_root, dir) = active();
        for n in 0..60_000 {
            let name = format!("{n:06}{}", "x".repeat(234));
            std::fs::File::create(dir.join(name)).unwrap();
        }
        crate::rules::memory::start();
        let others = others_exist(&dir, "run", "run-01234567.json");
        let elsewhere = raised_elsewhere(
            &mut PassReads::default(),
            &dir,
            ("run", "run-01234567.json"),
            &HashSet::new(),
        );
        let peak = crate::rules::memory::stop();
        assert!(!others && elsewhere.raised.is_empty());
        let bound = (MAX_NAMES_PER_LISTING * (255 + 48)) as isize;
        assert!(
            peak <= bound,
            "looking for a run's other registries held {peak} bytes at its peak, over the {bound} of a 10,000-name listing"
        );
    }

    /// More registries of the run than a listing holds: the ones left unread may hold any
    /// fault, so they count as unread and the run's faults stay raised.
    #[test]
    fn more_registries_of_a_run_than_a_listing_holds_count_as_unread() {
        let (_root, dir) = active();
        // Another run with the same safe id: read, it raises nothing for `run/1`.
        let other = Registry {
            run_id: "run:1".into(),
            ..Registry::default()
        };
        save(&dir, "first.json", &other).unwrap();
        let prefix = name_prefix("run/1");
        for n in 0..=MAX_NAMES_PER_LISTING {
            fs::hard_link(
                dir.join("first.json"),
                dir.join(format!("{prefix}{n}.json")),
            )
            .unwrap();
        }
        let elsewhere = raised_elsewhere(
            &mut PassReads::default(),
            &dir,
            ("run/1", &name("run/1", "/s/b.json")),
            &HashSet::new(),
        );
        assert!(elsewhere.raised.is_empty());
        assert_eq!(elsewhere.unread().len(), 1, "{:?}", elsewhere.unread());
    }

    /// More moved-aside files than a listing holds: the newest may be among the unread, so
    /// none is removed.
    #[test]
    fn moved_aside_registries_past_a_listing_are_not_pruned() {
        let (_root, dir) = active();
        for n in 0..=MAX_NAMES_PER_LISTING {
            fs::File::create(dir.join(format!("r.json.unreadable-{n:06}"))).unwrap();
        }
        prune_asides(&dir, "r.json");
        let (left, _) = dir.names_up_to(usize::MAX).unwrap();
        assert_eq!(left.len(), MAX_NAMES_PER_LISTING + 1);
    }

    #[test]
    fn each_state_file_of_a_run_has_its_own_registry() {
        let (root, dir) = active();
        let (a_name, b_name) = (name("run/1", "/s/a.json"), name("run/1", "/s/b.json"));
        let a = path(dir.path(), "run/1", "/s/a.json");
        assert_ne!(a_name, b_name);
        assert!(
            a.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("run_1-")
        );
        let state = root.path().join("a-state.json");
        fs::write(&state, "{}").unwrap();
        let mut registry = Registry {
            run_id: "run/1".into(),
            source: state.display().to_string(),
            ..Registry::default()
        };
        registry.active.insert(
            "X:all:*".into(),
            ActiveFault {
                fault_id: "PHASE_FAILED:all:0123abcd".into(),
                first_detected_at: "t".into(),
            },
        );
        save(&dir, &a_name, &registry).unwrap();
        // Another run whose id has the same safe form does not count.
        save(
            &dir,
            &name("run:1", "/s/c.json"),
            &Registry {
                run_id: "run:1".into(),
                ..registry.clone()
            },
        )
        .unwrap();
        let asked = HashSet::from(["PHASE_FAILED:all:0123abcd"]);
        let elsewhere =
            raised_elsewhere(&mut PassReads::default(), &dir, ("run/1", &b_name), &asked);
        assert_eq!(
            elsewhere.raised,
            HashSet::from(["PHASE_FAILED:all:0123abcd".to_owned()])
        );
        assert!(elsewhere.unread().is_empty());
        assert!(
            raised_elsewhere(&mut PassReads::default(), &dir, ("run/1", &a_name), &asked)
                .raised
                .is_empty()
        );
        assert!(
            a.exists(),
            "{a:?}: only a gone state file's registry is removed"
        );
    }

    /// A registry of the run that cannot be read (here a directory in its place) may hold
    /// any fault: it is reported, never read as "holds nothing".
    #[test]
    fn an_unreadable_other_registry_is_reported_not_read_as_empty() {
        let (_root, dir) = active();
        let a = path(dir.path(), "run/1", "/s/a.json");
        fs::create_dir(&a).unwrap();
        let elsewhere = raised_elsewhere(
            &mut PassReads::default(),
            &dir,
            ("run/1", &name("run/1", "/s/b.json")),
            &HashSet::new(),
        );
        assert_eq!(elsewhere.unread().len(), 1, "{elsewhere:?}");
        assert!(elsewhere.unread()[0].contains(&a.display().to_string()));
    }
}
