//! The queue page in a real browser: a daemon over a real queue with a landing in flight (a
//! step that waits on a file), a record waiting behind it, a pending halt event, and
//! producer-written strings that are markup. Headless Chromium renders `/` and a PR's page;
//! the test reads the DOM it built, checks that no injected element exists (the title a
//! script would change is unchanged), and saves a screenshot as `target/queue-page.png`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{World, request, served_addr, spawn_serving_metrics, stop};

const CHROMIUM: &str = "/usr/bin/chromium";
const SCRIPT_BRANCH: &str = "<script>alert(1)</script>";
const TITLE_SCRIPT: &str = "<script>document.title='pwned'</script>";

/// Chromium's arguments for one headless run over `user_dir`, then `extra`, then `url`.
fn chromium(user_dir: &Path, extra: &[&str], url: &str) -> std::process::Output {
    // `timeout` bounds a browser that never exits; the page itself answers in milliseconds.
    Command::new("timeout")
        .args([
            "120",
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args([
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", user_dir.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// The DOM Chromium built from `url`.
fn dump_dom(user_dir: &Path, url: &str) -> String {
    let out = chromium(user_dir, &["--dump-dom"], url);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium --dump-dom {url}: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// Whether the browser test can run here: in CI (`CI` set) a missing Chromium fails it.
fn have_chromium() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is missing in CI: .ci/run installs Debian's chromium package"
    );
    eprintln!("skipped: {CHROMIUM} is not installed (CI installs it)");
    false
}

/// A pending halt event in gstack's layout whose message is markup.
fn plant_halt(faults: &Path) {
    let dir = faults.join("pending-investigations");
    fs::create_dir_all(&dir).unwrap();
    let event = json!({
        "faultId": "PHASE_FAILED:all:0badc0de", "runId": "page-run", "stateSlug": "page-run",
        "kind": "PHASE_FAILED", "severity": "high", "timestamp": "2026-01-01T00:00:00.000Z",
        "message": format!("[HAND_MERGED] feature 1 merged by hand {TITLE_SCRIPT}"),
    });
    fs::write(
        dir.join("page-run-PHASE_FAILED:all:0badc0de.json"),
        event.to_string(),
    )
    .unwrap();
}

#[test]
fn the_queue_page_shows_lanes_waits_halts_and_stories_and_keeps_markup_as_text() {
    if !have_chromium() {
        return;
    }
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let landing = lane.queue(1, "main");
    let waiting = lane.queue(2, "main");
    let evil = world
        .record(&lane.clone, 3)
        .set("featureBranch", SCRIPT_BRANCH)
        .set("baseBranch", "main")
        .set("runId", format!("run {TITLE_SCRIPT}"))
        .write();
    let faults = world.root.join("faults");
    plant_halt(&faults);
    // The landing waits for a go file: the page is read while it holds the lane.
    let go = world.root.join("GO");
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 1\nfaults_dir = \"{}\"\nland_command = [\"sh\", \"-c\", \"echo step-waits-for-go; while [ ! -e {} ]; do sleep 0.05; done; exec {} \\\"$@\\\"\", \"land\", \"{{branch}}\", \"{{base}}\", \"{}\", \"{{pr}}\"]\n",
        faults.display(),
        go.display(),
        world.land_script().display(),
        world.root.join("ledger").display()
    ));
    let daemon = spawn_serving_metrics(&world, &config, &[]);
    let log = || fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    let mut addr = String::new();
    // The page tells what status --json tells: PR 2 waits for the lane PR 1 holds.
    assert!(
        world.wait_for(Duration::from_secs(60), || {
            let Some(served) = served_addr(&world) else {
                return false;
            };
            addr = served;
            let (_, page) = request(&addr, "GET", "/");
            world.read_record(&landing)["status"] == "landing" && page.contains("lane busy")
        }),
        "no landing with a waiting record; record: {}\nlog:\n{}",
        world.read_record(&landing),
        log()
    );
    let base = format!("http://{addr}");
    let browser = tempfile::tempdir().unwrap();

    let dom = dump_dom(browser.path(), &format!("{base}/"));
    assert!(
        dom.contains("<title>berth queue</title>"),
        "a script ran: {dom}"
    );
    assert!(
        !dom.contains("<script"),
        "markup from a producer became an element: {dom}"
    );
    for expected in [
        "Landing now: PR",
        "step <span class=\"word\">landing</span>",
        "lane busy: refs/gstack/release-locks/",
        "ETA <span class=\"word\">unknown</span>",
        "PHASE_FAILED:all:0badc0de",
        "feature 1 merged by hand &lt;script&gt;document.title='pwned'&lt;/script&gt;",
        "Active set <code>",
    ] {
        assert!(
            dom.contains(expected),
            "{expected:?} not on the page:\n{dom}"
        );
    }
    let text_branch = "&lt;script&gt;alert(1)&lt;/script&gt;";
    assert!(
        dom.contains(text_branch),
        "the branch is not shown as text:\n{dom}"
    );

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/queue-page.png");
    let out = chromium(
        browser.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1600",
        ],
        &format!("{base}/"),
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The lane links the landing's attempt log; its page shows the log's tail.
    assert!(
        dom.contains(&format!("<a href=\"/log/{landing}\">attempt log</a>")),
        "{dom}"
    );
    let attempt_log = dump_dom(browser.path(), &format!("{base}/log/{landing}"));
    assert!(attempt_log.contains("step-waits-for-go"), "{attempt_log}");

    // A PR's page tells explain's story; the API serves explain --json's lines.
    let story = dump_dom(browser.path(), &format!("{base}/pr/{landing}"));
    assert!(story.contains("status queued → claiming"), "{story}");
    assert!(story.contains("<title>berth: record "), "{story}");
    let evil_story = dump_dom(browser.path(), &format!("{base}/pr/{evil}"));
    assert!(!evil_story.contains("<script") && evil_story.contains("<title>berth: record "));
    let explain = |id: &str| {
        let out = world
            .berth()
            .env("BERTH_DIR", world.berth_state())
            .args([
                "explain",
                id,
                "--json",
                "--config",
                config.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        world.wait_for(Duration::from_secs(20), || {
            request(&addr, "GET", &format!("/api/pr/{landing}")).1 == explain(&landing)
        }),
        "/api/pr differs from explain --json:\n{}\n---\n{}",
        request(&addr, "GET", &format!("/api/pr/{landing}")).1,
        explain(&landing)
    );
    let (status, api) = request(&addr, "GET", "/api/queue");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let api: Value = serde_json::from_str(&api).unwrap();
    let waits = api["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == waiting.as_str())
        .map(|r| r["waiting"]["laneBusy"]["ref"].clone());
    assert!(
        waits.is_some_and(|r| r.as_str().is_some_and(|r| r.contains("release-locks"))),
        "{api}"
    );

    fs::write(&go, "").unwrap();
    assert!(
        world.wait_for(
            Duration::from_secs(60),
            || world.read_record(&landing)["status"] == "landed"
        ),
        "{}",
        log()
    );
    stop(daemon);
}

/// Scenario: a landing command prints 3 MB and then a drift signature, so the record goes
/// land -> `drift_repairing` -> ship -> land again (the built-in verdict's one repair) and
/// ends blocked. Both land runs share the attempt's land log, each kept to its first and
/// last MiB, so the log berth wrote is 4 MiB plus two run headers and two cut lines. The
/// `/log/<record id>` page refuses any file over 4 MiB as "not one berth wrote", so for
/// exactly the landings an operator most wants to look at it shows "cannot be read"
/// instead of the log's last 64 KiB.
#[test]
fn the_log_page_shows_the_tail_of_a_land_log_berth_wrote_across_a_drift_repair() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let id = lane.queue(12, "main");
    let script = world.root.join("loud-land.sh");
    fs::write(
        &script,
        "#!/bin/sh\nhead -c 3000000 /dev/zero | tr '\\0' x\necho\necho 'queue moved since last /ship'\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [{:?}]\nship_command = [\"true\"]\n",
        script.to_str().unwrap()
    ));
    world.run_once(&config).code(1);
    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked", "{record:#}");
    assert_eq!(record["retries"], 1, "{record:#}");
    let (allowlist, _) = berth::gates::Allowlist::build(Some(&world.home), None, None);
    let allowlist = Arc::new(allowlist);
    let sources = berth::queue_page::PageSources {
        store: berth::store::QueueStore::new(&world.queue),
        berth_dir: world.berth_state(),
        halts: berth::faults::HaltStore::new(world.root.join("skill-faults")),
        allowlist: Box::new(move || Arc::clone(&allowlist)),
        order: Arc::new(berth::queue_order::QueueOrder::default()),
    };
    let request =
        berth::http::Request::parse(format!("GET /log/{id} HTTP/1.1").as_bytes()).unwrap();
    let page = berth::queue_page::routes(sources).handle(&request);
    let page = String::from_utf8_lossy(&page.to_bytes(false, false)).into_owned();
    let logs: Vec<(String, u64)> = fs::read_dir(world.berth_state().join("logs").join(&id))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().unwrap().len(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        page.contains("queue moved since last /ship") && !page.contains("cannot be read"),
        "the log page does not show the attempt log berth wrote (logs: {logs:?}): {}",
        page.lines()
            .filter(|l| l.contains("log"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        page.contains("bytes are not shown"),
        "the page does not say what it cut from the log"
    );
}
