//! The subdirs of the halt dir a store works in, each opened once per store (the daemon
//! makes one per pass) as a [`PrivateDir`] and used by its descriptor from then on:
//! whoever writes the halt dir can swap a subdir for a symlink at any moment, and a write
//! by name would follow it. Opened again by the next store, so a dir the operator removed
//! is made anew, and one swapped for a link is refused with its reason for that pass.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{ACTIVE_DIR, COLLAPSED_DIR, PENDING_DIR, PROCESSED_DIR};
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

/// The subdirs opened so far; one that could not be opened is tried again at its next use.
#[derive(Debug, Default)]
pub struct Opened {
    slots: Mutex<[Option<Arc<PrivateDir>>; 4]>,
}

impl Opened {
    /// `sub` of `dir`, created if missing, opened at its first use by this store.
    pub fn get(&self, dir: &Path, sub: Sub) -> Result<Arc<PrivateDir>, PrivateDirError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[sub.slot()];
        if let Some(opened) = slot {
            return Ok(Arc::clone(opened));
        }
        let opened = Arc::new(PrivateDir::ensure(dir, sub.name())?);
        *slot = Some(Arc::clone(&opened));
        Ok(opened)
    }

    /// `sub` of `dir` as [`Opened::get`] opens it, but never created: `None` while it is
    /// not there (an ack has nothing to move, and must not make a dir the daemon's user
    /// cannot open).
    pub fn existing(
        &self,
        dir: &Path,
        sub: Sub,
    ) -> Result<Option<Arc<PrivateDir>>, PrivateDirError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[sub.slot()];
        if let Some(opened) = slot {
            return Ok(Some(Arc::clone(opened)));
        }
        let Some(opened) = PrivateDir::open_existing(dir, sub.name())? else {
            return Ok(None);
        };
        let opened = Arc::new(opened);
        *slot = Some(Arc::clone(&opened));
        Ok(Some(opened))
    }
}
