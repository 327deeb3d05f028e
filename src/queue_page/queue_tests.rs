//! The queue page rendered from fixed facts.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::queue_report::history::{History, TimedLanding};
use crate::queue_report::{QueueReport, Waiting, Waits};
use crate::record::Record;
use crate::rules::decisions::PolicyWait;
use crate::store::Scan;

fn stored(id: &str, pr: u64, status: &str, branch: &str, queued_at: &str) -> StoredRecord {
    let record = Record::from_json(serde_json::json!({
        "runId": "run-1", "repoPath": "/r", "baseBranch": "main", "featureBranch": branch,
        "prNumber": pr, "version": "1.0.0", "livingPlanPath": "/r/PLAN.md",
        "worktreePath": "/r", "queuedAt": queued_at, "status": status,
        "repoIdentity": "github.com/acme/widget"
    }))
    .unwrap();
    StoredRecord {
        id: id.into(),
        path: PathBuf::from(format!("/q/{id}.json")),
        record,
        changed_at: None,
    }
}

fn facts(records: Vec<StoredRecord>, history: History, waits: Waits) -> PageFacts {
    PageFacts {
        report: QueueReport::of(
            Scan {
                records,
                unreadable: Vec::new(),
            },
            waits,
        ),
        history: Ok(history),
        halts: Vec::new(),
        unreadable_halts: 0,
        order: Vec::new(),
        berth_dir: PathBuf::from("/nonexistent-berth-dir"),
        now: "2026-01-01T00:00:00.000Z".into(),
    }
}

fn queued(n: u64) -> StoredRecord {
    stored(
        &format!("r{n}"),
        n,
        "queued",
        &format!("feat/{n}"),
        &format!("2026-01-01T00:{:02}:00.000Z", n % 60),
    )
}

#[test]
fn a_producer_written_branch_is_text_never_markup() {
    let evil = stored(
        "evil",
        9,
        "queued",
        "<script>alert(1)</script>",
        "2026-01-01T00:00:00.000Z",
    );
    let html = render(&facts(vec![evil], History::default(), Waits::default()));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("<title>berth queue</title>"));
}

#[test]
fn a_lane_past_the_bound_says_how_many_more() {
    let records: Vec<_> = (1..=(MAX_PER_LANE as u64 + 7)).map(queued).collect();
    let html = render(&facts(records, History::default(), Waits::default()));
    assert!(html.contains("and 7 more"), "{html}");
    assert_eq!(
        html.matches("ETA <span class=\"word\">").count(),
        MAX_PER_LANE
    );
}

#[test]
fn eta_is_unknown_without_history_and_the_median_times_the_position_with_it() {
    let records = vec![queued(1), queued(2)];
    let html = render(&facts(
        records.clone(),
        History::default(),
        Waits::default(),
    ));
    assert_eq!(
        html.matches("ETA <span class=\"word\">unknown</span>")
            .count(),
        2
    );

    let mut landed = stored("old", 1, "landed", "feat/old", "2025-12-31T00:00:00.000Z");
    landed.record.pr_number = 100;
    let history = History {
        landings: VecDeque::from([TimedLanding {
            record: "old".into(),
            took: Duration::from_secs(40),
        }]),
        ..History::default()
    };
    let mut with_landed = records;
    with_landed.push(landed);
    let html = render(&facts(with_landed, history, Waits::default()));
    assert!(
        html.contains("ETA <span class=\"word\">~ 40s</span>"),
        "{html}"
    );
    assert!(
        html.contains("ETA <span class=\"word\">~ 1m 20s</span>"),
        "{html}"
    );
}

#[test]
fn a_waiting_record_says_why_and_the_policy_order_leads() {
    let mut waits = Waits::default();
    waits.by_record.insert(
        "r2".into(),
        Waiting {
            policy: Some(PolicyWait {
                reason: "freeze <until> Monday".into(),
                since: "2026-01-01T00:00:00.000Z".into(),
            }),
            ..Waiting::default()
        },
    );
    let mut page = facts(vec![queued(1), queued(2)], History::default(), waits);
    page.order = vec!["r2".into(), "r1".into()];
    let html = render(&page);
    assert!(
        html.contains("waits: policy wait: freeze &lt;until&gt; Monday"),
        "{html}"
    );
    let (first, second) = (html.find("feat/2").unwrap(), html.find("feat/1").unwrap());
    assert!(first < second, "the policy's order puts r2 first");
}

#[test]
fn a_refused_reload_names_file_line_and_column_and_an_unreadable_log_says_eta_unknown() {
    use crate::rules::status::{ReloadRecord, RulesStatus};
    let mut page = facts(vec![queued(1)], History::default(), Waits::default());
    page.report.rules = Ok(Some(RulesStatus {
        active_hash: "a".repeat(64),
        active_source: "embedded defaults".into(),
        active_since: "2026-01-01T00:00:00.000Z".into(),
        last_reload: ReloadRecord {
            at: "2026-01-01T00:01:00.000Z".into(),
            ok: false,
            hash: None,
            error: Some("policies/landing.rhai:3:7 syntax error: <eof>".into()),
        },
    }));
    page.history = Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
    let html = render(&page);
    assert!(
        html.contains("<span class=\"word\">refused</span>"),
        "{html}"
    );
    assert!(
        html.contains("policies/landing.rhai:3:7 syntax error: &lt;eof&gt;"),
        "{html}"
    );
    assert!(
        html.contains(
            "ETA unknown: the decision log /nonexistent-berth-dir/decisions.jsonl is unreadable"
        ),
        "{html}"
    );
}

#[test]
fn an_attempt_logs_tail_is_shown_escaped_and_only_for_a_record_in_the_queue() {
    let berth_dir = tempfile::tempdir().unwrap();
    let logs = berth_dir.path().join("logs/r1");
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = "early line\n".repeat(10_000);
    text.push_str("<script>alert(2)</script> the end\n");
    std::fs::write(logs.join("attempt-1-land.log"), &text).unwrap();
    let mut facts = facts(
        vec![stored(
            "r1",
            1,
            "landing",
            "feat/1",
            "2026-01-01T00:00:00.000Z",
        )],
        History::default(),
        Waits::default(),
    );
    facts.berth_dir = berth_dir.path().to_path_buf();

    let html = super::super::log_tail::render(&facts, "r1").expect("a page for r1");
    assert!(
        html.contains("&lt;script&gt;alert(2)&lt;/script&gt; the end"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains(&format!("the last 65536 of {} bytes", text.len())),
        "{html}"
    );
    assert!(super::super::log_tail::render(&facts, "r2").is_none());
    assert!(super::super::log_tail::render(&facts, "../r1").is_none());
}
