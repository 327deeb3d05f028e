//! `berth retry` and `berth abandon`: an operator's moves on one record.

use anyhow::{Context as _, bail};

use super::{Context, Outcome};
use crate::record::Status;
use crate::rules::decisions::{OperatorAct, Subject};
use crate::rules::journal::Act;
use crate::store::{Expect, Move, StoredRecord};

#[derive(clap::Args, Debug)]
pub struct PickArgs {
    #[command(flatten)]
    pub queue: super::QueueArgs,
    /// The PR number, or a record id (the file name without `.json`).
    pub pr: String,
    /// The repo identity (e.g. github.com/acme/widget), when the PR number is ambiguous.
    #[arg(long, value_name = "IDENTITY")]
    pub repo: Option<String>,
    /// The configuration file whose `lock_ttl_secs` judges a stranded record. Default:
    /// `BERTH_CONFIG`, else `$XDG_CONFIG_HOME/berth/config.toml` if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// berth's state dir, whose `decisions.jsonl` records the act for `berth explain`.
    #[arg(long, env = "BERTH_DIR", value_name = "DIR")]
    pub berth_dir: Option<std::path::PathBuf>,
    /// Print one document `{"id", "from", "to"}` instead of `ID: FROM -> TO`.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct AbandonArgs {
    #[command(flatten)]
    pub pick: PickArgs,
    /// Why; kept in the record's `lastError`.
    #[arg(long, default_value = "abandoned by operator")]
    pub reason: String,
}

/// `ID: FROM -> TO`, or its `--json` document.
fn print_move(args: &PickArgs, id: &str, from: Status, to: Status) {
    if args.json {
        println!(
            "{}",
            serde_json::json!({"id": id, "from": from.to_string(), "to": to.to_string()})
        );
    } else {
        println!("{id}: {from} -> {to}");
    }
}

/// Finds exactly one record for a PR number (or id), or explains why not.
fn pick(ctx: &Context, args: &PickArgs) -> anyhow::Result<StoredRecord> {
    ctx.require_queue_dir()?;
    let scan = ctx.store.scan()?;
    let wanted_pr: Option<u64> = args.pr.trim_start_matches('#').parse().ok();
    let mut candidates: Vec<StoredRecord> = scan
        .records
        .into_iter()
        .filter(|s| match wanted_pr {
            Some(n) => s.record.pr_number == n,
            None => s.id == args.pr,
        })
        .filter(|s| {
            args.repo
                .as_deref()
                .is_none_or(|repo| s.record.identity_or_path() == repo)
        })
        .collect();
    // Named by id but not a usable record (e.g. an id too long to lock): say why.
    let file = crate::store::file_name_of(&args.pr);
    if let Some(bad) = scan.unreadable.iter().find(|u| u.file == file) {
        bail!(
            "{} cannot be changed: {}",
            ctx.store.dir().join(&bad.file).display(),
            bad.reason
        );
    }
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => bail!(
            "no record for {} in {}{}; `berth status` lists the queue",
            args.pr,
            ctx.store.dir().display(),
            args.repo
                .as_deref()
                .map(|r| format!(" with repo {r}"))
                .unwrap_or_default()
        ),
        _ => {
            let list: Vec<String> = candidates
                .iter()
                .map(|c| {
                    format!(
                        "  {} (repo {}, base {}, {})",
                        c.id,
                        c.record.identity_or_path(),
                        c.record.base_branch,
                        c.record.status
                    )
                })
                .collect();
            bail!(
                "PR {} matches {} records; name one by id or add --repo:\n{}",
                args.pr,
                candidates.len(),
                list.join("\n")
            )
        }
    }
}

/// Refuses while anything still lands the record: a live owner, or a landing process of
/// it on this host (a killed daemon's step that outlived it).
fn refuse_if_landing(args: &PickArgs, stored: &StoredRecord, verb: &str) -> anyhow::Result<()> {
    let record = &stored.record;
    if record.status.is_in_flight() {
        // The daemons' TTL: a record is stranded by the same measure they apply.
        let source = crate::config::ConfigSource::locate(args.config.as_deref());
        let ttl = crate::config::Config::load(source.path())
            .with_context(|| format!("cannot judge whether {} is stranded", stored.id))?
            .lock_ttl();
        if crate::ownership::stranded_reason(
            stored,
            ttl,
            crate::clock::now(),
            &crate::daemon::left_listed,
        )
        .is_none()
        {
            bail!(
                "cannot {verb} {}: it is {} and its owner {} is still working on it; wait, or stop that daemon first",
                stored.id,
                record.status,
                record.claimed_by.as_deref().unwrap_or("(unknown)")
            );
        }
    }
    let queue_dir = stored.path.parent().unwrap_or(std::path::Path::new("."));
    let mark = crate::runner::record_mark(queue_dir, &stored.id);
    let running = crate::runner::landing_processes(&mark, None);
    if !running.is_empty() {
        let groups: std::collections::BTreeSet<String> =
            running.iter().map(|p| p.pgid.to_string()).collect();
        bail!(
            "cannot {verb} {}: a landing of it is still running on this host (process group {}); a second landing would race it. Wait for it to end, or stop it (`kill -TERM -- -<group>`) and try again",
            stored.id,
            groups.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

pub fn retry(ctx: &Context, args: &PickArgs) -> anyhow::Result<Outcome> {
    retry_as_read(ctx, args, pick(ctx, args)?)
}

/// Retries the record as `stored` shows it; the write lands only on that same claim.
fn retry_as_read(ctx: &Context, args: &PickArgs, stored: StoredRecord) -> anyhow::Result<Outcome> {
    let from = match stored.record.status {
        s @ Status::Blocked => s,
        s if s.is_in_flight() => s,
        s => bail!(
            "record {} is {s}; only blocked or stranded records can be retried",
            stored.id
        ),
    };
    refuse_if_landing(args, &stored, "retry")?;
    ctx.store
        .transition(
            Move::new(&stored.id, Expect::Claim(&stored.record), Status::Queued),
            |r| {
                r.retries = Some(0);
                r.claimed_by = None;
                r.last_error = Some(format!("retried by operator (was {from})"));
            },
        )
        .with_context(|| format!("retrying {}", stored.id))?;
    print_move(args, &stored.id, from, Status::Queued);
    record_act(args, &stored, Act::Retry, from, Status::Queued, "")?;
    Ok(Outcome::Clean)
}

/// Logs the operator's act in the decision log, where `explain` shows it in order with
/// the daemon's decisions. The act is done by then; a log that cannot be written is an
/// error, so the operator knows the history is missing it.
fn record_act(
    args: &PickArgs,
    stored: &StoredRecord,
    act: Act,
    from: Status,
    to: Status,
    reason: &str,
) -> anyhow::Result<()> {
    let berth_dir = args
        .berth_dir
        .clone()
        .unwrap_or_else(crate::paths::default_berth_dir);
    let repo = stored.record.identity_or_path();
    let line = OperatorAct {
        act,
        subject: Some(Subject {
            id: &stored.id,
            pr: stored.record.pr_number,
            repo: &repo,
        }),
        from: Some(from),
        to: Some(to),
        lock_ref: None,
        reason,
    };
    crate::rules::decisions::operator_act(&berth_dir, &line).with_context(|| {
        format!(
            "{} is {to}, but the act was not recorded in {}",
            stored.id,
            berth_dir
                .join(crate::rules::decisions::DECISIONS_FILE)
                .display()
        )
    })
}

pub fn abandon(ctx: &Context, args: &AbandonArgs) -> anyhow::Result<Outcome> {
    let stored = pick(ctx, &args.pick)?;
    let from = stored.record.status;
    refuse_if_landing(&args.pick, &stored, "abandon")?;
    if from.is_in_flight() {
        // No move leads from in flight to abandoned: settle it as blocked first (a blocked
        // record is never claimed, so no daemon can take it in between).
        ctx.store
            .transition(
                Move::new(&stored.id, Expect::Claim(&stored.record), Status::Blocked),
                |r| {
                    r.claimed_by = None;
                    r.last_error = Some(format!("abandoning (was {from}, no live owner)"));
                },
            )
            .with_context(|| format!("abandoning {}", stored.id))?;
    }
    // Settled as blocked just now (a blocked record is never claimed), or exactly as read.
    let expect = if from.is_in_flight() {
        Expect::OneOf(&[Status::Blocked])
    } else {
        Expect::Claim(&stored.record)
    };
    ctx.store
        .transition(Move::new(&stored.id, expect, Status::Abandoned), |r| {
            r.claimed_by = None;
            r.last_error = Some(args.reason.clone());
        })
        .with_context(|| format!("abandoning {}", stored.id))?;
    print_move(&args.pick, &stored.id, from, Status::Abandoned);
    record_act(
        &args.pick,
        &stored,
        Act::Abandon,
        from,
        Status::Abandoned,
        &args.reason,
    )?;
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::QueueStore;

    /// A landing record whose owner is on another machine and silent for years: stranded.
    fn stranded() -> crate::record::Record {
        crate::record::Record::from_json(serde_json::json!({
            "runId": "r", "repoPath": "/r", "baseBranch": "main", "featureBranch": "f",
            "prNumber": 7, "version": "1", "livingPlanPath": "/p", "worktreePath": "/r",
            "queuedAt": "2020-01-01T00:00:00.000Z", "status": "landing",
            "claimedBy": "elsewhere~00000000~0:1:1",
            "lastUpdatedAt": "2020-01-01T00:00:00.000Z"
        }))
        .unwrap()
    }

    /// The ABA: the operator reads a stranded record, a daemon reclaims it (same status,
    /// new owner) before the write. The retry is refused, naming both claims, and the
    /// daemon's record is left exactly as it is.
    #[test]
    fn a_record_claimed_between_read_and_write_is_not_retried_under_its_new_owner() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context {
            store: QueueStore::new(dir.path().join("queue")),
            project_root: None,
            queue_dir_given: true,
            project_root_given: false,
            config_source: crate::config::ConfigSource::Defaults,
            allowed_roots: Vec::new(),
        };
        let id = ctx.store.insert(&stranded()).unwrap();
        let config = dir.path().join("berth.toml");
        std::fs::write(&config, "").unwrap();
        let args = PickArgs {
            queue: crate::cli::QueueArgs { queue_dir: None },
            pr: id.clone(),
            repo: None,
            config: Some(config),
            berth_dir: Some(dir.path().join("berth")),
            json: false,
        };
        let read = pick(&ctx, &args).unwrap();
        // A daemon takes it over in between: still `landing`, now its own.
        let mut reclaimed = stranded();
        reclaimed.claimed_by = Some("daemon-b~00000000~0:2:2".into());
        let path = ctx.store.path_of(&id);
        std::fs::write(&path, reclaimed.to_pretty_json()).unwrap();
        let before = std::fs::read(&path).unwrap();

        let error = format!("{:#}", retry_as_read(&ctx, &args, read).unwrap_err());
        assert!(error.contains("changed since it was read"), "{error}");
        assert!(
            error.contains("claimed by elsewhere~00000000~0:1:1"),
            "{error}"
        );
        assert!(
            error.contains("claimed by daemon-b~00000000~0:2:2"),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!dir.path().join("berth/decisions.jsonl").exists());

        // Read again as it is now and judged: still stranded by the TTL, so it retries.
        let read = pick(&ctx, &args).unwrap();
        retry_as_read(&ctx, &args, read).unwrap();
        assert_eq!(ctx.store.load(&id).unwrap().record.status, Status::Queued);
    }
}
