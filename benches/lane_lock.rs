//! Lane lock acquire + release round trip: berth's in-process libgit2 `LockClient` against
//! the same protocol done the gstack way with `git` child processes (`ls-remote`, `mktree`,
//! `commit-tree`, `push`, `ls-remote`, `push :ref`), both against one `git daemon` remote
//! on 127.0.0.1 in the same run, interleaved so load on the machine hits both alike.
//!
//! Then berth's round trip on a local-path origin, where each ref write is a
//! `git update-ref` child process.
//!
//! A plain `main` timed with `std::time` (criterion's sampling would take minutes for
//! operations this slow): `cargo bench --bench lane_lock`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::clock;
use berth::git_daemon::GitDaemon;
use berth::lane_lock::{Acquire, Lane, LockClient, LockSettings, Released, lock_ref_name};

const WARMUP: usize = 3;
const ROUNDS: usize = 40;
/// Acquire on a free lane is one push (create); release is one push (delete).
const BERTH_CONNECTIONS: u32 = 2;
/// `ls-remote`, `push`, `ls-remote`, `push :ref`.
const CLI_CONNECTIONS: u32 = 4;
/// A local origin's acquire + release: create and delete of gstack's ref and `+repo`.
const LOCAL_WRITES: u32 = 4;
/// `mktree`, `commit-tree`.
const CLI_LOCAL_PROCESSES: u32 = 2;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bare = dir.path().join("locks.git");
    git(dir.path(), &["init", "--bare", "-q", path_str(&bare)], None);
    let daemon = GitDaemon::start(dir.path()).expect("git daemon");
    let url = daemon.url_for("locks.git");

    let client = LockClient::new(&dir.path().join("berth-scratch"), LockSettings::default())
        .expect("lock client");
    let cli_scratch = dir.path().join("gstack-scratch.git");
    git(
        dir.path(),
        &["init", "--bare", "-q", path_str(&cli_scratch)],
        None,
    );

    let berth_lane = lane("bench-berth");
    let cli_lane = lane("bench-gstack");
    let cli_ref = lock_ref_name(&cli_lane);

    let mut berth_times = Vec::with_capacity(ROUNDS);
    let mut cli_times = Vec::with_capacity(ROUNDS);
    for round in 0..WARMUP + ROUNDS {
        // Alternate which side goes first, so neither always runs on a warmer cache.
        let (berth, cli) = if round % 2 == 0 {
            let berth = time(|| berth_round_trip(&client, &url, &berth_lane));
            (berth, time(|| cli_round_trip(&cli_scratch, &url, &cli_ref)))
        } else {
            let cli = time(|| cli_round_trip(&cli_scratch, &url, &cli_ref));
            (time(|| berth_round_trip(&client, &url, &berth_lane)), cli)
        };
        if round >= WARMUP {
            berth_times.push(berth);
            cli_times.push(cli);
        }
    }

    let (berth_median, berth_mean) = stats(&mut berth_times);
    let (cli_median, cli_mean) = stats(&mut cli_times);
    println!("lane lock acquire+release round trip over git daemon on 127.0.0.1, {ROUNDS} rounds");
    println!("  berth (libgit2, in-process): median {berth_median:>9.2?}  mean {berth_mean:>9.2?}");
    println!("  gstack way (git processes):  median {cli_median:>9.2?}  mean {cli_mean:>9.2?}");
    println!(
        "  ratio (gstack / berth):      median {:.1}x  mean {:.1}x",
        cli_median.as_secs_f64() / berth_median.as_secs_f64(),
        cli_mean.as_secs_f64() / berth_mean.as_secs_f64()
    );
    // A local origin: no connection, but each write of a lock ref is a `git update-ref`
    // child (two refs each way: gstack's and the repository's `+repo`), so a berth stopped
    // mid-write holds no lock on the origin.
    let local = dir.path().join("local.git");
    git(
        dir.path(),
        &["init", "--bare", "-q", path_str(&local)],
        None,
    );
    let local_lane = lane("bench-local");
    let mut local_times: Vec<Duration> = (0..WARMUP + ROUNDS)
        .map(|_| time(|| berth_round_trip(&client, path_str(&local), &local_lane)))
        .skip(WARMUP)
        .collect();
    let (local_median, local_mean) = stats(&mut local_times);
    println!(
        "  berth, local-path origin:     median {local_median:>9.2?}  mean {local_mean:>9.2?}  ({LOCAL_WRITES} git update-ref children, {:.2?} each at the median)",
        local_median / LOCAL_WRITES
    );
    // Each connection to `git daemon` costs a fork + exec of upload-pack/receive-pack on
    // the server (and, on loopback, a delayed-ACK stall): a floor both sides pay per
    // connection, which caps the wall-clock ratio whatever the client does.
    println!(
        "  remote connections:          berth {BERTH_CONNECTIONS} ({:.2?} each), gstack way {CLI_CONNECTIONS} ({:.2?} each) + {CLI_LOCAL_PROCESSES} local git processes",
        berth_median / BERTH_CONNECTIONS,
        cli_median / CLI_CONNECTIONS,
    );
}

fn lane(base: &str) -> Lane {
    Lane {
        repo_identity: "github.com/acme/widget".into(),
        base_branch: base.into(),
    }
}

fn berth_round_trip(client: &LockClient, url: &str, lane: &Lane) {
    let held = match client.acquire(url, lane, "bench-berth", Path::new("/src/widget")) {
        Ok(Acquire::Acquired(held)) => held,
        other => panic!("berth acquire: {other:?}"),
    };
    assert_eq!(
        client.release(&held).expect("berth release"),
        Released::Deleted
    );
}

/// What gstack's TypeScript daemon runs for one acquire + release on a free lane.
fn cli_round_trip(scratch: &Path, url: &str, ref_name: &str) {
    let existing = git(scratch, &["ls-remote", url, ref_name], None);
    assert!(existing.trim().is_empty(), "lane not free: {existing}");
    let tree = git(scratch, &["mktree"], Some(""));
    let now = clock::now();
    let payload = serde_json::json!({
        "ownerId": "bench-gstack",
        "repoPath": "/src/widget",
        "repoIdentity": "github.com/acme/widget",
        "baseBranch": "bench-gstack",
        "createdAt": clock::iso(now),
        "expiresAt": clock::iso(now + chrono::Duration::hours(2)),
    });
    let body = serde_json::to_string_pretty(&payload).expect("json");
    let sha = git(
        scratch,
        &[
            "commit-tree",
            tree.trim(),
            "-m",
            "gstack release lock",
            "-m",
            &body,
        ],
        None,
    );
    let sha = sha.trim();
    git(
        scratch,
        &["push", "-q", url, &format!("{sha}:{ref_name}")],
        None,
    );
    let listed = git(scratch, &["ls-remote", url, ref_name], None);
    assert!(listed.starts_with(sha), "not ours after push: {listed}");
    git(scratch, &["push", "-q", url, &format!(":{ref_name}")], None);
}

fn git(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=gstack",
            "-c",
            "user.email=gstack@example.com",
        ])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).expect("git stdin");
    }
    let out = child.wait_with_output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// (median, mean)
fn stats(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len()).unwrap_or(u32::MAX);
    (times[times.len() / 2], mean)
}
