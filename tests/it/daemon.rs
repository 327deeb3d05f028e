//! The daemon end to end: real repos, a real bare remote, real landing processes, real
//! signals.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::crash::{running_in_group, wait_for_pid};
use crate::support::World;

#[test]
fn a_queued_record_lands_through_the_git_forge_and_the_lock_is_gone_after() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let config = world.git_forge_config("");

    world.run_once(&config).success();

    let record = world.read_record(&id);
    assert_eq!(record["status"], "landed", "{record:#}");
    assert_eq!(record["lastGithubState"], "MERGED");
    assert!(lane.merged("feat/pr-1", "main"));
    assert_eq!(world.ledger(), [1]);
    assert!(
        world.lock_refs(&lane.remote_url).is_empty(),
        "lock ref left behind"
    );
}

#[test]
fn exit_zero_without_a_merge_is_blocked_with_the_forges_state() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(2, "main");
    let config = world.config("forge = \"git\"\nland_command = [\"true\"]\n");

    world.run_once(&config).code(1);

    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked");
    let why = record["lastError"].as_str().unwrap();
    assert!(
        why.starts_with(
            "land-and-deploy reported success but origin disagrees: PR #2 state is OPEN on origin"
        ),
        "{why}"
    );
    assert!(world.lock_refs(&lane.remote_url).is_empty());
}

#[test]
fn a_planted_record_is_blocked_at_the_gate_and_nothing_runs() {
    let world = World::new();
    let outside = world.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    world.run_git(&outside, &["init", "-q"]);
    let canary = world.root.join("CANARY");
    let id = world.record(&outside, 3).write();
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [\"touch\", \"{}\"]\n",
        canary.display()
    ));

    world.run_once(&config).code(1);
    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked");
    let why = record["lastError"].as_str().unwrap();
    // A legacy record (no repoIdentity): gstack's discovery pre-gate text.
    assert!(
        why.starts_with("repoPath rejected by daemon allowlist (pre-id derivation): repoPath "),
        "{why}"
    );
    assert!(why.contains("is outside the daemon allowlist"), "{why}");
    assert!(!canary.exists());
}

#[test]
fn a_lane_locked_elsewhere_is_skipped_and_another_lane_lands() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.push_base("release");
    let busy = lane.queue(4, "main");
    let free = lane.queue(5, "release");
    // Make the `main` lane's record the oldest, so head-of-line blocking would show.
    let mut record = world.read_record(&busy);
    record["queuedAt"] = "2026-01-01T00:00:00.000Z".into();
    fs::write(world.queue.join(format!("{busy}.json")), record.to_string()).unwrap();

    let locks = berth::lane_lock::LockClient::new(
        &world.root.join("other-daemon"),
        berth::lane_lock::LockSettings::default(),
    )
    .unwrap();
    let identity = berth::identity::repo_identity(&lane.clone).unwrap();
    let main_lane = berth::lane_lock::Lane {
        repo_identity: identity,
        base_branch: "main".into(),
    };
    let acquired = locks
        .acquire(&lane.remote_url, &main_lane, "other-host:1:1", &lane.clone)
        .unwrap();
    assert!(matches!(acquired, berth::lane_lock::Acquire::Acquired(_)));

    let config = world.git_forge_config("");
    world.run_once(&config).success();

    assert_eq!(world.read_record(&free)["status"], "landed");
    let skipped = world.read_record(&busy);
    assert_eq!(skipped["status"], "queued");
    let why = skipped["lastError"].as_str().unwrap();
    assert!(
        why.starts_with(
            "release lock unavailable for main: release lock held by other-host:1:1 until "
        ),
        "{why}"
    );
    assert_eq!(world.ledger(), [5]);
}

/// Starts `berth run --once` in the background with a landing that sleeps, and waits
/// until the landing process is running.
#[allow(clippy::zombie_processes)] // the child is handed to the caller, which waits on it
fn start_sleeping_landing(world: &World, config: &Path) -> (std::process::Child, i32) {
    let mut child = world.spawn_berth(
        &["run", "--once", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[],
    );
    let pid = wait_for_pid(&world.root.join("landing.pid"), &mut child);
    (child, pid)
}

pub fn sleeping_config(world: &World, extra: &str) -> std::path::PathBuf {
    let pid_file = world.root.join("landing.pid");
    // The landing leaves a grandchild behind to prove the whole group dies.
    world.config(&format!(
        "forge = \"git\"\nland_command = [\"sh\", \"-c\", \"sleep 300 & echo $$ > {}; wait\"]\n{extra}",
        pid_file.display()
    ))
}

#[test]
fn sigterm_mid_landing_requeues_releases_the_lock_and_kills_the_group() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(6, "main");
    let config = sleeping_config(&world, "");
    let (mut daemon, landing_pid) = start_sleeping_landing(&world, &config);
    assert_eq!(
        world.lock_refs(&lane.remote_url).len(),
        2,
        "gstack's lock and the repository's shared one taken while landing"
    );
    assert_eq!(world.read_record(&id)["status"], "landing");

    let sent = Instant::now();
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "berth did not exit within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));

    let record = world.read_record(&id);
    assert_eq!(record["status"], "queued");
    assert_eq!(
        record["lastError"],
        "interrupted by signal SIGTERM mid-landing"
    );
    assert!(
        world.lock_refs(&lane.remote_url).is_empty(),
        "lock ref left behind"
    );
    // The shell and its grandchild `sleep 300` share the group: nothing of it may run on
    // (a process killed a moment ago may still be on its way out).
    let deadline = Instant::now() + Duration::from_secs(2);
    while !running_in_group(landing_pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        running_in_group(landing_pid),
        Vec::<i32>::new(),
        "landing processes survived"
    );
}

#[test]
fn two_daemons_land_twenty_records_in_four_lanes_exactly_once() {
    let world = World::new();
    let server = world.git_daemon();
    let lane = world.git_lane("widget", Some(server.url_for("widget.git")));
    let bases = ["main", "rel-a", "rel-b", "rel-c"];
    for base in &bases[1..] {
        lane.push_base(base);
    }
    let mut ids = Vec::new();
    for pr in 1..=20u64 {
        ids.push(lane.queue(pr, bases[(pr % 4) as usize]));
    }
    let config = world.git_forge_config("poll_secs = 1\nmax_lanes = 2\n");
    // Each daemon has its own state dir, as on two machines.
    let spawn = |name: &str| {
        let args = ["run", "--watch", "--config", config.to_str().unwrap()];
        world.spawn_berth(&args, &world.root.join(format!("state-{name}")), &[])
    };
    let mut daemons: Vec<std::process::Child> = ["a", "b"].into_iter().map(spawn).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let landed = ids
            .iter()
            .filter(|id| world.read_record(id)["status"] == "landed")
            .count();
        if landed == ids.len() {
            break;
        }
        let blocked: Vec<_> = ids
            .iter()
            .map(|id| world.read_record(id))
            .filter(|r| r["status"] == "blocked")
            .collect();
        assert!(blocked.is_empty(), "blocked: {blocked:#?}");
        assert!(
            Instant::now() < deadline,
            "only {landed} of 20 landed in time"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for daemon in &mut daemons {
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        assert_eq!(daemon.wait().unwrap().code(), Some(143));
    }
    let mut landed = world.ledger();
    landed.sort();
    assert_eq!(
        landed,
        (1..=20).collect::<Vec<u64>>(),
        "every PR lands exactly once"
    );
    assert!(world.lock_refs(&lane.remote_url).is_empty());
}

/// The gh forge: the landing command exits 0 but GitHub still reports the PR open.
#[test]
fn exit_zero_but_github_says_open_is_blocked_naming_githubs_state() {
    let world = World::new();
    let gh = world.gh_lane();
    let id = gh.queue_pr_42();
    let config = gh.config(r#"["true"]"#, "");

    gh.berth()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .assert()
        .code(1);

    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked");
    let why = record["lastError"].as_str().unwrap();
    assert!(
        why.starts_with(
            "land-and-deploy reported success but GitHub disagrees: PR #42 state is OPEN on GitHub (sub-agent reported success but PR was not merged); see "
        ),
        "{why}"
    );
    let calls = gh.calls();
    assert!(
        calls
            .iter()
            .any(|c| c[..4] == ["pr", "list", "--repo", "acme/widget"]),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c[..]
            == [
                "pr",
                "view",
                "42",
                "--repo",
                "acme/widget",
                "--json",
                "state,mergedAt,mergeCommit"
            ]),
        "{calls:?}"
    );
    assert!(gh.lock_refs().is_empty(), "lock ref left behind");
}

/// Waits for the stand-in to be sleeping in the call keyed `key`, then sends SIGTERM and
/// returns how long berth took to exit, and its exit code.
fn sigterm_while_gh_sleeps(
    gh: &crate::support::GhLane<'_>,
    config: &Path,
    key: &str,
) -> (Duration, Option<i32>) {
    let mut daemon = gh.world.spawn_berth(
        &["run", "--once", "--config", config.to_str().unwrap()],
        &gh.world.berth_state(),
        &[("GH_STANDIN_DIR", &gh.replies), ("GH_STANDIN_LOG", &gh.log)],
    );
    let sleeping = gh.replies.join(format!("{key}.sleep.pid"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sleeping.exists() {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!("gh never reached the call {key}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = daemon.wait().unwrap();
    (sent.elapsed(), status.code())
}

/// A signal while the forge is slow to prove the merge: berth still exits promptly, puts
/// the record back and releases the lane lock (it must not wait out the forge timeout).
#[test]
fn sigterm_during_the_merge_proof_requeues_and_releases_the_lock() {
    let world = World::new();
    let gh = world.gh_lane();
    let id = gh.queue_pr_42();
    // The landing itself makes GitHub slow: the merge proof that follows hangs for 20 s.
    let slow = gh.replies.join("pr-view.acme.widget.42.sleep");
    let config = gh.config(
        &format!(r#"["sh", "-c", "echo 20 > {}"]"#, slow.display()),
        "",
    );
    let (took, code) = sigterm_while_gh_sleeps(&gh, &config, "pr-view.acme.widget.42");
    assert_eq!(code, Some(143));
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    let record = world.read_record(&id);
    assert_eq!(record["status"], "queued", "{record:#}");
    assert_eq!(
        record["lastError"],
        "interrupted by signal SIGTERM mid-landing"
    );
    assert!(
        gh.lock_refs().is_empty(),
        "the lane lock outlived the daemon"
    );
}

/// A signal while the tick's bookkeeping waits on a slow `gh pr list`.
#[test]
fn sigterm_during_discovery_exits_promptly_and_claims_nothing() {
    let world = World::new();
    let gh = world.gh_lane();
    let id = gh.queue_pr_42();
    fs::write(gh.replies.join("pr-list.acme.widget.sleep"), "25").unwrap();
    let config = gh.config(r#"["true"]"#, "");
    let (took, code) = sigterm_while_gh_sleeps(&gh, &config, "pr-list.acme.widget");
    assert_eq!(code, Some(143));
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert_eq!(world.read_record(&id)["status"], "queued");
    assert!(
        !gh.calls().iter().any(|c| c[..2] == ["pr", "view"]),
        "a PR was claimed after the signal"
    );
}

/// Discovery asks GitHub only about repos of records that pass the gates, by the identity
/// of their origin: a planted record's claimed identity never reaches `gh` (or `GH_HOST`).
#[test]
fn a_planted_identity_never_reaches_gh() {
    let world = World::new();
    let gh = world.gh_lane();
    gh.queue_pr_42();
    world
        .record(Path::new("/etc"), 7)
        .set("repoIdentity", "evil.example.com/victim/secret")
        .set("status", "blocked")
        .write();
    let config = gh.config(r#"["true"]"#, "");
    gh.berth()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .assert()
        .code(1);
    let calls = gh.calls();
    assert!(!calls.is_empty());
    assert!(
        !calls.iter().flatten().any(|arg| arg.contains("victim")),
        "{calls:?}"
    );
    assert!(
        !fs::read_to_string(&gh.log)
            .unwrap()
            .contains("evil.example.com")
    );
}

/// A record put back for a transient reason (GitHub down) waits for the next tick instead
/// of being re-claimed in a tight loop.
#[test]
fn a_transient_failure_is_not_retried_in_a_hot_loop() {
    let world = World::new();
    let gh = world.gh_lane();
    let id = gh.queue_pr_42();
    fs::write(gh.replies.join("pr-view.acme.widget.42.exit"), "1").unwrap();
    fs::write(
        gh.replies.join("pr-view.acme.widget.42.stderr"),
        "HTTP 502: Bad Gateway",
    )
    .unwrap();
    let config = gh.config(r#"["true"]"#, "poll_secs = 1\n");
    let mut daemon = world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[("GH_STANDIN_DIR", &gh.replies), ("GH_STANDIN_LOG", &gh.log)],
    );
    let views = || {
        gh.calls()
            .iter()
            .filter(|c| c[..2] == ["pr", "view"])
            .count()
    };
    // Counted from the first claim check, so a slow start on a loaded machine is not
    // mistaken for "no retry".
    assert!(
        world.wait_for(Duration::from_secs(30), || views() > 0),
        "no claim check"
    );
    // Read while the daemon runs: a SIGTERM that lands mid-claim rightly records the
    // interruption instead.
    assert!(
        world.wait_for(Duration::from_secs(30), || {
            let record = world.read_record(&id);
            record["status"] == "queued"
                && record["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("502"))
        }),
        "the transient failure was not recorded: {:#}",
        world.read_record(&id)
    );
    let seen = views();
    assert!(
        world.wait_ticks(&world.berth_state(), 3, Duration::from_secs(60)),
        "no 3 ticks"
    );
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    let more = views() - seen;
    assert!(more <= 5, "{more} more claim checks in 3 ticks");
    assert_eq!(world.read_record(&id)["status"], "queued");
}

/// A worktree path outside the allowlist lands in a private scratch worktree, removed
/// afterwards; a planted `.git/worktrees/` entry can never make berth delete anything.
#[test]
fn scratch_worktree_lands_and_is_removed_and_planted_admin_dirs_are_ignored() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let feature = lane.push_feature("feat/pr-8", "main");
    let id = world
        .record(&lane.clone, 8)
        .set("featureBranch", feature)
        .set("worktreePath", "/nonexistent/wt")
        .write();
    // A planted admin entry named the way a predictable scratch name would be.
    let precious = world.root.join("outside/precious");
    fs::create_dir_all(&precious).unwrap();
    fs::write(precious.join("thesis.tex"), "years of work").unwrap();
    let admin = lane.clone.join(format!(".git/worktrees/berth-{id}"));
    fs::create_dir_all(&admin).unwrap();
    fs::write(
        admin.join("gitdir"),
        format!("{}/.git\n", precious.display()),
    )
    .unwrap();
    fs::write(admin.join("commondir"), "../..\n").unwrap();
    fs::write(admin.join("HEAD"), "ref: refs/heads/planted\n").unwrap();

    let config = world.git_forge_config("");
    world.run_once(&config).success();
    assert_eq!(world.read_record(&id)["status"], "landed");
    assert!(lane.merged("feat/pr-8", "main"));
    assert!(
        precious.join("thesis.tex").exists(),
        "berth deleted a planted worktree target"
    );
    let scratch = world.root.join("berth-state/worktrees");
    let left: Vec<_> = fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "scratch worktree left behind: {left:?}");
}

/// A drift signature gets one repair: `drift_repairing`, the ship command, land again.
#[test]
fn drift_is_repaired_once_by_ship_then_land() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(9, "main");
    let land = world.land_script();
    let shipped = world.root.join("shipped");
    let ledger_file = world.root.join("ledger");
    let land_unless_drifted = format!(
        "if [ -e {shipped} ]; then exec {land} \"$1\" \"$2\" {ledger} \"$3\"; fi; echo 'VERSION drift detected'; exit 1",
        shipped = shipped.display(),
        land = land.display(),
        ledger = ledger_file.display()
    );
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [\"sh\", \"-c\", {cmd:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\nship_command = [\"touch\", \"{shipped}\"]\n",
        cmd = land_unless_drifted,
        shipped = shipped.display()
    ));
    world.run_once(&config).success();
    let record = world.read_record(&id);
    assert_eq!(record["status"], "landed", "{record:#}");
    assert_eq!(record["retries"], 1);
    let moves: Vec<String> = world
        .decisions()
        .iter()
        .filter(|d| d["kind"] == "status" && d["record"] == id.as_str())
        .map(|d| {
            format!(
                "{}->{}",
                d["from"].as_str().unwrap(),
                d["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            "queued->claiming",
            "claiming->landing",
            "landing->drift_repairing",
            "drift_repairing->landing",
            "landing->landed"
        ]
    );
    assert_eq!(world.ledger(), [9]);
}

/// Drift that the one repair does not cure ends blocked, naming the drift.
#[test]
fn drift_after_the_repair_is_blocked() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(10, "main");
    let config = world.config(
        "forge = \"git\"\nland_command = [\"sh\", \"-c\", \"echo 'queue moved since last /ship'; exit 1\"]\nship_command = [\"true\"]\n",
    );
    world.run_once(&config).code(1);
    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked");
    assert_eq!(record["retries"], 1);
    let why = record["lastError"].as_str().unwrap();
    assert!(why.contains("reported release drift"), "{why}");
}

/// A live lock in the daemon's own name (a release that failed earlier, or a create whose
/// answer was lost) must not stall the lane for the TTL: the daemon adopts and replaces it.
#[test]
fn the_daemons_own_orphaned_lock_does_not_stall_the_lane() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(11, "main");
    let land = world.land_script();
    let config = berth::config::Config {
        forge: berth::config::ForgeKind::Git,
        land_command: berth::runner::CommandTemplate::parse(
            [
                land.to_str().unwrap(),
                "{branch}",
                "{base}",
                world.root.join("ledger").to_str().unwrap(),
                "{pr}",
            ]
            .map(String::from)
            .to_vec(),
        )
        .unwrap(),
        ..Default::default()
    };
    let (allowlist, _) = berth::gates::Allowlist::build(Some(&world.home), None, None);
    let store = berth::store::QueueStore::new(&world.queue);
    let shared = std::sync::Arc::new(
        berth::daemon::Shared::new(store, allowlist, config, world.berth_state()).unwrap(),
    );
    let identity = berth::identity::repo_identity(&lane.clone).unwrap();
    let main_lane = berth::lane_lock::Lane {
        repo_identity: identity,
        base_branch: "main".into(),
    };
    // Written in the daemon's name by a client of its own, as a write whose answer was
    // lost leaves it: no landing of the daemon holds it.
    let scratch = tempfile::tempdir().unwrap();
    let writer = berth::lane_lock::LockClient::new(
        scratch.path(),
        berth::lane_lock::LockSettings::default(),
    )
    .unwrap();
    let orphan = writer
        .acquire(&lane.remote_url, &main_lane, shared.owner(), &lane.clone)
        .unwrap();
    assert!(matches!(orphan, berth::lane_lock::Acquire::Acquired(_)));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let exit = runtime
        .block_on(berth::daemon::run(
            std::sync::Arc::clone(&shared),
            berth::daemon::Mode::Once,
            tokio_util::sync::CancellationToken::new(),
        ))
        .unwrap();
    assert_eq!(exit, berth::daemon::Exit::Clean);
    assert_eq!(world.read_record(&id)["status"], "landed");
    assert!(world.lock_refs(&lane.remote_url).is_empty());
}

/// `rel/1` and `rel-1` are different branches with one lock ref (`safe_key` folds both to
/// `rel-1`): berth must treat them as one lane, never landing both at once or taking the
/// sibling's live lock for an orphan.
#[test]
fn branches_that_share_a_lock_ref_never_land_at_once() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.push_base("rel/1");
    lane.push_base("rel-1");
    let mut ids = Vec::new();
    for (pr, base) in [(21, "rel/1"), (22, "rel-1")] {
        let feature = lane.push_feature(&format!("feat/pr-{pr}"), base);
        ids.push(
            world
                .record(&lane.clone, pr)
                .set("featureBranch", feature)
                .set("baseBranch", base)
                .set("worktreePath", "/nonexistent/wt")
                .write(),
        );
    }
    let trace = world.root.join("trace");
    let land = world.land_script();
    let script = format!(
        "echo start $3 >> {trace}; sleep 1; {land} \"$1\" \"$2\" {ledger} \"$3\"; s=$?; echo end $3 >> {trace}; exit $s",
        trace = trace.display(),
        land = land.display(),
        ledger = world.root.join("ledger").display()
    );
    let config = world.config(&format!(
        "forge = \"git\"\nmax_lanes = 2\npoll_secs = 1\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let mut daemon = world.spawn_watch(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids
        .iter()
        .any(|id| world.read_record(id)["status"] != "landed")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    for id in &ids {
        assert_eq!(world.read_record(id)["status"], "landed", "{id}");
    }
    let steps: Vec<String> = fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(
        steps[0].starts_with("start") && steps[1].starts_with("end"),
        "overlapping landings: {steps:?}"
    );
    let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap();
    assert!(
        !log.contains("orphaned lane lock"),
        "a sibling's live lock was taken for an orphan"
    );
}
