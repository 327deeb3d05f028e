//! `berth lock status` and `berth lock release`: an operator's view of the lane locks on
//! each repo's `origin`, and the one way to remove a lock by hand.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::{Context, Outcome};
use crate::lane_lock::{ListedLock, LockClient, LockListing, LockSettings, Released};

#[derive(clap::Subcommand, Debug)]
pub enum LockCommand {
    /// List each lane's lock: ref, holder, created, expires, live or expired.
    Status {
        /// One repo; default: every repo that has a record in the queue.
        #[arg(long, value_name = "DIR")]
        repo_path: Option<PathBuf>,
        /// berth's private state dir.
        #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
        berth_dir: Option<PathBuf>,
    },
    /// Remove one lock after showing what it removes (only with --force).
    Release {
        /// The lock ref, as `lock status` prints it.
        #[arg(value_name = "REF")]
        ref_name: String,
        #[arg(long, value_name = "DIR")]
        repo_path: PathBuf,
        /// Really remove it; without this, only show what would be removed.
        #[arg(long)]
        force: bool,
        #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
        berth_dir: Option<PathBuf>,
    },
}

pub fn run(ctx: &Context, command: &LockCommand) -> anyhow::Result<Outcome> {
    match command {
        LockCommand::Status {
            repo_path,
            berth_dir,
        } => status(ctx, repo_path.as_ref(), client(berth_dir)?),
        LockCommand::Release {
            ref_name,
            repo_path,
            force,
            berth_dir,
        } => release(ctx, ref_name, repo_path, *force, berth_dir),
    }
}

fn client(berth_dir: &Option<PathBuf>) -> anyhow::Result<LockClient> {
    let dir = berth_dir
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir);
    crate::atomic_file::ensure_private_dir(&dir)?;
    Ok(LockClient::new(
        &dir.join("lock-scratch.git"),
        LockSettings::default(),
    )?)
}

/// The origin URL of a repo, read only after the repo passed the gate.
fn gated_origin(ctx: &Context, repo_path: &std::path::Path) -> anyhow::Result<(PathBuf, String)> {
    let gated = ctx
        .allowlist()
        .gate_repo_path(&repo_path.to_string_lossy())?;
    let url = crate::identity::origin_url(&gated.path)?
        .with_context(|| format!("{} has no `origin` remote", gated.path.display()))?;
    Ok((gated.path, url))
}

fn status(
    ctx: &Context,
    repo_path: Option<&PathBuf>,
    client: LockClient,
) -> anyhow::Result<Outcome> {
    let mut origins: BTreeMap<String, PathBuf> = BTreeMap::new();
    match repo_path {
        Some(path) => {
            let (path, url) = gated_origin(ctx, path)?;
            origins.insert(url, path);
        }
        None => {
            for stored in ctx.store.scan()?.records {
                if let Ok((path, url)) =
                    gated_origin(ctx, std::path::Path::new(&stored.record.repo_path))
                {
                    origins.entry(url).or_insert(path);
                }
            }
        }
    }
    if origins.is_empty() {
        println!("no repos to look at: the queue is empty (use --repo-path)");
        return Ok(Outcome::Clean);
    }
    let mut attention = false;
    for (url, path) in origins {
        println!("{} (origin {url})", path.display());
        match client.list(&url) {
            Ok(locks) if locks.is_empty() => println!("  no lane locks"),
            Ok(locks) => {
                for lock in &locks {
                    attention |= !matches!(lock.state, ListedLock::Live(_));
                    println!("  {}", describe(lock));
                }
            }
            Err(e) => {
                attention = true;
                println!("  cannot list locks: {e}");
            }
        }
    }
    Ok(if attention {
        Outcome::NeedsAttention
    } else {
        Outcome::Clean
    })
}

fn describe(lock: &LockListing) -> String {
    let short = &lock.sha[..lock.sha.len().min(12)];
    let line = |p: &crate::lane_lock::LockPayload, state: &str| {
        format!(
            "{} [{state}] holder {} created {} expires {} ({short})",
            lock.ref_name,
            p.owner_id,
            p.created_at.as_deref().unwrap_or("(not recorded)"),
            p.expires_at
        )
    };
    match &lock.state {
        ListedLock::Live(p) => line(p, "live"),
        ListedLock::Expired(p) => line(p, "EXPIRED"),
        ListedLock::HolderGone { payload, reason } => format!(
            "{}; the next landing takes it over at once",
            line(payload, &format!("holder gone: {reason}"))
        ),
        ListedLock::Unreadable { reason } => {
            format!("{} [UNREADABLE: {reason}] ({short})", lock.ref_name)
        }
    }
}

fn release(
    ctx: &Context,
    ref_name: &str,
    repo_path: &std::path::Path,
    force: bool,
    berth_dir: &Option<PathBuf>,
) -> anyhow::Result<Outcome> {
    let (path, url) = gated_origin(ctx, repo_path)?;
    let client = client(berth_dir)?;
    let Some(lock) = client
        .list(&url)?
        .into_iter()
        .find(|l| l.ref_name == ref_name)
    else {
        bail!(
            "no lock {ref_name} on the origin of {} ({url}); `berth lock status` lists them",
            path.display()
        );
    };
    println!("lock: {}", describe(&lock));
    if !force {
        println!("not removed: re-run with --force to remove exactly this lock");
        return Ok(Outcome::NeedsAttention);
    }
    // Compare-and-swap against the sha just shown: a lock retaken since is left alone.
    let released = client.force_release(&url, ref_name, &lock.sha)?;
    let what = match &released {
        Released::Deleted => "removed".to_owned(),
        Released::AlreadyGone => "was already gone".to_owned(),
        Released::NotOurs { now_sha } => {
            format!("NOT removed: it changed since it was shown (now {now_sha})")
        }
    };
    println!("{ref_name}: {what}");
    tracing::warn!(lock = %ref_name, origin = %url, sha = %lock.sha, "operator force-release: {what}");
    let dir = berth_dir
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir);
    let entry = serde_json::json!({
        "time": crate::clock::now_iso(),
        "ref": ref_name,
        "origin": url,
        "sha": lock.sha,
        "lock": describe(&lock),
        "result": what,
        "by": crate::ownership::this_process(),
    });
    crate::atomic_file::open_append_private(&dir.join("lock-releases.jsonl"))
        .and_then(|mut f| writeln!(f, "{entry}"))
        .context("recording the release in lock-releases.jsonl")?;
    Ok(match released {
        Released::NotOurs { .. } => Outcome::NeedsAttention,
        _ => Outcome::Clean,
    })
}
