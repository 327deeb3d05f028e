//! `berth lock check REF --sha SHA`: whether exactly that lane lock is live on origin, for
//! a land command to fence its own push (`{lock_ref}`, `{lock_sha}`).
//!
//! Exit 0 only when the ref on the repo's `origin` points at SHA and that lock is live
//! (not expired, its holder not known to be gone); 1 when it is not (moved, taken over,
//! released, expired); 2 when it cannot be told (no repo, origin unreachable, bad SHA).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::{Context, Outcome};
use crate::lane_lock::{ListedLock, LockListing};

/// What the check found, said on stdout.
pub(super) fn check(
    ctx: &Context,
    ref_name: &str,
    sha: &str,
    repo_path: Option<&Path>,
    berth_dir: Option<&PathBuf>,
) -> anyhow::Result<Outcome> {
    let sha = sha.trim().to_ascii_lowercase();
    if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--sha {sha:?} is not a commit id: pass the `{{lock_sha}}` berth gave the step");
    }
    let repo = match repo_path {
        Some(path) => path.to_path_buf(),
        None => std::env::current_dir().context("the current directory cannot be read")?,
    };
    let (path, url) = super::lock_origin::gated_origin(ctx, &repo)?;
    let dir = berth_dir
        .cloned()
        .unwrap_or_else(crate::paths::default_berth_dir);
    let listed = super::lock_origin::client(&dir)?
        .list(&url)
        .with_context(|| {
            format!(
                "cannot read the lane locks on the origin of {}",
                path.display()
            )
        })?;
    let lock = listed.iter().find(|l| l.ref_name == ref_name);
    let (live, why) = verdict(lock, &sha);
    println!("{ref_name}: {why}");
    Ok(if live {
        Outcome::Clean
    } else {
        Outcome::NeedsAttention
    })
}

/// (live, the sentence that says why) for the listed lock of the ref, if any.
fn verdict(lock: Option<&LockListing>, sha: &str) -> (bool, String) {
    let Some(lock) = lock else {
        return (
            false,
            "NOT live: no such lock on origin (released or never taken)".into(),
        );
    };
    if !lock.sha.eq_ignore_ascii_case(sha) {
        return (
            false,
            format!(
                "NOT live: the lock moved to {} (refreshed by a heartbeat, or taken over)",
                lock.sha
            ),
        );
    }
    match &lock.state {
        ListedLock::Live(p) => (
            true,
            format!("live: held by {} until {}", p.owner_id, p.expires_at),
        ),
        ListedLock::Expired(p) => (false, format!("NOT live: expired at {}", p.expires_at)),
        ListedLock::HolderGone { reason, .. } => {
            (false, format!("NOT live: its holder is gone ({reason})"))
        }
        ListedLock::Unreadable { reason } => (false, format!("NOT live: unreadable ({reason})")),
    }
}
