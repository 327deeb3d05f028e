//! Runs whose raised faults did not change since berth last read their registry: a pass
//! over such a run neither takes its lock nor reads its registry (up to 8 MiB), only stats
//! it. What berth last read is remembered by the registry's stamp ([`FileStamp`]) and a
//! digest of its detector ids; a registry whose stamp moved, or a run whose detectors now
//! find another set of faults, is synced as ever.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use sha2::{Digest, Sha256};

use super::super::halt::HaltEvent;
use super::super::json_file::MAX_JSON_BYTES;
use crate::file_stamp::{FileStamp, ReadStart};
use crate::private_dir::PrivateDir;

/// Registries remembered at once; past it all are forgotten (and read again by the next
/// pass that syncs each run).
pub const MAX_REGISTRIES_REMEMBERED: usize = 10_000;

/// A registry as berth last read it: its stamp and the digest of its detector ids.
type Read = (FileStamp, [u8; 32]);

/// Each registry's path → how berth last read it.
static READ: LazyLock<Mutex<HashMap<PathBuf, Read>>> = LazyLock::new(Mutex::default);

/// The stamp of a registry before its sync, if one is there and its stamp is old enough to
/// prove its content.
#[derive(Clone, Copy)]
pub struct Look(Option<FileStamp>);

impl Look {
    /// `name` in `active` as it is now.
    pub fn now(active: &PrivateDir, name: &str) -> Look {
        let start = ReadStart::now();
        let Ok((_, meta)) = active.open_regular(name, MAX_JSON_BYTES) else {
            return Look(None);
        };
        let (seen, racy) = start.judge(FileStamp::of(&meta), None);
        Look((!racy).then_some(seen.stamp))
    }

    /// Whether the registry is the one last read and held the detector ids of `events`.
    pub fn unchanged_for(self, active: &PrivateDir, name: &str, events: &[HaltEvent]) -> bool {
        let Some(stamp) = self.0 else {
            return false;
        };
        let ids: BTreeSet<&str> = events.iter().map(|e| e.detector_id.as_str()).collect();
        let read = READ.lock().unwrap_or_else(|e| e.into_inner());
        read.get(&active.join(name))
            .is_some_and(|(was, digest)| *was == stamp && *digest == digest_of(ids))
    }

    /// Remembers the registry `name` berth just read, holding `detector_ids`, when the
    /// file there still carries this look's stamp.
    pub fn remember<'a>(
        self,
        active: &PrivateDir,
        name: &str,
        detector_ids: impl Iterator<Item = &'a String>,
    ) {
        let Some(stamp) = self.0 else {
            return;
        };
        if Look::now(active, name).0 != Some(stamp) {
            return;
        }
        let digest = digest_of(detector_ids.map(String::as_str));
        let mut read = READ.lock().unwrap_or_else(|e| e.into_inner());
        if read.len() >= MAX_REGISTRIES_REMEMBERED {
            read.clear();
        }
        read.insert(active.join(name), (stamp, digest));
    }
}

/// Forgets the registry `name` (removed).
pub fn forget(active: &PrivateDir, name: &str) {
    READ.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&active.join(name));
}

/// A digest of sorted, distinct detector ids, each length-prefixed.
fn digest_of<'a>(ids: impl IntoIterator<Item = &'a str>) -> [u8; 32] {
    let mut hash = Sha256::new();
    for id in ids {
        hash.update((id.len() as u64).to_le_bytes());
        hash.update(id.as_bytes());
    }
    hash.finalize().into()
}
