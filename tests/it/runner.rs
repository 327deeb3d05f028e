//! The landing runner against real child processes, real process groups and real signals.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::runner::{CommandTemplate, Outcome, Runner, Step, StepResult, StepVars, TemplateError};
use tokio_util::sync::CancellationToken;

const RECORD: &str = "github.com-acme-widget-main-pr-42";
/// Scheduling slack for timing assertions on a busy two-core machine.
const SLACK: Duration = Duration::from_millis(1500);

fn template(argv: &[&str]) -> CommandTemplate {
    CommandTemplate::parse(argv.iter().map(|s| (*s).to_owned()).collect()).unwrap()
}

/// A temp dir with a repo dir, a worktree (whose name a shell would choke on) and a logs dir.
struct Fixture {
    dir: tempfile::TempDir,
    vars: StepVars,
    logs: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let worktree = dir.path().join("work tree; $(touch pwned)");
        std::fs::create_dir(&repo).unwrap();
        std::fs::create_dir(&worktree).unwrap();
        let logs = dir.path().join("logs");
        Self {
            vars: StepVars {
                pr: 42,
                branch: "feat/x".to_owned(),
                base: "main".to_owned(),
                repo,
                worktree,
                lock_ref: String::new(),
                lock_sha: String::new(),
            },
            logs,
            dir,
        }
    }

    fn runner(&self, land: &[&str], ship: &[&str]) -> Runner {
        // Each fixture its own queue, so the landing marks of tests running at once differ.
        Runner::new(template(land), template(ship), &self.logs).for_queue(self.dir.path())
    }

    fn worktree_file(&self, name: &str) -> PathBuf {
        self.vars.worktree.join(name)
    }

    fn log(&self, attempt: u32, step: &str) -> PathBuf {
        self.logs
            .join(RECORD)
            .join(format!("attempt-{attempt}-{step}.log"))
    }
}

/// A script run as `sh -c SCRIPT`: the test's own template, not something berth builds.
fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

/// Alive and not a zombie: a killed grandchild is reparented, and who reaps it (and when)
/// is not ours to control.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim().chars().next());
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// Waits (bounded) until `pid` is gone; true if it went.
async fn gone_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !alive(pid)
}

/// The process whose pid the step's script wrote to `detached.pid` is gone within `limit`
/// (killed either way, so that a failing test leaves nothing behind); `outlived` says what
/// it outlived if not.
async fn assert_detached_gone_within(fx: &Fixture, limit: Duration, outlived: &str) {
    let detached = read_pid(&fx.worktree_file("detached.pid")).await;
    let gone = gone_within(detached, limit).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(detached),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(gone, "the detached {detached} outlived {outlived}");
}

/// Waits for a pid file the test's script writes, then parses it.
async fn read_pid(path: &Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn land(runner: &Runner, fx: &Fixture, attempt: u32) -> StepResult {
    runner
        .run(
            Step::Land,
            RECORD,
            &fx.vars,
            attempt,
            &CancellationToken::new(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn hostile_values_stay_one_argument_each() {
    let mut fx = Fixture::new();
    fx.vars.branch = "a b; touch pwned; $(touch pwned) `touch pwned` 'q\" * \n\tend".to_owned();
    fx.vars.base = "--upload-pack=touch pwned".to_owned();
    let runner = fx.runner(
        &[
            "sh",
            "-c",
            r#"printf '%s\0' "$@" > argv.bin"#,
            "sh",
            "{pr}",
            "{branch}",
            "{base}",
            "{repo}",
            "{worktree}",
            "{log}",
            "pre-{branch}-post",
        ],
        &["true"],
    );
    let result = land(&runner, &fx, 1).await;
    assert!(result.succeeded(), "{result}");

    let bytes = std::fs::read(fx.worktree_file("argv.bin")).unwrap();
    let args: Vec<&[u8]> = bytes
        .strip_suffix(b"\0")
        .unwrap()
        .split(|b| *b == 0)
        .collect();
    let log = fx.log(1, "land");
    let expected: Vec<Vec<u8>> = vec![
        b"42".to_vec(),
        fx.vars.branch.as_bytes().to_vec(),
        fx.vars.base.as_bytes().to_vec(),
        fx.vars.repo.as_os_str().as_encoded_bytes().to_vec(),
        fx.vars.worktree.as_os_str().as_encoded_bytes().to_vec(),
        log.as_os_str().as_encoded_bytes().to_vec(),
        format!("pre-{}-post", fx.vars.branch).into_bytes(),
    ];
    assert_eq!(args, expected);
    let parent = fx.vars.worktree.parent().unwrap().to_owned();
    for dir in [&fx.vars.worktree, &parent, &fx.vars.repo] {
        assert!(
            !dir.join("pwned").exists(),
            "a value was run as code in {dir:?}"
        );
    }
}

#[tokio::test]
async fn a_nul_byte_in_a_value_fails_the_spawn_instead_of_truncating() {
    let mut fx = Fixture::new();
    fx.vars.branch = "feat\0--force".to_owned();
    let runner = fx.runner(&["sh", "-c", "touch ran", "sh", "{branch}"], &["true"]);
    let result = land(&runner, &fx, 1).await;
    assert!(
        matches!(result.outcome, Outcome::SpawnFailed(_)),
        "{result}"
    );
    assert!(!fx.worktree_file("ran").exists());
}

#[test]
fn unknown_placeholders_are_refused_when_the_config_is_loaded() {
    let err = CommandTemplate::parse(vec![
        "gh".into(),
        "pr".into(),
        "merge".into(),
        "{prr}".into(),
    ])
    .unwrap_err();
    assert!(
        matches!(&err, TemplateError::UnknownPlaceholder { name, index: 3, .. } if name == "prr")
    );
    assert!(err.to_string().contains("{prr}"), "{err}");

    #[derive(serde::Deserialize, Debug)]
    struct Config {
        land: CommandTemplate,
    }
    let good: Config =
        serde_json::from_str(r#"{"land": ["claude", "-p", "land PR {pr}"]}"#).unwrap();
    assert_eq!(good.land.as_raw(), ["claude", "-p", "land PR {pr}"]);
    let bad = r#"{"land": ["claude", "-p", "land PR {pr} from {brnch}"]}"#;
    let err = serde_json::from_str::<Config>(bad).unwrap_err();
    assert!(err.to_string().contains("{brnch}"), "{err}");
    assert!(CommandTemplate::parse(Vec::new()).is_err());
}

#[tokio::test]
async fn output_goes_to_a_private_log_and_the_exit_code_is_reported() {
    let fx = Fixture::new();
    let runner = fx.runner(
        &sh("echo to-stdout; echo to-stderr >&2; if read -r line; then echo got-stdin; else echo stdin-eof; fi; exit 3"),
        &["true"],
    );
    let result = land(&runner, &fx, 1).await;
    assert_eq!(
        result.outcome,
        Outcome::Exited {
            code: Some(3),
            signal: None
        }
    );
    assert!(!result.succeeded() && !result.drift_detected());
    let log = fx.log(1, "land");
    assert_eq!(result.log_path, log);
    assert_eq!(
        result.to_string(),
        format!(
            "landing command exited with status 3 (log: {})",
            log.display()
        )
    );

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("==== berth "), "{text}");
    assert!(
        text.lines().next().unwrap().contains(r#""echo to-stdout;"#),
        "header shows argv: {text}"
    );
    for line in ["to-stdout", "to-stderr", "stdin-eof"] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from {text}"
        );
    }
    let footer = text.lines().last().unwrap();
    assert!(
        footer.starts_with("==== berth ") && footer.contains("command exited with status 3 after"),
        "{text}"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(log.parent().unwrap()), 0o700);
}

#[tokio::test]
async fn death_by_signal_and_spawn_failures_are_reported() {
    let fx = Fixture::new();
    let killed = land(&fx.runner(&sh("kill -KILL $$"), &["true"]), &fx, 1).await;
    assert_eq!(
        killed.outcome,
        Outcome::Exited {
            code: None,
            signal: Some(9)
        }
    );
    assert!(
        killed.to_string().contains("killed by signal 9 (SIGKILL)"),
        "{killed}"
    );

    let missing = land(&fx.runner(&["/nonexistent/berth-land"], &["true"]), &fx, 2).await;
    assert!(
        matches!(missing.outcome, Outcome::SpawnFailed(_)),
        "{missing}"
    );
    assert!(
        missing
            .to_string()
            .starts_with("landing command could not be started: \"/nonexistent/berth-land\""),
        "{missing}"
    );
    let text = std::fs::read_to_string(fx.log(2, "land")).unwrap();
    assert!(
        text.contains("could not be started"),
        "the log tells too: {text}"
    );

    let mut gone = fx.vars.clone();
    gone.worktree = fx.vars.repo.join("removed-worktree");
    let no_cwd = fx
        .runner(&["true"], &["true"])
        .run(Step::Land, RECORD, &gone, 3, &CancellationToken::new())
        .await
        .unwrap();
    assert!(
        matches!(no_cwd.outcome, Outcome::SpawnFailed(_)),
        "{no_cwd}"
    );
    assert!(no_cwd.to_string().contains("working directory"), "{no_cwd}");
}

/// A step printing 512 MiB (as fast as a pipe takes it) leaves a log of its first and last
/// MiB with one line counting the cut, and still succeeds: berth drains the pipe while the
/// step runs, so the step never blocks on it.
#[tokio::test]
async fn a_step_printing_512_mib_leaves_a_bounded_log_and_still_succeeds() {
    const PRINTED: u64 = 512 * 1024 * 1024;
    let fx = Fixture::new();
    let script = format!("echo first-line; head -c {PRINTED} /dev/zero; echo; echo last-line");
    let result = land(&fx.runner(&sh(&script), &["true"]), &fx, 1).await;
    assert!(result.succeeded(), "{result}");
    let log = std::fs::read(fx.log(1, "land")).unwrap();
    let kept = (berth::runner::LOG_HEAD_BYTES + berth::runner::LOG_TAIL_BYTES) as u64;
    assert!(
        (log.len() as u64) < kept + 4096,
        "{} bytes in the log",
        log.len()
    );
    let text = String::from_utf8_lossy(&log);
    let printed = PRINTED + "first-line\n\nlast-line\n".len() as u64;
    let cut = printed - kept;
    assert!(
        text.contains(&format!("==== berth: {cut} bytes of output cut here")),
        "no cut line counting {cut} bytes"
    );
    assert!(text.contains("\nfirst-line\n") && text.contains("\nlast-line\n"));
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .contains("command exited successfully"),
        "the footer follows the tail"
    );
}

/// A process that left the step's group (`setsid`) and keeps its output open does not keep
/// the step running: the log is closed at most a bounded time after the group ended.
#[tokio::test]
async fn an_escaped_process_holding_the_output_does_not_hold_the_step() {
    let fx = Fixture::new();
    let runner = fx.runner(
        &sh("setsid sh -c 'echo $$ > escaped.pid; exec sleep 60' & until [ -s escaped.pid ]; do sleep 0.01; done; echo started; exit 0"),
        &["true"],
    );
    let result = tokio::time::timeout(Duration::from_secs(30), land(&runner, &fx, 1))
        .await
        .expect("the step never ended while an escaped process held its output");
    let escaped = read_pid(&fx.worktree_file("escaped.pid")).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(escaped),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(result.succeeded(), "{result}");
    let text = std::fs::read_to_string(fx.log(1, "land")).unwrap();
    assert!(text.contains("started\n"), "{text}");
    assert!(text.contains("command exited successfully"), "{text}");
}

#[tokio::test]
async fn a_leader_that_exits_leaves_no_process_behind() {
    let fx = Fixture::new();
    let runner = fx.runner(
        &sh("sleep 300 & echo $! > grandchild.pid; exit 0"),
        &["true"],
    );
    let result = land(&runner, &fx, 1).await;
    assert!(result.succeeded(), "{result}");
    let grandchild = read_pid(&fx.worktree_file("grandchild.pid")).await;
    assert!(
        gone_within(grandchild, Duration::from_secs(2)).await,
        "straggler {grandchild} survived the step"
    );
}

#[tokio::test]
async fn a_process_that_left_the_steps_group_does_not_outlive_the_step() {
    // What `git gc --auto` does when git detaches it: a new session, so neither the step's
    // end nor its guard's group kill reaches it; the lane's next landing would run beside it.
    let fx = Fixture::new();
    let runner = fx.runner(
        &sh("setsid sh -c 'echo $$ > detached.pid; exec sleep 300' </dev/null >/dev/null 2>&1 & until [ -s detached.pid ]; do sleep 0.01; done; exit 0"),
        &["true"],
    );
    let result = land(&runner, &fx, 1).await;
    assert!(result.succeeded(), "{result}");
    assert_detached_gone_within(&fx, Duration::from_secs(1), "the step that started it").await;
}

#[tokio::test]
async fn timeout_terminates_the_whole_group() {
    let fx = Fixture::new();
    let runner = fx
        .runner(&sh("sleep 300 & echo $! > grandchild.pid; wait"), &["true"])
        .with_timeout(Duration::from_millis(800))
        .with_grace(Duration::from_secs(2));
    let start = Instant::now();
    let result = land(&runner, &fx, 1).await;
    let took = start.elapsed();
    assert_eq!(
        result.outcome,
        Outcome::TimedOut {
            after: Duration::from_millis(800)
        }
    );
    // sh and sleep both die on SIGTERM: no need to wait out the grace.
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(800) + SLACK,
        "{took:?}"
    );
    let grandchild = read_pid(&fx.worktree_file("grandchild.pid")).await;
    assert!(
        gone_within(grandchild, Duration::from_secs(1)).await,
        "grandchild {grandchild} survived"
    );
    assert!(
        result.to_string().contains("timed out after 800ms"),
        "{result}"
    );
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_is_killed_after_the_grace() {
    let fx = Fixture::new();
    let runner = fx
        .runner(
            &sh("trap '' TERM; sleep 300 & echo $! > grandchild.pid; wait; wait"),
            &["true"],
        )
        .with_timeout(Duration::from_millis(500))
        .with_grace(Duration::from_millis(1000));
    let start = Instant::now();
    let result = land(&runner, &fx, 1).await;
    let took = start.elapsed();
    assert!(
        matches!(result.outcome, Outcome::TimedOut { .. }),
        "{result}"
    );
    let bound = Duration::from_millis(1500);
    assert!(
        took >= bound && took < bound + SLACK,
        "SIGKILL came at {took:?}"
    );
    let grandchild = read_pid(&fx.worktree_file("grandchild.pid")).await;
    assert!(
        gone_within(grandchild, Duration::from_secs(1)).await,
        "grandchild {grandchild} survived"
    );
}

#[tokio::test]
async fn cancellation_terminates_the_group_and_reports_cancelled() {
    let fx = Fixture::new();
    let runner = fx
        .runner(
            &sh("echo $$ > leader.pid; sleep 300 & echo $! > grandchild.pid; wait"),
            &["true"],
        )
        .with_grace(Duration::from_secs(2));
    let cancel = CancellationToken::new();
    let task = {
        let (runner, vars, cancel) = (runner.clone(), fx.vars.clone(), cancel.clone());
        tokio::spawn(async move { runner.run(Step::Land, RECORD, &vars, 1, &cancel).await })
    };
    let grandchild = read_pid(&fx.worktree_file("grandchild.pid")).await;
    let leader = read_pid(&fx.worktree_file("leader.pid")).await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = task.await.unwrap().unwrap();
    assert_eq!(result.outcome, Outcome::Cancelled);
    assert!(cancelled_at.elapsed() < Duration::from_secs(2) + SLACK);
    assert!(!alive(leader), "leader {leader} was not reaped");
    assert!(
        gone_within(grandchild, Duration::from_secs(1)).await,
        "grandchild {grandchild} survived"
    );
    assert!(
        result
            .to_string()
            .starts_with("landing command was cancelled"),
        "{result}"
    );
}

#[tokio::test]
async fn nothing_starts_once_cancelled() {
    let fx = Fixture::new();
    let runner = fx.runner(&sh("touch ran"), &["true"]);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let result = runner
        .run(Step::Land, RECORD, &fx.vars, 1, &cancel)
        .await
        .unwrap();
    assert_eq!(result.outcome, Outcome::Cancelled);
    assert!(!fx.worktree_file("ran").exists());
}

#[tokio::test]
async fn a_dropped_step_future_does_not_leak_its_process_group() {
    let fx = Fixture::new();
    let runner = fx.runner(
        &sh("trap '' TERM; sleep 300 & echo $! > grandchild.pid; wait"),
        &["true"],
    );
    let task = {
        let (runner, vars) = (runner.clone(), fx.vars.clone());
        tokio::spawn(async move {
            runner
                .run(Step::Land, RECORD, &vars, 1, &CancellationToken::new())
                .await
        })
    };
    let grandchild = read_pid(&fx.worktree_file("grandchild.pid")).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        gone_within(grandchild, Duration::from_secs(2)).await,
        "grandchild {grandchild} outlived its dropped step"
    );
}

#[tokio::test]
async fn drift_counts_only_in_this_runs_own_output() {
    let fx = Fixture::new();
    // The signature is also an *argument*: it shows in the log's header but is not output.
    let runner = fx.runner(
        &[
            "sh",
            "-c",
            r#"[ -e drift ] && echo "error: $0"; exit 1"#,
            "VERSION drift detected",
        ],
        &["true"],
    );
    std::fs::write(fx.worktree_file("drift"), "").unwrap();
    let first = land(&runner, &fx, 1).await;
    assert!(first.drift_detected(), "{first}");
    assert!(
        first.to_string().contains("reported release drift"),
        "{first}"
    );

    std::fs::remove_file(fx.worktree_file("drift")).unwrap();
    let second = land(&runner, &fx, 1).await;
    assert_eq!(second.log_path, first.log_path, "same attempt, same log");
    let text = std::fs::read_to_string(&second.log_path).unwrap();
    assert!(
        text.contains("error: VERSION drift detected"),
        "the earlier run is still in the log"
    );
    assert!(
        !second.drift_detected(),
        "an earlier run's drift was read as this run's"
    );

    let succeeded = land(
        &fx.runner(
            &sh("echo 'queue moved since last /ship'; exit 0"),
            &["true"],
        ),
        &fx,
        2,
    )
    .await;
    assert!(succeeded.succeeded() && !succeeded.drift_detected());

    let timed_out = land(
        &fx.runner(
            &sh("echo 'queue moved since last /ship'; sleep 300"),
            &["true"],
        )
        .with_timeout(Duration::from_millis(300)),
        &fx,
        3,
    )
    .await;
    assert!(matches!(timed_out.outcome, Outcome::TimedOut { .. }) && !timed_out.drift_detected());
}

#[tokio::test]
async fn a_record_id_that_could_escape_the_logs_dir_runs_nothing() {
    let fx = Fixture::new();
    let runner = fx.runner(&sh("touch ran"), &["true"]);
    for bad in ["../escape", "a/b", ".."] {
        let err = runner
            .run(Step::Land, bad, &fx.vars, 1, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    assert!(!fx.worktree_file("ran").exists());
    assert!(!fx.logs.exists());
}

/// The daemon prunes `logs/` when it sweeps the queue (at start): a log older than 30 days
/// goes, a fresh one stays.
#[test]
fn the_daemon_prunes_attempt_logs_older_than_thirty_days() {
    let world = crate::support::World::new();
    let config = world.git_forge_config("");
    let logs = world.berth_state().join("logs/some-record");
    std::fs::create_dir_all(&logs).unwrap();
    let old = logs.join("attempt-1-land.log");
    let fresh = logs.join("attempt-2-land.log");
    for path in [&old, &fresh] {
        std::fs::write(path, "output\n").unwrap();
    }
    let sixty_days = std::time::Duration::from_secs(60 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - sixty_days)
        .unwrap();
    world.run_once(&config).code(0);
    assert!(
        world.wait_for(std::time::Duration::from_secs(10), || !old.exists()),
        "the 60-day-old log is still there"
    );
    assert!(fresh.exists());
}

/// [`Runner::run_in`] under a lease of `ttl` written `ago`, extended every `every` (if any)
/// while the step runs.
async fn land_leased(
    fx: &Fixture,
    argv: &[&str],
    (ttl, ago): (Duration, Duration),
    every: Option<Duration>,
) -> StepResult {
    land_leased_by(fx, fx.runner(argv, &["true"]), lease(ttl, ago), every).await
}

/// A lease of `ttl` whose lock was written `ago`.
fn lease(ttl: Duration, ago: Duration) -> berth::runner::Lease {
    berth::runner::Lease::new(berth::boot_clock::BootTime::now().before(ago), ttl)
}

/// [`land_leased`] with `runner`, under `lease`.
async fn land_leased_by(
    fx: &Fixture,
    runner: Runner,
    lease: berth::runner::Lease,
    every: Option<Duration>,
) -> StepResult {
    use berth::boot_clock::BootTime;
    use berth::pinned_dir::PinnedDir;
    let repo = PinnedDir::open(&fx.vars.repo.canonicalize().unwrap()).unwrap();
    let worktree = PinnedDir::open(&fx.vars.worktree.canonicalize().unwrap()).unwrap();
    let extender = every.map(|every| {
        let lease = lease.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                lease.extend(BootTime::now());
            }
        })
    });
    let fence = berth::runner::Fence {
        repo: &repo,
        worktree: &worktree,
        lease: &lease,
    };
    let result = runner
        .run_in(
            Step::Land,
            RECORD,
            &fx.vars,
            Some(&fence),
            1,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    if let Some(task) = extender {
        task.abort();
    }
    result
}

#[tokio::test]
async fn a_lease_that_runs_out_stops_the_whole_group_and_an_extended_one_does_not() {
    let fx = Fixture::new();
    let ttl = Duration::from_secs(2);
    let stopped = land_leased(
        &fx,
        &["sh", "-c", "sleep 300 & echo $! > child.pid; wait"],
        (ttl, Duration::ZERO),
        None,
    )
    .await;
    assert_eq!(stopped.outcome, Outcome::LeaseExpired, "{stopped}");
    let child: i32 = std::fs::read_to_string(fx.worktree_file("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = || {
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    };
    let started = Instant::now();
    while alive() && started.elapsed() < SLACK {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(), "the step's background process outlived the lease");

    // Three TTLs of work, the lease extended all along: it runs to its end.
    let extended = land_leased(
        &fx,
        &["sleep", "6"],
        (ttl, Duration::ZERO),
        Some(Duration::from_millis(200)),
    )
    .await;
    assert!(extended.succeeded(), "{extended}");
}

/// Berth was stopped (SIGSTOP, a suspend) between two steps for longer than the lock's
/// TTL: another daemon may own the lane by now. The next step is not started at all; a
/// started one would run until its guard's SIGKILL (a land command that ignores SIGTERM
/// can push meanwhile), alongside the new owner's landing.
#[tokio::test]
async fn a_step_whose_lease_already_ran_out_is_never_started() {
    let fx = Fixture::new();
    let ttl = Duration::from_secs(8);
    let result = land_leased(
        &fx,
        &sh("trap '' TERM; touch ran; sleep 1"),
        (ttl, 2 * ttl),
        None,
    )
    .await;
    assert_eq!(result.outcome, Outcome::LeaseExpired, "{result}");
    let log = std::fs::read_to_string(fx.log(1, "land")).unwrap_or_default();
    assert!(!log.contains(": running "), "the step was started: {log}");
    assert!(!fx.worktree_file("ran").exists(), "the step ran");
}

/// The lane lock's heartbeat found the lock lost (taken over while the checkout was
/// made), with the lease's deadline still ahead and no cancellation yet: the step is not
/// started, and says why.
#[tokio::test]
async fn a_step_whose_lock_was_found_lost_is_never_started() {
    let fx = Fixture::new();
    let (lost_tx, lost) = tokio::sync::watch::channel(false);
    lost_tx.send_replace(true);
    let lease = lease(Duration::from_secs(60), Duration::ZERO).ending_when(lost);
    let runner = fx.runner(&sh("touch ran"), &["true"]);
    let result = land_leased_by(&fx, runner, lease, None).await;
    assert_eq!(result.outcome, Outcome::LockLost, "{result}");
    assert!(!fx.worktree_file("ran").exists(), "the step ran");
    let log = std::fs::read_to_string(fx.log(1, "land")).unwrap();
    assert!(
        log.contains("was not started: its lane lock was found lost"),
        "{log}"
    );
}

#[tokio::test]
async fn pinned_placeholders_name_the_inherited_directories() {
    let fx = Fixture::new();
    let result = land_leased(
        &fx,
        &[
            "sh",
            "-c",
            "cd \"$1\" && pwd -P > \"$2/where\"",
            "sh",
            "{repo}",
            "{worktree}",
        ],
        (Duration::from_secs(3600), Duration::ZERO),
        None,
    )
    .await;
    assert!(result.succeeded(), "{result}");
    let argv_repo = std::fs::read_to_string(fx.worktree_file("where")).unwrap();
    assert_eq!(
        Path::new(argv_repo.trim()),
        fx.vars.repo.canonicalize().unwrap()
    );
}

/// A process that left the step's group, and the step's future is dropped (what the
/// daemon's shutdown drain does with `abort_all` once its budget is up, e.g. a step that
/// ignores SIGTERM under a grace longer than the budget): the drop kills the group, and the
/// guard kills what carries the step's mark, since the runner's end-of-step sweep never
/// runs for a dropped step.
#[tokio::test]
async fn a_detached_process_does_not_outlive_a_dropped_step() {
    let fx = Fixture::new();
    let runner = fx.runner(
        &sh("setsid sh -c 'echo $$ > detached.pid; exec sleep 300' </dev/null >/dev/null 2>&1 & until [ -s detached.pid ]; do sleep 0.01; done; trap '' TERM; sleep 300"),
        &["true"],
    );
    let run = land(&runner, &fx, 1);
    let timed_out = tokio::time::timeout(Duration::from_secs(2), run).await;
    assert!(
        timed_out.is_err(),
        "the step should still have been running"
    );
    assert_detached_gone_within(
        &fx,
        Duration::from_secs(3),
        "the dropped step that started it",
    )
    .await;
}

/// The step's future is dropped (the daemon's shutdown drain runs out of budget and aborts
/// the landing) after its leader exited but while berth still drains the output a detached
/// child holds open (up to `DRAIN_AFTER_EXIT`, 2 s). The leader is reaped, so the guard was
/// already dismissed and the drop has no group to kill and no guard to tell; the runner's
/// end-of-step sweep never runs for a dropped future: the detached child outlives the step.
#[tokio::test]
async fn a_detached_process_holding_the_output_does_not_outlive_a_step_dropped_while_its_output_drains()
 {
    let fx = Fixture::new();
    let runner = fx.runner(
        &sh("setsid sh -c 'echo $$ > detached.pid; exec sleep 300' </dev/null & until [ -s detached.pid ]; do sleep 0.01; done; echo $$ > leader.pid; exit 0"),
        &["true"],
    );
    // Boxed, so that dropping it drops the step's future itself, not a pinned reference.
    let mut run = Box::pin(land(&runner, &fx, 1));
    let leader_file = fx.worktree_file("leader.pid");
    // Drive the step until its leader has exited and been reaped (no /proc entry). The
    // guard ends the detached child as the leader is reaped, so the drain may finish and
    // the step end before this loop sees the reap: then the step is dropped after its end,
    // and the child must be gone all the same.
    let reaped = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                _ = &mut run => return,
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            if let Ok(text) = std::fs::read_to_string(&leader_file)
                && let Ok(pid) = text.trim().parse::<i32>()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                return;
            }
        }
    })
    .await;
    assert!(reaped.is_ok(), "the step's leader was never reaped");
    // Dropped inside the drain of its output.
    drop(run);
    assert_detached_gone_within(
        &fx,
        Duration::from_secs(3),
        "the step dropped while its output drained",
    )
    .await;
}

/// Berth stopped right after spawning a step, before its guard learned the step's group
/// (the hook stands in for a SIGSTOP there, sleeping past the lease): the guard, forked
/// before the step, stops it at the lease's end by its mark all the same.
#[tokio::test]
async fn a_step_is_guarded_from_its_first_instant() {
    let fx = Fixture::new();
    let ttl = Duration::from_secs(2);
    let step_pid = fx.worktree_file("step.pid");
    let alive_after_lease = Arc::new(std::sync::Mutex::new(None));
    let seen = Arc::clone(&alive_after_lease);
    let hook = berth::runner::SpawnHook(Arc::new(move || {
        // Past the lease's deadline (TTL − margin) and the guard's whole look for the mark.
        std::thread::sleep(ttl + SLACK.min(Duration::from_secs(2)));
        let pid = std::fs::read_to_string(&step_pid)
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok());
        *seen.lock().unwrap() = Some(pid.map(alive));
    }));
    let runner = fx
        .runner(&sh("echo $$ > step.pid; exec sleep 300"), &["true"])
        .with_spawn_hook(hook);
    let result = land_leased_by(&fx, runner, lease(ttl, Duration::ZERO), None).await;
    assert_eq!(result.outcome, Outcome::LeaseExpired, "{result}");
    let alive_after_lease = alive_after_lease.lock().unwrap().take();
    assert_eq!(
        alive_after_lease,
        Some(Some(false)),
        "the step ran on past its lease while berth had not yet told the guard its group (None: it never wrote its pid)"
    );
}
