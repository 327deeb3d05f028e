//! `berth lock status` and `berth lock release`: an operator's view of the lane locks on
//! each repo's `origin`, and the one way to remove a lock by hand; `berth lock check`
//! ([`super::lock_check`]) for a land command fencing its push.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::{Context, Outcome};
use crate::lane_lock::{ListedLock, LockClient, LockListing, Released};

#[derive(clap::Subcommand, Debug)]
pub enum LockCommand {
    /// List each lane's lock: ref, holder, created, expires, live or expired.
    Status {
        #[command(flatten)]
        repos: super::RepoArgs,
        /// One repo; default: every repo that has a record in the queue.
        #[arg(long, value_name = "DIR")]
        repo_path: Option<PathBuf>,
        /// berth's private state dir.
        #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
        berth_dir: Option<PathBuf>,
        /// Print one JSON document: `{"repos": [{"repo", "origin", "locks": [...], "error"}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Remove one lock after showing what it removes (only with --force).
    Release {
        #[command(flatten)]
        repos: super::RepoArgs,
        /// The lock ref, as `lock status` prints it.
        #[arg(value_name = "REF")]
        ref_name: String,
        /// The repo whose `origin` holds the lock.
        #[arg(long, value_name = "DIR")]
        repo_path: PathBuf,
        /// Really remove it; without this, only show what would be removed.
        #[arg(long)]
        force: bool,
        /// berth's private state dir (lock scratch repo, `lock-releases.jsonl`).
        #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
        berth_dir: Option<PathBuf>,
    },
    /// Exit 0 only while lock REF on origin is exactly commit SHA and live (1: it is not;
    /// 2: cannot tell). A land command runs it just before its push.
    #[command(after_help = "Examples:
  land_command = [\"sh\", \"-c\", \"berth lock check \\\"$1\\\" --sha \\\"$2\\\" && git push origin HEAD:main\", \"sh\", \"{lock_ref}\", \"{lock_sha}\"]
  berth lock check refs/gstack/release-locks/github.com-acme-widget-main --sha 3f2c… --repo-path ~/code/widget")]
    Check {
        #[command(flatten)]
        repos: super::RepoArgs,
        /// The lock ref (`{lock_ref}` in a land command).
        #[arg(value_name = "REF")]
        ref_name: String,
        /// The lock commit the step started under (`{lock_sha}`).
        #[arg(long, value_name = "SHA")]
        sha: String,
        /// The repo whose `origin` holds the lock; default: the current directory (a land
        /// command runs in the landing's checkout).
        #[arg(long, value_name = "DIR")]
        repo_path: Option<PathBuf>,
        /// berth's private state dir (its lock scratch repo).
        #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
        berth_dir: Option<PathBuf>,
    },
}

impl LockCommand {
    pub fn repos(&self) -> &super::RepoArgs {
        match self {
            LockCommand::Status { repos, .. }
            | LockCommand::Release { repos, .. }
            | LockCommand::Check { repos, .. } => repos,
        }
    }
}

pub fn run(ctx: &Context, command: &LockCommand) -> anyhow::Result<Outcome> {
    match command {
        LockCommand::Status {
            repos: _,
            repo_path,
            berth_dir,
            json,
        } => status(
            ctx,
            repo_path.as_ref(),
            client(
                &berth_dir
                    .clone()
                    .unwrap_or_else(crate::paths::default_berth_dir),
            )?,
            *json,
        ),
        LockCommand::Release {
            repos: _,
            ref_name,
            repo_path,
            force,
            berth_dir,
        } => release(ctx, ref_name, repo_path, *force, berth_dir),
        LockCommand::Check {
            repos: _,
            ref_name,
            sha,
            repo_path,
            berth_dir,
        } => super::lock_check::check(ctx, ref_name, sha, repo_path.as_deref(), berth_dir.as_ref()),
    }
}

pub(super) use super::lock_origin::{client, gated_origin};

fn status(
    ctx: &Context,
    repo_path: Option<&PathBuf>,
    client: LockClient,
    json: bool,
) -> anyhow::Result<Outcome> {
    let mut origins: BTreeMap<String, PathBuf> = BTreeMap::new();
    match repo_path {
        Some(path) => {
            let (path, url) = gated_origin(ctx, path)?;
            origins.insert(url, path);
        }
        None => {
            ctx.require_queue_dir()?;
            for stored in ctx.store.scan()?.records {
                if let Ok((path, url)) =
                    gated_origin(ctx, std::path::Path::new(&stored.record.repo_path))
                {
                    origins.entry(url).or_insert(path);
                }
            }
        }
    }
    let listed: Vec<(PathBuf, String, anyhow::Result<Vec<LockListing>>)> = origins
        .into_iter()
        .map(|(url, path)| {
            let locks = client.list(&url).map_err(anyhow::Error::from);
            (path, url, locks)
        })
        .collect();
    let attention = listed.iter().any(|(_, _, locks)| match locks {
        Ok(locks) => locks
            .iter()
            .any(|l| !matches!(l.state, ListedLock::Live(_))),
        Err(_) => true,
    });
    if json {
        let repos: Vec<serde_json::Value> = listed
            .iter()
            .map(|(path, url, locks)| {
                let (locks, error) = match locks {
                    Ok(locks) => (locks.iter().map(lock_json).collect(), None),
                    Err(e) => (Vec::new(), Some(format!("{e:#}"))),
                };
                serde_json::json!({
                    "repo": path, "origin": url, "locks": locks, "error": error,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "repos": repos }))?
        );
    } else if listed.is_empty() {
        println!("no repos to look at: the queue is empty (use --repo-path)");
    } else {
        for (path, url, locks) in &listed {
            println!("{} (origin {url})", path.display());
            match locks {
                Ok(locks) if locks.is_empty() => println!("  no lane locks"),
                Ok(locks) => {
                    for lock in locks {
                        println!("  {}", describe(lock));
                    }
                }
                Err(e) => println!("  cannot list locks: {e}"),
            }
        }
    }
    Ok(if attention {
        Outcome::NeedsAttention
    } else {
        Outcome::Clean
    })
}

/// The facts [`describe`] shows, as JSON: `state` is `live`, `expired`, `holderGone`
/// (with `reason`) or `unreadable` (with `reason`, and no payload fields).
fn lock_json(lock: &LockListing) -> serde_json::Value {
    let (state, payload, reason) = match &lock.state {
        ListedLock::Live(p) => ("live", Some(p), None),
        ListedLock::Expired(p) => ("expired", Some(p), None),
        ListedLock::HolderGone { payload, reason } => {
            ("holderGone", Some(payload), Some(reason.to_string()))
        }
        ListedLock::Unreadable { reason } => ("unreadable", None, Some(reason.to_string())),
    };
    serde_json::json!({
        "ref": lock.ref_name,
        "sha": lock.sha,
        "state": state,
        "reason": reason,
        "holder": payload.map(|p| &p.owner_id),
        "createdAt": payload.and_then(|p| p.created_at.as_ref()),
        "expiresAt": payload.map(|p| &p.expires_at),
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
    let client = client(
        &berth_dir
            .clone()
            .unwrap_or_else(crate::paths::default_berth_dir),
    )?;
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
    // And beside the daemon's decisions, so `explain` shows it with the lane's records.
    let reason = format!("{}: {what}", describe(&lock));
    let act = crate::rules::decisions::OperatorAct {
        act: crate::rules::journal::Act::LockRelease,
        subject: None,
        from: None,
        to: None,
        lock_ref: Some(ref_name),
        reason: &reason,
    };
    crate::rules::decisions::operator_act(&dir, &act)
        .context("recording the release in decisions.jsonl")?;
    Ok(match released {
        Released::NotOurs { .. } => Outcome::NeedsAttention,
        _ => Outcome::Clean,
    })
}
