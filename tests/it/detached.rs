//! A step's child that left the step's process group (`setsid`, as git detaches `git gc`)
//! is out of reach of the group kills; it still carries the step's landing mark. However
//! its daemon stops (SIGKILLed; SIGKILLed with its step guards; paused past its lease),
//! that child must not run on under the lane's next landing.
//!
//! Daemon A (its own queue) runs a step that starts such a child holding a per-lane
//! witness `flock`, then A stops. Daemon B (another queue, the same origin: its reclaim
//! never touches A's record, so never ends A's leftovers) lands the lane's next PR with a
//! step that takes the witness without waiting, and records a collision if it cannot.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{World, read_pid};
use crate::takeover::children_but;

/// How daemon A stops while its step's detached child runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: its step's guard stops the group (and, by the mark, the child).
    Kill,
    /// SIGKILL to its step guards, then to A: nothing of A is left to stop the step; B's
    /// takeover of the lock of a holder proven gone kills what carries its mark first.
    KillWithGuards,
    /// SIGSTOP past the lock's TTL: the guard stops the step at the lease's end, and the
    /// child by the mark, before the lock expires and B takes it over.
    Pause,
}

/// A `berth run --watch` config with `script` as the land command (`sh -c`, given the
/// branch, base and PR).
fn config(world: &World, name: &str, script: &str, ttl: u64) -> PathBuf {
    let path = world.root.join(name);
    fs::write(
        &path,
        format!(
            "forge = \"git\"\npoll_secs = 1\nlock_ttl_secs = {ttl}\nheartbeat_secs = 1\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
        ),
    )
    .unwrap();
    path
}

fn run_args(config: &Path) -> Vec<String> {
    ["run", "--watch", "--config", config.to_str().unwrap()]
        .map(str::to_owned)
        .to_vec()
}

/// One lane, two daemons: A (its own queue, PR 61) whose step starts a detached child
/// holding the lane's witness, and B (another queue, PR 62) whose step takes the witness
/// without waiting and records a collision if it cannot.
struct TwoDaemons {
    world: World,
    queue_b: PathBuf,
    witness: PathBuf,
    collided: PathBuf,
    step_pid: PathBuf,
    detached_pid: PathBuf,
}

impl TwoDaemons {
    fn new() -> Self {
        let world = World::new();
        let lane = world.git_lane("widget", None);
        let _id_a = lane.queue(61, "main");
        let (queue_b, _id_b) = lane.queue_for_second_daemon(62);
        let root = world.root.clone();
        TwoDaemons {
            world,
            queue_b,
            witness: root.join("witness"),
            collided: root.join("collided"),
            step_pid: root.join("step-a.pid"),
            detached_pid: root.join("det.pid"),
        }
    }

    fn dir(&self, daemon: &str) -> PathBuf {
        self.world.root.join(daemon)
    }

    /// Starts daemon A, whose step starts a `setsid` child (its stdin and any other
    /// redirections `child_io`) that holds the witness, then writes the leader's pid and
    /// runs `then`. Returns A and its step leader's pid, once the leader has written it.
    fn start_a(&self, child_io: &str, then: &str, ttl: u64) -> (std::process::Child, i32) {
        let detaching = format!(
            "setsid sh -c 'exec 9>>{witness}; flock 9; echo $$ > {det}; exec sleep 300' {child_io} & until [ -s {det} ]; do sleep 0.01; done; echo $$ > {pid}; {then}",
            witness = self.witness.display(),
            det = self.detached_pid.display(),
            pid = self.step_pid.display()
        );
        let config_a = config(&self.world, "a.toml", &detaching, ttl);
        let args_a = run_args(&config_a);
        let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
        let dir_a = self.dir("a");
        let mut daemon_a = self.world.spawn_berth(&args_a, &dir_a, &[]);
        let leader = self.world.step_pid(&self.step_pid, &mut daemon_a, &dir_a);
        (daemon_a, leader)
    }

    /// Runs daemon B until it lands PR 62 or collides; then ends A (continuing it first if
    /// `a_paused`) and A's detached child, and asserts that B landed without meeting that
    /// child (`whose`, named in the failure).
    fn b_never_meets_the_child(
        &self,
        ttl: u64,
        mut daemon_a: std::process::Child,
        a_paused: bool,
        whose: &str,
    ) {
        let detached = read_pid(&self.detached_pid);
        let lands = format!(
            "exec 9>>{witness}; if ! flock -n 9; then echo \"$3\" >> {collided}; exit 1; fi; exec {land} \"$1\" \"$2\" {ledger} \"$3\"",
            witness = self.witness.display(),
            collided = self.collided.display(),
            land = self.world.land_script().display(),
            ledger = self.world.root.join("ledger").display(),
        );
        let config_b = config(&self.world, "b.toml", &lands, ttl);
        let dir_b = self.dir("b");
        let args_b = run_args(&config_b);
        let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
        let queue_env = [("BERTH_QUEUE_DIR", self.queue_b.as_path())];
        let mut daemon_b = self.world.spawn_berth(&args_b, &dir_b, &queue_env);
        let ended = self.world.wait_for(Duration::from_secs(90), || {
            self.collided.exists() || self.world.ledger() == [62]
        });
        kill(Pid::from_raw(daemon_b.id() as i32), Signal::SIGTERM).unwrap();
        daemon_b.wait().unwrap();
        if a_paused {
            let _ = kill(Pid::from_raw(daemon_a.id() as i32), Signal::SIGCONT);
        }
        // A no-op for a daemon already waited for: std signals no pid it has reaped.
        let _ = daemon_a.kill();
        let _ = daemon_a.wait();
        let _ = kill(Pid::from_raw(detached), Signal::SIGKILL);
        let logs = fs::read_to_string(dir_b.with_extension("log")).unwrap_or_default();
        assert!(ended, "B neither landed nor collided:\n{logs}");
        assert!(
            !self.collided.exists(),
            "B started a step of the lane while {whose} {detached} still ran:\n{logs}"
        );
    }
}

fn the_next_landing_never_meets_a_detached_child(stop: Stop) {
    let race = TwoDaemons::new();
    // Killed, A's lock can only be taken over as its holder's (proven gone); paused, only
    // once it expires.
    let ttl = if stop == Stop::Pause { 8 } else { 120 };
    let (mut daemon_a, leader) = race.start_a("</dev/null >/dev/null 2>&1", "sleep 300", ttl);
    let a = Pid::from_raw(daemon_a.id() as i32);
    match stop {
        Stop::Kill => {}
        Stop::KillWithGuards => {
            for guard in children_but(a.as_raw(), leader) {
                // Named apart, so `killall berth` spares them.
                let name = fs::read_to_string(format!("/proc/{guard}/comm")).unwrap();
                assert_eq!(name.trim(), "lease-guard");
                kill(Pid::from_raw(guard), Signal::SIGKILL).unwrap();
            }
        }
        Stop::Pause => kill(a, Signal::SIGSTOP).unwrap(),
    }
    if stop != Stop::Pause {
        daemon_a.kill().unwrap();
        daemon_a.wait().unwrap();
    }
    race.b_never_meets_the_child(
        ttl,
        daemon_a,
        stop == Stop::Pause,
        "A's detached step child",
    );
}

#[test]
fn a_dead_daemons_detached_step_child_is_stopped_by_its_guard() {
    the_next_landing_never_meets_a_detached_child(Stop::Kill);
}

#[test]
fn a_dead_daemons_detached_step_child_is_stopped_by_the_takeover_when_its_guard_died_too() {
    the_next_landing_never_meets_a_detached_child(Stop::KillWithGuards);
}

#[test]
fn a_paused_daemons_detached_step_child_is_stopped_by_its_lease() {
    the_next_landing_never_meets_a_detached_child(Stop::Pause);
}

/// The window between the step's end and berth's own sweep of its leftovers. A's step
/// leader starts a `setsid` child that keeps the step's output pipe open (a plain
/// `setsid cmd &`, no redirection) and holds the lane's witness, then exits 0. berth reaps
/// the leader, which dismisses the step's guard, then waits up to `DRAIN_AFTER_EXIT` (2 s)
/// for the pipe to close before `end_leftovers` kills what carries the mark. A is paused
/// (SIGSTOP) inside that wait: no guard and no lease stand over the detached child any
/// more, A's lock expires on its TTL (A alive, so the takeover kills nothing), and B lands
/// the lane's next PR while A's detached child still runs.
#[test]
fn a_detached_child_holding_the_output_is_stopped_when_its_daemon_pauses_after_the_step() {
    let race = TwoDaemons::new();
    let ttl = 8;
    // The detached child keeps stdout and stderr: the step's output pipe.
    let (daemon_a, leader) = race.start_a("</dev/null", "exit 0", ttl);
    let a = Pid::from_raw(daemon_a.id() as i32);
    // Reaped (no /proc entry, not even a zombie): berth dismissed the guard just before.
    let mut reaped = false;
    for _ in 0..20_000 {
        if !Path::new(&format!("/proc/{leader}")).exists() {
            reaped = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    kill(a, Signal::SIGSTOP).unwrap();
    assert!(reaped, "A never reaped its step's leader");
    race.b_never_meets_the_child(ttl, daemon_a, true, "paused A's detached step child");
}
