//! `/`: per repo and lane what lands now and what waits (why, and when it may land), then
//! the blocked records, recent landings and blocks, pending halt events, the rule set and
//! the daemon's health. Every producer-written string goes through [`escape`].

use std::collections::HashMap;
use std::time::Duration;

use super::escape::{escape, path_segment};
use super::eta::{Eta, lane_medians};
use super::facts::{PageFacts, newest_attempt_log};
use super::lanes::{LaneView, blocked, lanes};
use super::layout::{bounded_list, page};
use crate::store::StoredRecord;

/// Lanes shown; past it the page says how many more.
pub const MAX_LANES: usize = 50;
/// Queued records shown per lane; past it the page says how many more.
pub const MAX_PER_LANE: usize = 20;
/// Entries shown of every other list (blocked, recent, halts, problems).
pub const MAX_LISTED: usize = 20;

pub fn render(facts: &PageFacts) -> String {
    let mut body = format!(
        "<h1>berth queue</h1>\n<p class=\"muted\">as of {}</p>\n",
        escape(&facts.now)
    );
    body.push_str(&lanes_section(facts));
    body.push_str(&blocked_section(facts));
    body.push_str(&recent_section(facts));
    body.push_str(&halts_section(facts));
    body.push_str(&rules_section(facts));
    body.push_str(&daemon_section(facts));
    page("berth queue", &body)
}

/// `#7` linking to the PR's page in its repo.
fn pr_link(stored: &StoredRecord) -> String {
    let r = &stored.record;
    format!(
        "<a href=\"/pr/{}/{}\">#{}</a>",
        path_segment(&r.identity_or_path()),
        r.pr_number,
        r.pr_number
    )
}

fn lanes_section(facts: &PageFacts) -> String {
    let scan = &facts.report.scan;
    let all = lanes(scan, &facts.order);
    let medians = match &facts.history {
        Ok(history) => lane_medians(history, scan),
        Err(_) => HashMap::new(),
    };
    let mut out = String::from("<h2>Lanes</h2>\n");
    if all.is_empty() {
        out.push_str("<p>Nothing is queued or landing.</p>\n");
    }
    for lane in all.iter().take(MAX_LANES) {
        out.push_str(&lane_html(facts, lane, medians.get(&lane.name).copied()));
    }
    if all.len() > MAX_LANES {
        out.push_str(&format!(
            "<p class=\"more\">and {} more lanes</p>\n",
            all.len() - MAX_LANES
        ));
    }
    if let Err(e) = &facts.history {
        let log = facts
            .berth_dir
            .join(crate::rules::decisions::DECISIONS_FILE);
        out.push_str(&format!(
            "<p>ETA unknown: the decision log {} is unreadable: {}</p>\n",
            escape(&log.display().to_string()),
            escape(&e.to_string())
        ));
    }
    out
}

fn lane_html(facts: &PageFacts, lane: &LaneView<'_>, median: Option<Duration>) -> String {
    let (repo, base) = &lane.name;
    let mut out = format!("<h3>{} · {}</h3>\n", escape(repo), escape(base));
    if lane.in_flight.is_empty() {
        out.push_str("<p>Landing now: nothing.</p>\n");
    }
    for stored in &lane.in_flight {
        out.push_str(&in_flight_html(facts, stored));
    }
    if lane.queued.is_empty() {
        return out;
    }
    let median_text = median.map_or("no landing of this lane on record".to_owned(), |m| {
        format!(
            "median landing {}",
            Eta::In(m).describe().trim_start_matches("~ ")
        )
    });
    out.push_str(&format!(
        "<p>Queued, in the order the policy takes them ({}):</p>\n<ol>\n",
        escape(&median_text)
    ));
    let positions: Vec<(usize, &&StoredRecord)> = lane.queued.iter().enumerate().collect();
    out.push_str(&bounded_list(&positions, MAX_PER_LANE, |(n, stored)| {
        queued_html(facts, stored, Eta::of(median, n + 1))
    }));
    out.push_str("</ol>\n");
    out
}

fn in_flight_html(facts: &PageFacts, stored: &StoredRecord) -> String {
    let r = &stored.record;
    let since = facts
        .history
        .as_ref()
        .ok()
        .and_then(|h| h.claimed.get(&stored.id))
        .map_or("unknown".to_owned(), |t| t.clone());
    let log = newest_attempt_log(&facts.berth_dir, &stored.id).map_or(
        "no attempt log yet".to_owned(),
        |p| {
            format!(
                "<a href=\"/log/{}\">attempt log</a> <code>{}</code>",
                path_segment(&stored.id),
                escape(&p.display().to_string())
            )
        },
    );
    format!(
        "<p>Landing now: PR {} <code>{}</code>, step <span class=\"word\">{}</span> since {}; {}; \
<a href=\"/pr/{}\">story</a></p>\n",
        pr_link(stored),
        escape(&r.feature_branch),
        escape(&r.status.to_string()),
        escape(&since),
        log,
        path_segment(&stored.id)
    )
}

fn queued_html(facts: &PageFacts, stored: &StoredRecord, eta: Eta) -> String {
    let why = facts
        .report
        .waits
        .by_record
        .get(&stored.id)
        .map_or("next when the lane is free".to_owned(), |w| {
            format!("waits: {}", w.line())
        });
    format!(
        "PR {} <code>{}</code> queued {} — {} — ETA <span class=\"word\">{}</span>",
        pr_link(stored),
        escape(&stored.record.feature_branch),
        escape(&stored.record.queued_at),
        escape(&why),
        escape(&eta.describe())
    )
}

fn blocked_section(facts: &PageFacts) -> String {
    let blocked = blocked(&facts.report.scan);
    if blocked.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Blocked (needs an operator)</h2>\n<ul>\n");
    out.push_str(&bounded_list(&blocked, MAX_LISTED, |stored| {
        format!(
            "PR {} of {} · {}: {}",
            pr_link(stored),
            escape(&stored.record.identity_or_path()),
            escape(&stored.record.base_branch),
            escape(
                stored
                    .record
                    .last_error
                    .as_deref()
                    .unwrap_or("(no reason recorded)")
            )
        )
    }));
    out.push_str("</ul>\n");
    out
}

fn recent_section(facts: &PageFacts) -> String {
    let Ok(history) = &facts.history else {
        return String::new();
    };
    let mut out = String::from("<h2>Recent landings and blocks</h2>\n");
    if history.recent.is_empty() {
        out.push_str("<p>None on record.</p>\n");
        return out;
    }
    out.push_str("<ul>\n");
    out.push_str(&bounded_list(&history.recent, MAX_LISTED, |e| {
        let reason = if e.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", escape(&e.reason))
        };
        format!(
            "{} <span class=\"word\">{}</span> <a href=\"/pr/{}/{}\">#{}</a> of {}{reason}",
            escape(&e.time),
            escape(e.to.as_str()),
            path_segment(&e.repo),
            e.pr,
            e.pr,
            escape(&e.repo)
        )
    }));
    out.push_str("</ul>\n");
    out
}

fn halts_section(facts: &PageFacts) -> String {
    let mut out = String::from("<h2>Halt events</h2>\n");
    if facts.halts.is_empty() {
        out.push_str("<p>None pending.</p>\n");
    } else {
        out.push_str("<ul>\n");
        out.push_str(&bounded_list(&facts.halts, MAX_LISTED, |h| {
            format!(
                "<span class=\"word\">pending</span> {} ({}, {} time(s)) since {}: {}",
                escape(&h.fault_id),
                escape(&h.severity),
                h.occurrences,
                escape(&h.timestamp),
                escape(&h.message)
            )
        }));
        out.push_str("</ul>\n");
    }
    if facts.unreadable_halts > 0 {
        out.push_str(&format!(
            "<p>{} file(s) in the halt dir are unreadable (<code>berth faults list</code>).</p>\n",
            facts.unreadable_halts
        ));
    }
    out
}

fn rules_section(facts: &PageFacts) -> String {
    let mut out = String::from("<h2>Rules</h2>\n");
    match &facts.report.rules {
        Ok(Some(status)) => {
            out.push_str(&format!(
                "<p>Active set <code>{}</code> from {} since {}.</p>\n",
                escape(&status.active_hash),
                escape(&status.active_source),
                escape(&status.active_since)
            ));
            let reload = &status.last_reload;
            if reload.ok {
                out.push_str(&format!(
                    "<p>Last reload: ok at {}.</p>\n",
                    escape(&reload.at)
                ));
            } else {
                out.push_str(&format!(
                    "<p>Last reload: <span class=\"word\">refused</span> at {}; the active set stays:</p>\n<pre>{}</pre>\n",
                    escape(&reload.at),
                    escape(reload.error.as_deref().unwrap_or("(no message)"))
                ));
            }
        }
        Ok(None) => out.push_str("<p>No daemon has reported its rules here.</p>\n"),
        Err(e) => out.push_str(&format!(
            "<p>The rules status is unreadable: {}</p>\n",
            escape(&e.to_string())
        )),
    }
    let fallbacks = facts.report.fallbacks();
    if !fallbacks.is_empty() {
        out.push_str("<p>Rules failing closed:</p>\n<ul>\n");
        out.push_str(&bounded_list(fallbacks, MAX_LISTED, |f| {
            format!(
                "{} <code>{}</code>{}: {} (since {})",
                escape(&f.file),
                escape(&f.function),
                f.record
                    .as_deref()
                    .map(|r| format!(" for {}", escape(r)))
                    .unwrap_or_default(),
                escape(&f.fallback),
                escape(&f.since)
            )
        }));
        out.push_str("</ul>\n");
    }
    out
}

fn daemon_section(facts: &PageFacts) -> String {
    let report = &facts.report;
    let mut lines: Vec<String> = report
        .daemon
        .lines(&facts.berth_dir)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.extend(
        report
            .waits
            .problems
            .iter()
            .map(|p| format!("waiting: {p}")),
    );
    lines.extend(report.unsaved().iter().map(|u| {
        format!(
            "verdict not saved: {} is {} (since {}): {}",
            u.record, u.verdict, u.since, u.error
        )
    }));
    lines.extend(report.passed_over().iter().map(|p| p.line()));
    lines.extend(
        report
            .scan
            .unreadable
            .iter()
            .map(|u| format!("unreadable queue file: {}: {}", u.file, u.reason)),
    );
    let mut out = String::from("<h2>Daemon</h2>\n<ul>\n");
    out.push_str(&bounded_list(&lines, MAX_LISTED, |l| escape(l)));
    out.push_str("</ul>\n");
    out
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
