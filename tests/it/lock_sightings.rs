//! First sightings that outlive a berth process: a future-dated dead writer's `.lock` and a
//! planted far-future lock are judged from the first look of any berth process on the berth
//! dir, so `berth run --once` and restarted daemons see their waits end.

use std::fs;
use std::path::Path;

use crate::gstack_compat::gstack_write_lock;
use crate::support::World;

/// A dead writer's `.lock` dated in the future (the clock was stepped back while a `git`
/// held it, and that `git` was then killed; or a `touch -d`) is "only ever seen, never
/// old": removed once berth has seen it unchanged for LEFTOVER_AGE. `berth run --once` (the
/// documented cron-style mode) sees each leftover once per process, so the sighting is
/// kept in the berth dir: kept in memory, it would start anew at every run and the lane
/// would stay wedged, with nobody holding it, for as long as the file's date is ahead
/// (here a day; a year for a `touch -d`), far past 2×TTL.
#[test]
fn a_future_dated_dead_writers_ref_lock_seen_by_successive_run_once_is_removed() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(62, "main");
    let refs = Path::new(&lane.remote_url).join("refs/gstack/release-locks/+repo");
    fs::create_dir_all(&refs).unwrap();
    let leftover = refs.join("main.lock");
    fs::write(&leftover, "").unwrap();
    let touched = std::process::Command::new("touch")
        .args(["-d", "1 day"])
        .arg(&leftover)
        .status()
        .unwrap();
    assert!(touched.success());
    let config = world.git_forge_config("");
    let mut said = String::new();
    // Three runs spanning more than LEFTOVER_AGE, the file unchanged throughout.
    for pass in 0..3 {
        if pass > 0 {
            std::thread::sleep(
                berth::lane_lock::LEFTOVER_AGE / 2 + std::time::Duration::from_secs(1),
            );
        }
        let out = world.run_once(&config).get_output().clone();
        said = String::from_utf8_lossy(&out.stderr).into_owned();
        if world.read_record(&id)["status"] == "landed" {
            break;
        }
    }
    assert_eq!(
        world.read_record(&id)["status"],
        "landed",
        "a dead writer's future-dated {} seen unchanged for more than {} s by `run --once` is never removed; berth said:\n{said}",
        leftover.display(),
        berth::lane_lock::LEFTOVER_AGE.as_secs()
    );
}

/// A planted lock whose `expiresAt` lies a year ahead is "judged to expire that long
/// (the longest TTL plus the skew bound) after berth first saw it". Kept only in one
/// process's memory, every new process would see it first: under `berth run --once` (each
/// run a process), and for a daemon restarted more often than every 2 h 5 min (deploys, a
/// crash loop, a service manager), the judged expiry would move forward with every start
/// and the planted lock would hold the lane for as long as it says. Two runs 3 s apart
/// judge the same lock to expire at the same time.
#[test]
fn a_planted_far_future_locks_first_sighting_outlives_each_berth_process() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(63, "main");
    let now = chrono::Utc::now();
    let payload = serde_json::json!({
        "ownerId": "planted",
        "repoPath": "/planted",
        "baseBranch": "main",
        "createdAt": berth::clock::iso(now),
        "expiresAt": berth::clock::iso(now + chrono::Duration::days(365)),
    });
    gstack_write_lock(
        &world,
        &lane.remote_url,
        "refs/gstack/release-locks/+repo/main",
        &payload,
    );
    let config = world.git_forge_config("");
    let judged = || {
        let out = world.run_once(&config).get_output().clone();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(world.read_record(&id)["status"], "queued", "{said}");
        said.split("judged_to_expire_at=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no judged expiry logged:\n{said}"))
            .to_owned()
    };
    let first = judged();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let second = judged();
    assert_eq!(
        first, second,
        "the planted lock's judged expiry moved forward with the next berth process (first sighting forgotten): it never expires for `run --once`, nor for a daemon restarted more often than the cap"
    );
}
