//! Where the lock commands find a repo's lane locks: its gated origin and a lock client.

use std::path::PathBuf;

use anyhow::Context as _;

use super::Context;
use crate::lane_lock::LockClient;

/// A lock client whose scratch repo lives in `dir`.
pub(super) fn client(dir: &std::path::Path) -> anyhow::Result<LockClient> {
    Ok(crate::queue_report::lock_client(dir)?)
}

/// The origin URL of a repo, read only after the repo passed the gate.
pub(super) fn gated_origin(
    ctx: &Context,
    repo_path: &std::path::Path,
) -> anyhow::Result<(PathBuf, String)> {
    let gated = ctx
        .allowlist(&ctx.config()?)
        .gate_repo_path(&repo_path.to_string_lossy())?;
    let url = crate::identity::origin_url(gated.path())?
        .with_context(|| format!("{} has no `origin` remote", gated.path().display()))?;
    Ok((gated.path().to_owned(), url))
}
