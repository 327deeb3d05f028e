//! `berth demo`: berth's main job on a throwaway world, narrated, on any machine with git.
//!
//! It builds a world (a bare remote behind `git daemon` on 127.0.0.1, a clone, three
//! queued PRs in two lanes, one planted record), runs the real daemon with the `git` forge
//! and a landing script that really merges and pushes, narrates what it sees happen (status
//! changes, lock refs appearing and disappearing), and then checks every claim it made. It
//! succeeds only if every check holds.

mod error;
mod observer;
mod rules_step;
mod world;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, ForgeKind};
use crate::daemon::{self, Mode, Shared};
use crate::gates::Allowlist;
use crate::record::Status;
use crate::rules::Rules;
use crate::runner::CommandTemplate;

pub use error::DemoError;
use observer::Observer;
use world::World;

/// The halt event id of the hand-merged fault in the demo's run state (DESIGN §7).
const HAND_MERGED_HALT_ID: &str = "PHASE_FAILED:all:1fe2d874";

/// How long the demo lets the daemon work before it calls the run a failure.
pub(crate) const DEMO_DEADLINE: Duration = Duration::from_secs(90);

/// One claim the demo made, and whether it held.
pub(crate) struct Check {
    pub(crate) claim: String,
    pub(crate) held: bool,
}

/// Runs the demo; `Ok(true)` when every narrated step happened.
pub fn run(keep: bool) -> Result<bool, DemoError> {
    let temp = tempfile::Builder::new().prefix("berth-demo-").tempdir()?;
    let root = temp.path().canonicalize()?;
    say(&format!(
        "berth demo: building a throwaway world in {}",
        root.display()
    ));
    let world = World::build(&root)?;
    say(&format!(
        "  a bare remote served by `git daemon` at {}, cloned to {}",
        world.origin_url,
        world.clone.display()
    ));
    for pr in &world.prs {
        say(&format!(
            "  queued PR #{} ({} -> {})",
            pr.pr, pr.feature, pr.base
        ));
    }
    say(&format!(
        "  planted record {}: its repo path is a symlink that leads out of the allowed root",
        world.planted_id
    ));
    say(&format!(
        "  an orchestrator run state in {} whose feature 1 was merged by hand",
        world.build_state.display()
    ));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(crate::rules::RULE_THREAD_STACK)
        .enable_all()
        .build()?;
    let (checks, kept) = runtime.block_on(run_daemon(&world, keep))?;

    say("");
    say("checks:");
    let mut all_held = true;
    for check in &checks {
        all_held &= check.held;
        say(&format!(
            "  [{}] {}",
            if check.held { "ok" } else { "FAILED" },
            check.claim
        ));
    }
    if keep {
        let kept = temp.keep();
        say(&format!("the world is kept in {}", kept.display()));
    }
    say(if all_held {
        "demo finished: every step happened as narrated"
    } else {
        "demo FAILED: see the checks above"
    });
    if let Some(kept) = kept {
        say(&format!(
            "the queue page stays up at http://{}/ until Ctrl-C",
            kept.page.addr()
        ));
        runtime.block_on(async {
            until_stopped().await?;
            kept.stop.cancel();
            Ok::<_, DemoError>(
                kept.daemon
                    .await
                    .map_err(DemoError::DaemonTask)?
                    .map(drop)?,
            )
        })?;
        drop(kept.page);
    }
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(all_held)
}

/// Until SIGINT (Ctrl-C) or SIGTERM.
async fn until_stopped() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = term.recv() => Ok(()),
    }
}

pub(crate) fn say(line: &str) {
    println!("{line}");
}

/// Runs the daemon over the world and checks what it did; with `keep`, it also serves the
/// queue page on a loopback port and leaves the daemon running behind it, with two PRs
/// held by a freeze, until the caller stops them.
async fn run_daemon(world: &World, keep: bool) -> Result<(Vec<Check>, Option<Kept>), DemoError> {
    let land = CommandTemplate::parse(vec![
        "sh".into(),
        world.land_script.to_string_lossy().into_owned(),
        "{branch}".into(),
        "{base}".into(),
    ])?;
    let config = Config {
        land_command: land.clone(),
        ship_command: land,
        forge: ForgeKind::Git,
        poll_secs: 1,
        max_lanes: 1,
        build_state_dir: Some(world.build_state.clone()),
        faults_dir: Some(world.faults_dir.clone()),
        ..Config::default()
    };
    let (allowlist, _) = Allowlist::build(None, None, Some(&world.code));
    let shared = Arc::new(
        Shared::new(
            world.queue.clone(),
            allowlist,
            config,
            world.berth_dir.clone(),
        )?
        .with_rules(Rules::load(Some(&world.rules_root))?),
    );
    let page = if keep {
        let server =
            crate::endpoint::start("127.0.0.1:0", &shared, crate::http::Limits::default())?;
        say(&format!("  the queue page: http://{}/", server.addr()));
        Some(server)
    } else {
        None
    };
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run(Arc::clone(&shared), Mode::Watch, stop.clone()));
    say("");
    say("running the daemon (git forge, one lane at a time):");

    let mut observer = Observer::new(world, Arc::clone(shared.locks()));
    let settled = tokio::time::timeout(DEMO_DEADLINE, observer.watch_until_settled()).await;
    let mut rules_checks = Vec::new();
    if settled.is_ok() {
        rules_checks = rules_step::run(world, &mut observer).await?;
    } else {
        say(&format!(
            "  (gave up waiting after {}s)",
            DEMO_DEADLINE.as_secs()
        ));
    }
    let mut checks = Vec::new();
    let kept = match page {
        Some(page) if settled.is_ok() => {
            // The checks read the run as it settled, before the kept queue is added.
            checks = check(world, &observer)?;
            rules_step::hold_for_the_page(world).await?;
            Some(Kept { page, stop, daemon })
        }
        _ => {
            stop.cancel();
            daemon.await.map_err(DemoError::DaemonTask)??;
            None
        }
    };
    if kept.is_none() {
        checks = check(world, &observer)?;
    }
    checks.append(&mut rules_checks);
    Ok((checks, kept))
}

/// What `demo --keep` leaves running: the page, and the daemon behind it.
struct Kept {
    page: crate::http::Server,
    stop: CancellationToken,
    daemon: tokio::task::JoinHandle<Result<daemon::Exit, daemon::StartError>>,
}

fn check(world: &World, observer: &Observer) -> Result<Vec<Check>, DemoError> {
    let mut checks = Vec::new();
    for pr in &world.prs {
        let record = world.queue.load(&pr.id)?.record;
        checks.push(Check {
            claim: format!(
                "PR #{} is landed and {} is merged into {} on the remote",
                pr.pr, pr.feature, pr.base
            ),
            held: record.status == Status::Landed
                && world.merged_on_remote(&pr.feature, &pr.base)?,
        });
    }
    let planted = world.queue.load(&world.planted_id)?.record;
    checks.push(Check {
        claim: "the planted record is blocked at the repo path gate".into(),
        held: planted.status == Status::Blocked
            && planted
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("repoPath rejected by daemon allowlist")),
    });
    let lanes: Vec<&str> = vec!["main", "release/1.x"];
    for base in lanes {
        checks.push(Check {
            claim: format!("a lock ref for the {base} lane appeared while it landed"),
            held: observer.lock_seen_for(base),
        });
    }
    checks.push(Check {
        claim: "no lock ref is left on the remote".into(),
        held: observer.remaining_locks()?.is_empty(),
    });
    checks.push(Check {
        claim: "lanes landed one at a time, each in queue order".into(),
        held: observer.landed_in_order(&world.prs),
    });
    checks.push(Check {
        claim: format!("the hand-merged feature raised halt event {HAND_MERGED_HALT_ID}"),
        held: observer.halt_seen(HAND_MERGED_HALT_ID, "[HAND_MERGED_FEATURE]"),
    });
    Ok(checks)
}
