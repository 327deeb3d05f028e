//! How long berth has seen a ref's `.lock` file unchanged ([`super::leftover`]), counted
//! on `CLOCK_BOOTTIME` and kept in berth's dir ([`super::sightings`]) so that every berth
//! process (`berth run --once` from cron, a restarted daemon) counts from the first look.
//!
//! A sighting holds for one file (device, inode, size, modification time) at one path in
//! one boot: a changed file, or a look after a reboot (`CLOCK_BOOTTIME` starts again at
//! boot), starts it again at that look. So it ends at most [`super::LEFTOVER_AGE`] after
//! the first look of a boot, and a damaged or lost sightings file only starts it later.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::sightings::{Sighted, Sightings};
use crate::boot_clock::{BootTime, boot_id};

/// The `.lock` files berth has seen, by path, each as its identity `F` shows it.
pub(super) type LeftoverSightings<F> = Sightings<Sighting<F>>;

/// What identifies a file as unchanged (device, inode, size, modification time).
pub(super) trait FileIdentity: Copy + PartialEq + Serialize + DeserializeOwned {}

impl<F: Copy + PartialEq + Serialize + DeserializeOwned> FileIdentity for F {}

/// One `.lock` file as berth first saw it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "F: FileIdentity")]
pub(super) struct Sighting<F> {
    file: F,
    boot: String,
    /// [`BootTime`] nanoseconds of the first look.
    first: i64,
    /// Unix milliseconds of the last look, to forget the least recently seen.
    last: i64,
}

impl<F: FileIdentity> Sighted for Sighting<F> {
    fn last_seen(&self) -> i64 {
        self.last
    }
}

/// How long berth has seen `file` at `path` unchanged up to `now`; a first look (or a
/// changed file, another boot, a first look "after" `now`) starts the count at zero.
pub(super) fn unchanged_for<F: FileIdentity>(
    seen: &LeftoverSightings<F>,
    path: &Path,
    file: F,
    now: BootTime,
) -> Duration {
    let key = path.to_string_lossy().into_owned();
    let wall = crate::clock::now().timestamp_millis();
    let first = seen.with(|known| match known.get_mut(&key) {
        Some(sighting)
            if sighting.file == file
                && sighting.boot == boot_id()
                && sighting.first <= now.as_nanos() =>
        {
            sighting.last = wall;
            (BootTime::from_nanos(sighting.first), false)
        }
        _ => {
            let sighting = Sighting {
                file,
                boot: boot_id().to_owned(),
                first: now.as_nanos(),
                last: wall,
            };
            known.insert(key, sighting);
            (now, true)
        }
    });
    now.since(first)
}

/// Forgets the file at `path` (it is gone).
pub(super) fn forget<F: FileIdentity>(seen: &LeftoverSightings<F>, path: &Path) {
    let key = path.to_string_lossy();
    seen.with(|known| ((), known.remove(key.as_ref()).is_some()));
}
