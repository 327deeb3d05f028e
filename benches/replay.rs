//! What recording the facts of every decision costs, and what replaying them costs.
//!
//! `cargo bench --bench replay` simulates a busy queue through the daemon's real decision
//! log: 10,000 decisions (`admit`, the `order` selection over the queue, `on_land_result`
//! for each of 3,334 records, 40 queued at any time, the time moving on by one second per
//! decision), then replays them against the shipped rules. Baseline, measured in the same
//! run: the decision log itself (its size and the time to write it without facts). Target:
//! the facts store for 10,000 decisions under 8 MiB.

use std::time::Instant;

use berth::rules::Rules;
use berth::rules::contracts::Decided;
use berth::rules::decisions::{DecisionLog, Subject};
use serde_json::{Value, json};

const DECISIONS: usize = 10_000;
const QUEUED: usize = 40;
const TARGET_BYTES: u64 = 8 * 1024 * 1024;

fn record(n: usize, status: &str) -> Value {
    json!({
        "runId": format!("run-{}", n % 97), "repoPath": format!("/srv/code/repo-{}", n % 7),
        "repoIdentity": format!("github.com/acme/repo-{}", n % 7), "baseBranch": "main",
        "featureBranch": format!("feat/change-{n}"), "prNumber": n, "version": format!("1.{n}.0"),
        "livingPlanPath": format!("/srv/plans/{n}.md"), "worktreePath": format!("/srv/code/repo-{}", n % 7),
        "queuedAt": "2026-11-01T08:00:00.000Z", "status": status,
        "prUrl": format!("https://github.com/acme/repo-{}/pull/{n}", n % 7),
        "id": format!("github.com-acme-repo-{}-main-pr-{n}", n % 7),
    })
}

fn ctx(tick: usize) -> Value {
    let epoch = 1_793_000_000 + tick as i64;
    json!({"now": chrono::DateTime::from_timestamp(epoch, 0).unwrap().to_rfc3339(), "nowEpoch": epoch,
           "lane": {"repoIdentity": "github.com/acme/repo-1", "baseBranch": "main"},
           "queueDepth": QUEUED, "inFlight": 1,
           "config": {"maxLanes": 4, "pollSecs": 60, "landTimeoutSecs": 3600, "lockTtlSecs": 7200, "forge": "gh"}})
}

fn decided(function: &'static str, args: Vec<Value>) -> Decided<()> {
    Decided {
        value: (),
        file: "policies/landing.rhai",
        function,
        ruleset: "0".repeat(64),
        error: None,
        args,
    }
}

/// Writes the simulated history into `dir`; the seconds it took.
fn simulate(dir: &std::path::Path, with_facts: bool) -> f64 {
    let log = DecisionLog::new(dir);
    let args = |a: Vec<Value>| if with_facts { a } else { Vec::new() };
    let started = Instant::now();
    let mut written = 0;
    let mut n = 0;
    while written < DECISIONS {
        let id = format!("github.com-acme-repo-{}-main-pr-{n}", n % 7);
        let repo = format!("github.com/acme/repo-{}", n % 7);
        let subject = Subject {
            id: &id,
            pr: n as u64,
            repo: &repo,
        };
        let queue: Vec<Value> = (n..n + QUEUED).map(|m| record(m, "queued")).collect();
        log.remember_order(args(vec![Value::Array(queue)]));
        log.selection(&decided("order", Vec::new()), subject, "head of its lane");
        log.decision(
            &decided("admit", args(vec![record(n, "queued"), ctx(written)])),
            Some(subject),
            "go",
            "",
        );
        let facts = json!({"succeeded": true, "exitCode": 0, "timedOut": false, "drift": false, "merged": true,
                           "forgeState": "merged", "summary": "merged", "logPath": format!("/l/{n}"), "retries": 0, "attempt": 1});
        log.decision(
            &decided(
                "on_land_result",
                args(vec![record(n, "landing"), facts, ctx(written + 1)]),
            ),
            Some(subject),
            "landed",
            "merged",
        );
        written += 3;
        n += 1;
    }
    started.elapsed().as_secs_f64()
}

fn size(path: std::path::PathBuf) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let base = tempfile::tempdir().expect("temp dir");
    let base_secs = simulate(base.path(), false);
    let log_bytes = size(base.path().join("decisions.jsonl"));
    let with = tempfile::tempdir().expect("temp dir");
    let with_secs = simulate(with.path(), true);
    let facts_bytes = size(with.path().join("facts.jsonl"));

    let rules = Rules::embedded().expect("shipped rules");
    let started = Instant::now();
    let replayed = berth::rules::replay::replay(with.path(), &rules.current(), &Default::default())
        .expect("replay reads the log");
    let replay_secs = started.elapsed().as_secs_f64();

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("| measure ({DECISIONS} decisions) | value | baseline (decision log alone) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| facts store size | {:.2} MiB (target < {:.0} MiB: {}) | {:.2} MiB | {:.2}× |",
        mib(facts_bytes),
        mib(TARGET_BYTES),
        if facts_bytes < TARGET_BYTES {
            "met"
        } else {
            "MISSED"
        },
        mib(log_bytes),
        facts_bytes as f64 / log_bytes as f64
    );
    println!(
        "| time to log them | {:.0} ms | {:.0} ms | {:.2}× |",
        with_secs * 1e3,
        base_secs * 1e3,
        with_secs / base_secs
    );
    println!(
        "| replay against the shipped rules | {:.0} ms ({} replayed, {} not replayable) | — | — |",
        replay_secs * 1e3,
        replayed.replayed,
        replayed.not_replayable
    );
}
