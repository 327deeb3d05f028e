//! What a landing would make on its first need, made when the daemon first sees a queued
//! record pass its gates: the forge's private repository, a lock scratch repository, the
//! scratch worktrees' directory. The gate has started libgit2 by then (an idle daemon with
//! an empty queue never does, and keeps its memory), and the landing's claim write is the
//! next thing it waits for, so the warm-up runs beside it on a thread of its own, once per
//! process. Nothing waits for it: each part is made again on need if it is not there yet
//! or failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::forge::{Forge, ForgeRepo};
use crate::lane_lock::LockClient;

/// Whether this process has started its warm-up.
#[derive(Debug, Default)]
pub struct WarmUp {
    started: AtomicBool,
}

impl WarmUp {
    /// Starts the warm-up for a landing of `repo`, the first time only.
    pub fn once(
        &self,
        forge: &Arc<dyn Forge>,
        locks: &Arc<LockClient>,
        worktrees: PathBuf,
        repo: ForgeRepo,
    ) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let (forge, locks) = (Arc::clone(forge), Arc::clone(locks));
        let spawned = std::thread::Builder::new()
            .name("berth-warm-up".into())
            .spawn(move || {
                // In the order a landing needs them: the claim check, the lock, the checkout.
                forge.warm_up(&repo);
                locks.warm_up();
                if let Err(e) = crate::atomic_file::ensure_private_dir(&worktrees) {
                    tracing::debug!(dir = %worktrees.display(), "warm-up: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("warm-up not started: {e}");
        }
    }
}
