//! `/pr/<repo>/<n>`, `/pr/<n>` or `/pr/<record id>`: the story `berth explain` tells,
//! newest first, each decision with its rule file and reason.

use super::escape::escape;
use super::layout::page;
use crate::queue_report::story::{Chapter, Story};
use crate::record::Status;
use crate::rules::journal::{Entry, JournalLine};
use crate::rules::set::short;

/// Lines shown per record; past it the page says how many older ones were left out.
pub const MAX_LINES: usize = 200;

pub fn render(story: &Story) -> String {
    let title = match &story.only {
        Some(id) => format!("berth: record {id}"),
        None => format!("berth: PR #{}", story.pr),
    };
    let mut body = format!("<h1>{}</h1>\n", escape(&title));
    if story.lines.is_empty() {
        body.push_str("<p>Nothing is recorded about it in the decision log.</p>\n");
    }
    for chapter in story.chapters() {
        body.push_str(&chapter_html(story.pr, &chapter));
    }
    page(&title, &body)
}

fn chapter_html(pr: u64, chapter: &Chapter<'_>) -> String {
    let mut out = format!(
        "<h2>PR #{pr} of {} (record <code>{}</code>)</h2>\n",
        escape(chapter.repo),
        escape(&chapter.record)
    );
    if let Some(stored) = chapter.now {
        let r = &stored.record;
        out.push_str(&format!(
            "<p>Now: <span class=\"word\">{}</span>{} · branch <code>{}</code> → <code>{}</code></p>\n",
            escape(&r.status.to_string()),
            r.last_error
                .as_deref()
                .map(|e| format!(" ({})", escape(e)))
                .unwrap_or_default(),
            escape(&r.feature_branch),
            escape(&r.base_branch)
        ));
    }
    out.push_str("<table>\n<tr><th>time</th><th>what</th><th>rule</th><th>reason</th></tr>\n");
    for line in chapter.lines.iter().rev().take(MAX_LINES) {
        out.push_str(&row(line));
    }
    out.push_str("</table>\n");
    if chapter.lines.len() > MAX_LINES {
        out.push_str(&format!(
            "<p class=\"more\">and {} older lines (<code>berth explain</code>)</p>\n",
            chapter.lines.len() - MAX_LINES
        ));
    }
    out
}

/// One log line: when, what happened, which rule file (and set) decided, and why.
fn row(line: &JournalLine) -> String {
    let (what, rule, reason) = match &line.entry {
        Entry::Status(change) => (
            format!("status {} → {}", change.from, change.to),
            String::new(),
            change.reason.as_str(),
        ),
        Entry::Operator(op) => {
            let mut what = format!("operator {} by {}", op.act.as_str(), op.user);
            if let Some(to) = op.to {
                let from = op.from.map_or("", Status::as_str);
                what.push_str(&format!(": {from} → {to}"));
            }
            if let Some(lock) = &op.lock_ref {
                what.push_str(&format!(" of {lock}"));
            }
            (what, String::new(), op.reason.as_str())
        }
        Entry::Decision(d) => {
            let mut what = format!("{}: {}", d.function, d.decision);
            if d.fallback {
                what.push_str(&format!(
                    " (the rule failed: {}; the built-in default decided)",
                    d.error.as_deref().unwrap_or("")
                ));
            }
            let rule = format!("{} (rules {})", d.file, short(&d.ruleset));
            (what, rule, d.reason.as_str())
        }
    };
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        escape(&line.time),
        escape(&what),
        escape(&rule),
        escape(reason)
    )
}
