//! Queue records near their 1 MiB cap: what the daemon holds per record stays about the
//! record's size (unknown fields kept as text, not a parsed tree), and what berth writes back
//! is a record berth itself will read (compact when pretty would pass the cap).

use std::fs;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    World, berth_log, sample, scrape, served_addr, spawn_serving_metrics, spawn_ticking, stop,
    ticks_after,
};

/// Twenty abandoned records of 1 MiB each (20 MiB on disk, all of it one unknown field of
/// `[0],[0],...`, ~50 MiB each as a parsed tree) cost the daemon less than 1 GiB resident.
#[test]
fn twenty_1_mib_records_cost_the_daemon_about_their_size() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 1\n");
    let mut daemon = spawn_ticking(&world, &config, 2);
    let log = || berth_log(&world);
    let rss_mib = |pid: u32| -> u64 {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            / 1024
    };
    let before = rss_mib(daemon.id());
    let blob: serde_json::Value =
        serde_json::from_str(&format!("[{}[0]]", "[0],".repeat(260_000))).unwrap();
    for pr in 1..=20 {
        let id = lane
            .world
            .record(&lane.clone, pr)
            .set("status", "abandoned")
            .write();
        let path = world.queue.join(format!("{id}.json"));
        let mut record: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        record["notes"] = blob.clone();
        let text = record.to_string();
        assert!(text.len() <= 1024 * 1024, "{}", text.len());
        let temp = world.queue.join(format!(".tmp-{id}"));
        fs::write(&temp, text).unwrap();
        fs::rename(&temp, &path).unwrap();
    }
    // Sampled over a window of ticks: the peak, not a moment, is what is bounded.
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        peak = peak.max(rss_mib(daemon.id()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let unreadable = log().matches("unreadable queue record").count();
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(unreadable, 0, "{}", log());
    assert!(
        peak < before + 1024,
        "20 MiB of queue records (20 files of 1 MiB) took the daemon from {before} MiB to {peak} MiB resident"
    );
}

/// An 800 KB compact record (200,000 `[0]` in a field berth keeps) is claimed and settled:
/// every write berth makes of it stays under the 1 MiB cap it reads with, so no refresh
/// refuses it and it never stays `claiming` for want of a readable file.
#[test]
fn a_record_berth_rewrites_stays_under_its_own_1_mib_cap() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 1\n");
    let log = || berth_log(&world);
    let feature = lane.push_feature("feat/pr-1", "main");
    let id = world
        .record(&lane.clone, 1)
        .set("featureBranch", feature)
        .set("status", "blocked")
        .write();
    let path = world.queue.join(format!("{id}.json"));
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    record["notes"] = serde_json::from_str(&format!("[{}[0]]", "[0],".repeat(200_000))).unwrap();
    record["status"] = json!("queued");
    let text = record.to_string();
    assert!(text.len() <= 1024 * 1024, "{}", text.len());
    let temp = world.queue.join(".tmp-record");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, &path).unwrap();
    let daemon = spawn_serving_metrics(&world, &config, &[]);
    let status = || {
        fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|r| r["status"].clone())
    };
    let settled = world.wait_for(
        Duration::from_secs(60),
        || matches!(status(), Some(s) if s == "landed" || s == "blocked"),
    );
    // A few more refreshes, any of which would refuse an oversized file.
    let ticked = ticks_after(&world, 3);
    stop(daemon);
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let refused: Vec<String> = log()
        .lines()
        .filter(|l| l.contains("over the 1048576-byte limit"))
        .map(|l| l.chars().take(300).collect())
        .collect();
    assert!(ticked, "the daemon stopped ticking: {}", log());
    assert!(
        refused.is_empty() && size <= 1024 * 1024,
        "berth wrote the record back as {size} bytes (settled: {settled}, status {:?}) and then refused it: {refused:?}",
        status()
    );
}

/// Review-bounds 7: a queued record whose compact text is just under the 1 MiB cap is read,
/// gated and picked as its lane's head, but its claim (adding `claimedBy`) is refused as over
/// the cap, every tick: the record stays queued at the head and nothing behind it in the
/// lane is ever landed. Anyone who can write the queue dir wedges a lane for good.
#[test]
fn a_record_too_large_to_claim_does_not_wedge_its_lane() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 1\n");
    let berth_dir = world.berth_state();
    let log = || berth_log(&world);
    // The head: queued first, its file 1 MiB less a few bytes, compact.
    let (_, path) = too_large_to_claim(&world, &lane.clone, 1, "2026-11-23T00:00:00.000Z");
    // Behind it in the same lane: an ordinary record with its branch pushed.
    let feature = lane.push_feature("feat/pr-2", "main");
    let behind = world
        .record(&lane.clone, 2)
        .set("featureBranch", feature)
        .write();
    let behind_path = world.queue.join(format!("{behind}.json"));
    let daemon = world.spawn_berth(
        &crate::support::serving_metrics_args(&config),
        &berth_dir,
        &[],
    );
    let status = |p: &std::path::Path| {
        fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|r| r["status"].clone())
    };
    let moved = world.wait_for(
        Duration::from_secs(90),
        || matches!(status(&behind_path), Some(s) if s != "queued"),
    );
    stop(daemon);
    let refusals: Vec<String> = log()
        .lines()
        .filter(|l| l.contains("over the 1048576-byte limit"))
        .map(|l| l.chars().take(160).collect())
        .collect();
    let refused = refusals.len();
    assert!(
        moved,
        "the record behind a too-large head never left `queued` (head {:?}, {refused} refusals logged, first: {:?})",
        status(&path),
        refusals.first()
    );
    let said = log()
        .lines()
        .filter(|l| l.contains("passed over until the file is written again"))
        .count();
    assert_eq!((refused, said), (1, 1), "one claim refused, said once");
}

/// A queued record whose claim leaves just the room a claim keeps under the 1 MiB cap,
/// while its verdict's `lastError` (naming its 5,000-byte feature branch) needs more than
/// that room: the verdict is written with its `lastError` cut to fit, the record settles
/// (never left `claiming` in this live daemon's name with its lane wedged), its own fields
/// whole, and, put back for a transient reason, it is claimed again (its cut `lastError`
/// is berth's text, which a claim cuts further), never passed over for good.
#[test]
fn a_record_that_fits_its_claim_but_not_its_verdict_is_settled_and_claimed_again() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 1\n");
    let berth_dir = world.berth_state();
    let log = || berth_log(&world);
    let daemon = world.spawn_berth(
        &crate::support::serving_metrics_args(&config),
        &berth_dir,
        &[],
    );
    assert!(
        world.wait_for(Duration::from_secs(60), || {
            crate::support::ticks(&world).is_some_and(|n| n >= 1.0)
        }),
        "{}",
        log()
    );
    // The daemon's owner stamp, as `ownership::this_process` makes it.
    use std::os::unix::fs::MetadataExt;
    let lock = fs::canonicalize(berth_dir.join("daemon.lock")).unwrap();
    let meta = fs::metadata(&lock).unwrap();
    let pid = daemon.id();
    let owner = format!(
        "{}:{pid}:{}:{}.{}.{}:{}",
        berth::ownership::machine(),
        berth::process_probe::start_ticks(pid).unwrap(),
        meta.dev(),
        meta.ino(),
        meta.uid(),
        lock.display()
    );
    // The head: its feature branch long and never pushed; claimed, 16 bytes under the cap
    // less the claim's room.
    let branch = format!("feat/{}", vec!["b".repeat(199); 25].join("/"));
    let id = world
        .record(&lane.clone, 1)
        .set("queuedAt", "2026-11-23T00:00:00.000Z")
        .set("featureBranch", branch)
        .set("lastUpdatedAt", berth::clock::now_iso())
        .write();
    let path = world.queue.join(format!("{id}.json"));
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    record["notes"] = json!("");
    // The claim's token: this daemon's first landing.
    let token = format!(r#","{}":"1""#, berth::store::CLAIM_TOKEN_FIELD);
    let claim_adds = format!(r#","claimedBy":"{owner}""#).len() + token.len() + "claiming".len()
        - "queued".len();
    let base = record.to_string().len();
    let room = berth::store::CLAIM_ROOM as usize;
    let notes = 1024 * 1024 - room - 16 - claim_adds - base;
    record["notes"] = json!("n".repeat(notes));
    let text = record.to_string();
    let temp = world.queue.join(".tmp-record");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, &path).unwrap();
    let read = |p: &std::path::Path| {
        fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    };
    // Settled, by a verdict that did not fit whole.
    const CUT: &str = "[cut to fit the record limit]";
    let settled = world.wait_for(Duration::from_secs(90), || {
        read(&path).is_some_and(|r| {
            matches!(r["status"].as_str(), Some("blocked" | "queued"))
                && r["lastError"].as_str().is_some_and(|e| e.ends_with(CUT))
        })
    });
    let head = read(&path);
    // Its forge check fails for good (a ref name too long for git), a transient reason to
    // berth: put back, claimed again, put back again.
    let requeues = || log().matches("PR #1: queued: back in the queue").count();
    let claimed_again = world.wait_for(Duration::from_secs(90), || requeues() >= 3);
    stop(daemon);
    let head = head.unwrap();
    let error = head["lastError"].as_str().unwrap_or_default().to_owned();
    assert!(
        settled,
        "the head never settled: {:?} ({} refusals logged)",
        head["status"],
        log().matches("over the 1048576-byte limit").count()
    );
    assert!(
        error.ends_with(CUT),
        "{}",
        error.chars().take(300).collect::<String>()
    );
    assert!(fs::metadata(&path).unwrap().len() <= 1024 * 1024);
    assert_eq!(
        head["notes"].as_str().map(str::len),
        Some(notes),
        "notes were cut"
    );
    assert!(
        claimed_again,
        "the requeued head was not claimed again ({} requeues): {}",
        requeues(),
        log()
            .lines()
            .filter(|l| l.contains("passed over"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(log().matches("passed over until").count(), 0);
}

/// Writes a queued record for PR `pr` queued at `queued_at` whose file is 1 MiB less a few
/// bytes, compact: read and gated, but its claim would pass the cap. Its id and path.
fn too_large_to_claim(
    world: &World,
    clone: &std::path::Path,
    pr: u64,
    queued_at: &str,
) -> (String, std::path::PathBuf) {
    let id = world.record(clone, pr).set("queuedAt", queued_at).write();
    let path = world.queue.join(format!("{id}.json"));
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    record["notes"] = json!("");
    let base = record.to_string().len();
    record["notes"] = json!("n".repeat(1024 * 1024 - base - 8));
    let text = record.to_string();
    assert!(text.len() <= 1024 * 1024 - 8, "{}", text.len());
    replace_file(world, &path, &text);
    (id, path)
}

/// Puts `text` at `path` as a producer does: written aside, renamed into place.
fn replace_file(world: &World, path: &std::path::Path, text: &str) {
    let temp = world.queue.join(".tmp-record");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, path).unwrap();
}

/// A record passed over for a claim too large is seen after its one warning: counted in
/// `berth_records_passed_over{reason="claim_too_large"}` and listed with its reason by
/// `status --json` (`passedOver`, which `/api/queue` serves too) and `status`; each leaves
/// both once its file is removed, or written again with the record fixed.
#[test]
fn a_record_passed_over_is_counted_and_listed_until_its_file_is_fixed_or_removed() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 1\n");
    let (fixed, fixed_path) =
        too_large_to_claim(&world, &lane.clone, 1, "2026-11-23T00:00:00.000Z");
    let (removed, removed_path) =
        too_large_to_claim(&world, &lane.clone, 2, "2026-11-23T00:00:01.000Z");
    let daemon = spawn_serving_metrics(&world, &config, &[]);
    let gauge = || {
        let addr = served_addr(&world)?;
        sample(
            &scrape(&addr),
            "berth_records_passed_over{reason=\"claim_too_large\"}",
        )
    };
    let listed = || -> Vec<(String, String)> {
        let out = world
            .berth_daemon()
            .args(["status", "--json"])
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        status["passedOver"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["record"].as_str().unwrap().to_owned(),
                    p["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let both = world.wait_for(Duration::from_secs(90), || gauge() == Some(2.0));
    let mut expected = vec![
        (fixed.clone(), "claimTooLarge".to_owned()),
        (removed.clone(), "claimTooLarge".to_owned()),
    ];
    expected.sort();
    // The gauge moves at the refusal; the list is published at the end of a tick (at most
    // once a tick, when it changed), so the listings are waited for, not read at once.
    let _ = world.wait_for(Duration::from_secs(60), || listed() == expected);
    let listed_both = listed();
    let text =
        String::from_utf8(world.berth_daemon().arg("status").output().unwrap().stdout).unwrap();
    fs::remove_file(&removed_path).unwrap();
    let one_left = world.wait_for(Duration::from_secs(60), || gauge() == Some(1.0));
    let _ = world.wait_for(Duration::from_secs(60), || listed().len() == 1);
    let listed_one = listed();
    let mut record: serde_json::Value =
        serde_json::from_slice(&fs::read(&fixed_path).unwrap()).unwrap();
    record["notes"] = json!("fixed");
    replace_file(&world, &fixed_path, &record.to_string());
    let none_left = world.wait_for(Duration::from_secs(60), || gauge() == Some(0.0));
    let _ = world.wait_for(Duration::from_secs(60), || listed().is_empty());
    let listed_none = listed();
    stop(daemon);
    assert!(
        both,
        "the gauge never counted both records passed over: {:?}",
        gauge()
    );
    assert_eq!(listed_both, expected, "status --json's passedOver");
    assert!(
        text.contains(&format!("passed over: {fixed} (")) && text.contains("-byte record limit"),
        "status names the record and its reason:\n{text}"
    );
    assert!(one_left, "the removed record is still counted");
    assert_eq!(
        listed_one,
        vec![(fixed.clone(), "claimTooLarge".to_owned())]
    );
    assert!(none_left, "the fixed record is still counted");
    assert_eq!(listed_none, Vec::new());
}
