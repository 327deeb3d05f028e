//! The chaos run's checker: reads the landing log and the bare origins and the records,
//! and counts what the lane promise forbids.
//!
//! - **overlaps**: two landings of one lane whose pushes both reached origin and whose
//!   steps ran at the same time (from the log's start and end times);
//! - **overlapping steps**: a step that started while another step of its lane still ran,
//!   pushed or not, killed or not (the per-lane `flock` witness, exact to the kernel);
//! - **double lands**: a PR whose feature commit is the second parent of more than one
//!   merge on its base in the bare origin;
//! - **lost records**: a PR whose record is missing, unreadable, still in flight or
//!   queued at the end, abandoned, blocked without a reason, or `landed` without its
//!   merge on the base.

#![allow(dead_code)] // the CI test and the bench use different parts

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::chaos_faults::Driven;
use crate::chaos_world::{ChaosWorld, LANES, lane_name};

/// One step of the landing script, from its `begin` and `end` lines.
#[derive(Clone, Debug)]
struct Step {
    lane: String,
    pr: u64,
    daemon: String,
    start: u64,
    /// `(end ns, pushed)`; `None` when the step was killed before its last line.
    end: Option<(u64, bool)>,
}

pub struct Report {
    pub rounds: usize,
    /// PRs whose feature is merged on their base.
    pub landings: usize,
    pub steps: usize,
    pub blocked: Vec<String>,
    /// Blocked records whose merge reached the base anyway (the step pushed, then the
    /// landing lost its lock or its step was cut short).
    pub blocked_merged: usize,
    pub faults: BTreeMap<&'static str, u64>,
    pub overlaps: Vec<String>,
    pub overlapping_steps: Vec<String>,
    pub double_lands: Vec<String>,
    pub lost: Vec<String>,
    /// The longest time a lane with work queued saw none of it settle, and the lane.
    pub longest_still: (Duration, String),
}

pub fn check(driven: &Driven) -> Report {
    let world = &driven.world;
    let (steps, collides) = read_log(world);
    let mut report = Report {
        rounds: driven.rounds,
        landings: 0,
        steps: steps.len(),
        blocked: Vec::new(),
        blocked_merged: 0,
        faults: driven.faults.iter().map(|(f, n)| (f.name(), *n)).collect(),
        overlaps: overlaps(&steps),
        overlapping_steps: collides,
        double_lands: Vec::new(),
        lost: Vec::new(),
        longest_still: (Duration::ZERO, String::new()),
    };
    let merged: Vec<Vec<String>> = (0..LANES.len()).map(|l| world.merged_features(l)).collect();
    let mut settles: Vec<Vec<(DateTime<Utc>, i32)>> = vec![Vec::new(); LANES.len()];
    for pr in &world.prs {
        let times = merged[pr.lane]
            .iter()
            .filter(|sha| **sha == pr.feature_sha)
            .count();
        if times > 0 {
            report.landings += 1;
        }
        if times > 1 {
            report.double_lands.push(format!(
                "PR {} merged {times} times on {}",
                pr.number,
                lane_name(pr.lane)
            ));
        }
        settles[pr.lane].push((pr.queued_at, 1));
        let record = world.status(pr);
        let status = record
            .as_ref()
            .and_then(|r| r["status"].as_str().map(str::to_owned));
        let reason = record
            .as_ref()
            .and_then(|r| r["lastError"].as_str().map(str::to_owned));
        let lost = match (status.as_deref(), times) {
            (None, _) => Some("missing or unreadable".to_owned()),
            (Some("landed"), 0) => Some("landed but not on its base".to_owned()),
            (Some("landed"), _) => None,
            (Some("blocked"), _) if reason.as_deref().is_some_and(|r| !r.is_empty()) => {
                let merged = if times > 0 {
                    " (its merge is on the base)"
                } else {
                    ""
                };
                report.blocked_merged += usize::from(times > 0);
                report
                    .blocked
                    .push(format!("PR {}{merged}: {}", pr.number, reason.unwrap()));
                None
            }
            (Some(other), _) => Some(format!("ends {other}")),
        };
        match lost {
            Some(why) => report.lost.push(format!(
                "PR {} of {} in queue {}{}: {why}",
                pr.number,
                lane_name(pr.lane),
                pr.queue,
                pr.planted
                    .as_ref()
                    .map(|owner| format!(" (planted, claimed by {owner})"))
                    .unwrap_or_default()
            )),
            None => {
                let at = record
                    .as_ref()
                    .and_then(|r| r["lastUpdatedAt"].as_str())
                    .and_then(berth::clock::parse_iso)
                    .unwrap_or_else(Utc::now);
                settles[pr.lane].push((at, -1));
            }
        }
    }
    for (lane, events) in settles.iter_mut().enumerate() {
        let still = longest_still(events);
        if still > report.longest_still.0 {
            report.longest_still = (still, lane_name(lane));
        }
    }
    report
}

/// The steps (by `begin` line, completed by their `end` line) and one sentence per
/// `collide` line.
fn read_log(world: &ChaosWorld) -> (Vec<Step>, Vec<String>) {
    let text = std::fs::read_to_string(world.log_path()).unwrap_or_default();
    let mut steps: Vec<Step> = Vec::new();
    let mut collides = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let num =
            |i: usize| -> u64 { f[i].parse().unwrap_or_else(|_| panic!("log line {line:?}")) };
        match f[0] {
            "begin" => steps.push(Step {
                lane: f[1].to_owned(),
                pr: num(2),
                daemon: f[3].to_owned(),
                start: num(4),
                end: None,
            }),
            "end" => {
                let (pr, start) = (num(2), num(4));
                let step = steps
                    .iter_mut()
                    .find(|s| s.pr == pr && s.start == start)
                    .unwrap_or_else(|| panic!("end without begin: {line:?}"));
                step.end = Some((num(5), f[6] == "1"));
            }
            "collide" => collides.push(format!(
                "{}: PR {} by {} started while another step of the lane ran",
                f[1], f[2], f[3]
            )),
            _ => panic!("unknown log line {line:?}"),
        }
    }
    (steps, collides)
}

/// Pairs of pushed landings of one lane whose steps overlap in time.
fn overlaps(steps: &[Step]) -> Vec<String> {
    let pushed: Vec<(&Step, u64)> = steps
        .iter()
        .filter_map(|s| match s.end {
            Some((end, true)) => Some((s, end)),
            _ => None,
        })
        .collect();
    let mut found = Vec::new();
    for (i, (a, a_end)) in pushed.iter().enumerate() {
        for (b, b_end) in &pushed[i + 1..] {
            if a.lane == b.lane && a.start < *b_end && b.start < *a_end {
                found.push(format!(
                    "{}: PR {} by {} and PR {} by {} both pushed, {} ms overlapping",
                    a.lane,
                    a.pr,
                    a.daemon,
                    b.pr,
                    b.daemon,
                    (a_end.min(b_end) - a.start.max(b.start)) / 1_000_000
                ));
            }
        }
    }
    found
}

/// The longest span during which the lane had a record queued or in flight and none
/// settled; events are `(time, +1 queued | -1 settled)`.
fn longest_still(events: &mut [(DateTime<Utc>, i32)]) -> Duration {
    events.sort();
    let (mut pending, mut longest) = (0, Duration::ZERO);
    let mut since: Option<DateTime<Utc>> = None;
    for &(at, delta) in events.iter() {
        if delta < 0 || pending == 0 {
            if let Some(from) = since.filter(|_| pending > 0) {
                longest = longest.max((at - from).to_std().unwrap_or_default());
            }
            since = Some(at);
        }
        pending += delta;
    }
    longest
}

impl Report {
    /// Whether the promise held: no overlap, no double land, no lost record.
    pub fn clean(&self) -> bool {
        self.overlaps.is_empty()
            && self.overlapping_steps.is_empty()
            && self.double_lands.is_empty()
            && self.lost.is_empty()
    }

    /// The table (Markdown) and, below it, every violation found.
    pub fn render(&self) -> String {
        let faults: u64 = self.faults.values().sum();
        let by_kind: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::ASCII_MARKDOWN)
            .set_header(["what", "count"]);
        for (what, value) in [
            ("rounds", self.rounds.to_string()),
            ("landings (merged on origin)", self.landings.to_string()),
            ("landing steps run", self.steps.to_string()),
            (
                "blocked with a reason (of which merged)",
                format!("{} ({})", self.blocked.len(), self.blocked_merged),
            ),
            (
                "faults injected",
                format!("{faults} ({})", by_kind.join(", ")),
            ),
            ("overlaps (both pushed)", self.overlaps.len().to_string()),
            (
                "overlapping steps",
                self.overlapping_steps.len().to_string(),
            ),
            ("double lands", self.double_lands.len().to_string()),
            ("lost records", self.lost.len().to_string()),
            (
                "longest a lane stood still",
                format!(
                    "{:.1} s ({})",
                    self.longest_still.0.as_secs_f64(),
                    self.longest_still.1
                ),
            ),
        ] {
            table.add_row([what.to_owned(), value]);
        }
        let mut out = format!("{table}\n");
        for (title, list) in [
            ("overlap", &self.overlaps),
            ("overlapping step", &self.overlapping_steps),
            ("double land", &self.double_lands),
            ("lost", &self.lost),
            ("blocked", &self.blocked),
        ] {
            for item in list {
                let _ = writeln!(out, "{title}: {item}");
            }
        }
        out
    }
}
