//! The subdirs of the halt dir a store works in, each opened once per store (the daemon
//! makes one per pass) as a [`PrivateDir`] and used by its descriptor from then on:
//! whoever writes the halt dir can swap a subdir for a symlink at any moment, and a write
//! by name would follow it. Opened again by the next store, so a dir the operator removed
//! is made anew, and one swapped for a link is refused with its reason for that pass: said
//! at the store's first use of it, and refused without a word at every later one
//! ([`HaltStoreError::SaidBefore`]), or a pass over 10,000 state files would say it 10,000
//! times.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{ACTIVE_DIR, COLLAPSED_DIR, HaltStoreError, PENDING_DIR, PROCESSED_DIR};
use crate::private_dir::{PrivateDir, PrivateDirError};

/// One subdir of the halt dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Pending,
    Processed,
    Collapsed,
    Active,
}

impl Sub {
    const ALL: [Sub; 4] = [Sub::Pending, Sub::Processed, Sub::Collapsed, Sub::Active];

    pub fn name(self) -> &'static str {
        match self {
            Sub::Pending => PENDING_DIR,
            Sub::Processed => PROCESSED_DIR,
            Sub::Collapsed => COLLAPSED_DIR,
            Sub::Active => ACTIVE_DIR,
        }
    }

    fn slot(self) -> usize {
        Sub::ALL.iter().position(|s| *s == self).unwrap_or_default()
    }
}

/// What a store found of one subdir.
#[derive(Debug, Default)]
enum Slot {
    /// Not looked at yet, or not there when looked at without making it.
    #[default]
    Unopened,
    Open(Arc<PrivateDir>),
    /// Could not be opened (a symlink, another user's): said once, refused from then on.
    Refused,
}

/// The subdirs opened so far, and those refused, for the store's lifetime.
#[derive(Debug, Default)]
pub struct Opened {
    slots: Mutex<[Slot; 4]>,
}

impl Opened {
    /// `sub` of `dir`, created if missing, opened at its first use by this store.
    pub fn get(&self, dir: &Path, sub: Sub) -> Result<Arc<PrivateDir>, HaltStoreError> {
        let made = self.open(dir, sub, |dir, name| {
            PrivateDir::ensure(dir, name).map(Some)
        })?;
        Ok(made.expect("ensure makes the dir or fails"))
    }

    /// `sub` of `dir` as [`Opened::get`] opens it, but never created: `None` while it is
    /// not there (an ack has nothing to move, and must not make a dir the daemon's user
    /// cannot open).
    pub fn existing(
        &self,
        dir: &Path,
        sub: Sub,
    ) -> Result<Option<Arc<PrivateDir>>, HaltStoreError> {
        self.open(dir, sub, PrivateDir::open_existing)
    }

    /// `sub` as this store has it, else as `open` opens it, remembered either way.
    fn open(
        &self,
        dir: &Path,
        sub: Sub,
        open: impl FnOnce(&Path, &str) -> Result<Option<PrivateDir>, PrivateDirError>,
    ) -> Result<Option<Arc<PrivateDir>>, HaltStoreError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[sub.slot()];
        match slot {
            Slot::Open(opened) => return Ok(Some(Arc::clone(opened))),
            Slot::Refused => {
                return Err(HaltStoreError::SaidBefore {
                    path: dir.join(sub.name()),
                });
            }
            Slot::Unopened => {}
        }
        match open(dir, sub.name()) {
            Ok(Some(opened)) => {
                let opened = Arc::new(opened);
                *slot = Slot::Open(Arc::clone(&opened));
                Ok(Some(opened))
            }
            Ok(None) => Ok(None),
            Err(refused) => {
                *slot = Slot::Refused;
                Err(refused.into())
            }
        }
    }
}
