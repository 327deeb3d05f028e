//! The demo's rules step: edit the landing policy while the daemon runs. A freeze window
//! is obeyed on the next tick, a broken edit is refused while the freeze stays in force,
//! and lifting the freeze lets the held PR land.

use std::time::Duration;

use super::observer::Observer;
use super::world::World;
use super::{Check, DEMO_DEADLINE, DemoError, say};
use crate::record::Status;
use crate::rules::{ReloadSeen, RulesStatus, write_and_await};

/// The shipped landing policy; the demo edits a copy of it.
const DEFAULT_LANDING: &str = include_str!("../../policies/landing.rhai");
const DEFAULT_ADMIT: &str =
    "    #{ decision: \"go\", reason: \"no landing policy holds it back\" }";
const FREEZE_REASON: &str = "release freeze: the demo lifts it in a moment";
const LANDING_FILE: &str = "policies/landing.rhai";

/// The reason of the freeze `demo --keep` leaves in force, so its page has a queue to show.
const KEPT_FREEZE_REASON: &str = "release freeze: kept by berth demo --keep";

/// For `demo --keep`: freezes the landing policy again and queues two more PRs on `main`,
/// so the page shows a lane's queue, why each waits and when it may land (from this run's
/// landings) while the daemon runs on.
pub async fn hold_for_the_page(world: &World) -> Result<(), DemoError> {
    say("");
    say("for the page, the daemon runs on under a new freeze:");
    let freeze = DEFAULT_LANDING.replace(
        DEFAULT_ADMIT,
        &format!("    #{{ decision: \"wait\", reason: \"{KEPT_FREEZE_REASON}\" }}"),
    );
    edit(world, &freeze).await?;
    for (pr, name) in [(104, "changelog"), (105, "metrics")] {
        let held = world.open_pr(pr, "main", name)?;
        let waited = admit_said_wait(world, pr).await;
        say(&format!(
            "  queued PR #{pr} ({} -> main){}",
            held.feature,
            if waited {
                format!(": waits, {KEPT_FREEZE_REASON}")
            } else {
                String::new()
            }
        ));
    }
    Ok(())
}

pub async fn run(world: &World, observer: &mut Observer<'_>) -> Result<Vec<Check>, DemoError> {
    let mut checks = Vec::new();
    say("");
    say(&format!("editing {LANDING_FILE} while the daemon runs:"));
    if !DEFAULT_LANDING.contains(DEFAULT_ADMIT) {
        return Err(DemoError::AdmitLineGone(LANDING_FILE));
    }
    let freeze = DEFAULT_LANDING.replace(
        DEFAULT_ADMIT,
        &format!("    #{{ decision: \"wait\", reason: \"{FREEZE_REASON}\" }}"),
    );
    let frozen = edit(world, &freeze).await?;
    say(&format!(
        "  a freeze window is saved; rules {} are active",
        short(&frozen)
    ));

    let held = world.open_pr(103, "main", "docs")?;
    say(&format!("  queued PR #103 ({} -> main)", held.feature));
    let waited = admit_said_wait(world, 103).await;
    if waited {
        say(&format!("  PR #103 [main] waits: {FREEZE_REASON}"));
    }
    checks.push(Check {
        claim: "the freeze, saved while the daemon ran, held PR #103 back on the next tick".into(),
        held: waited && status_of(world, &held.id)? == Status::Queued,
    });

    let broken = format!("{freeze}\nfn admit(record, ctx {{\n");
    let refused = match edit_seen(world, &broken).await? {
        ReloadSeen::Refused(error) => {
            say(&format!(
                "  a broken edit is refused: {}",
                error.lines().next().unwrap_or("")
            ));
            true
        }
        ReloadSeen::Active(_) => false,
    };
    let active = RulesStatus::read(&world.berth_dir)?.map(|s| s.active_hash);
    let freeze_kept = active.as_deref() == Some(frozen.as_str());
    if freeze_kept {
        say(&format!(
            "  rules {} (the freeze) stay active",
            short(&frozen)
        ));
    }
    // Another poll tick passes under the freeze.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    checks.push(Check {
        claim: "the broken edit was refused with its position, and the freeze stayed in force"
            .into(),
        held: refused && freeze_kept && status_of(world, &held.id)? == Status::Queued,
    });

    let lifted = edit(world, DEFAULT_LANDING).await?;
    say(&format!(
        "  the freeze is lifted; rules {} are active",
        short(&lifted)
    ));
    let _ = tokio::time::timeout(DEMO_DEADLINE, observer.watch_until_settled()).await;
    checks.push(Check {
        claim: "once the freeze was lifted, PR #103 landed".into(),
        held: status_of(world, &held.id)? == Status::Landed
            && world.merged_on_remote(&held.feature, "main")?,
    });
    checks.push(replay_freeze(world, &freeze)?);
    Ok(checks)
}

/// `berth rules replay` of the freeze against this run's own history: it names every PR
/// the recorded policy let go, each of which the freeze would have held.
fn replay_freeze(world: &World, freeze: &str) -> Result<Check, DemoError> {
    say("");
    say("replaying the freeze against this run's recorded decisions (berth rules replay):");
    let root = world.berth_dir.with_file_name("freeze-candidate");
    std::fs::create_dir_all(root.join("policies"))?;
    std::fs::write(root.join(LANDING_FILE), freeze)?;
    let built = crate::rules::Rules::check(Some(&root), &crate::rules::RuleSpec::standard())
        .map_err(DemoError::FreezeRefused)?;
    let replayed = crate::rules::replay::replay(&world.berth_dir, &built.set, &Default::default())?;
    let mut would_hold = std::collections::BTreeSet::new();
    for d in replayed
        .differences
        .iter()
        .filter(|d| d.function == "admit")
    {
        let pr = d.pr.unwrap_or_default();
        say(&format!(
            "  PR #{pr} went at {}; under the freeze it would have waited: {}",
            d.time, d.candidate.reason
        ));
        would_hold.insert(pr);
    }
    let mut went = std::collections::BTreeSet::new();
    crate::rules::decisions::each_line(&world.berth_dir, |line| {
        if line
            .decision()
            .is_some_and(|d| d.function == "admit" && d.decision == "go")
        {
            went.extend(line.pr());
        }
    })?;
    say(&format!(
        "  {} decision(s) replayed, {} would change",
        replayed.replayed,
        replayed.differences.len()
    ));
    Ok(Check {
        claim:
            "replaying the freeze against the recorded history names every PR it would have held"
                .into(),
        held: !went.is_empty() && would_hold == went,
    })
}

fn status_of(world: &World, id: &str) -> Result<Status, DemoError> {
    Ok(world.queue.load(id)?.record.status)
}

/// Saves the landing policy under the demo's rules root the way an editor does, and waits
/// for the daemon's verdict on it.
async fn edit_seen(world: &World, text: &str) -> Result<ReloadSeen, DemoError> {
    let (root, berth_dir, text) = (
        world.rules_root.clone(),
        world.berth_dir.clone(),
        text.to_owned(),
    );
    let seen = tokio::task::spawn_blocking(move || {
        write_and_await(
            &root,
            &berth_dir,
            LANDING_FILE,
            &text,
            Duration::from_secs(10),
        )
    })
    .await??;
    Ok(seen)
}

/// An edit that must be accepted; returns the new rule-set hash.
async fn edit(world: &World, text: &str) -> Result<String, DemoError> {
    match edit_seen(world, text).await? {
        ReloadSeen::Active(hash) => Ok(hash),
        ReloadSeen::Refused(error) => Err(DemoError::EditRefused(error.to_string())),
    }
}

/// Whether the decision log shows `admit` answering `wait` for the PR within a few ticks.
async fn admit_said_wait(world: &World, pr: u64) -> bool {
    for _ in 0..100 {
        let history =
            crate::rules::decisions::history(&world.berth_dir, pr, None).unwrap_or_default();
        if history
            .iter()
            .filter_map(|line| line.decision())
            .any(|d| d.function == "admit" && d.decision == "wait")
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
