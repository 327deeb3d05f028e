//! berth's overhead per landing measured inside one run, independent of a second world's
//! baseline: the landing command is wrapped by a script that stamps when the real landing
//! script starts and ends, and the daemon's decision log says when each record was claimed
//! (`queued → claiming`, written once the claim is on disk) and settled (`→ landed`, once
//! the verdict is). Included by `landing.rs`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes `<root>/timed-land.sh`: runs `land` with the same arguments and appends
/// `<pr> <start ns> <end ns>` to `spans` (the PR is the argument at `pr_arg`, 1-based).
/// What the wrapper's own shell and `date` cost counts as berth's.
pub fn timed_land_script(root: &Path, land: &Path, spans: &Path, pr_arg: usize) -> PathBuf {
    let path = root.join("timed-land.sh");
    fs::write(
        &path,
        format!(
            "#!/bin/sh\nstart=$(date +%s%N)\n{land} \"$@\"\nrc=$?\n\
             echo \"${pr_arg} $start $(date +%s%N)\" >> {spans}\nexit $rc\n",
            land = land.display(),
            spans = spans.display(),
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .unwrap();
    path
}

/// One landing as the two clocks saw it, in ns since the epoch.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub claimed: i128,
    pub settled: i128,
    pub step_start: i128,
    pub step_end: i128,
}

/// Every landed PR's span, in claim order. `ids` maps a record id to its PR number.
pub fn spans(berth_dir: &Path, steps: &Path, ids: &HashMap<String, u64>) -> Vec<Span> {
    let mut step: HashMap<u64, (i128, i128)> = HashMap::new();
    for line in fs::read_to_string(steps).unwrap_or_default().lines() {
        let f: Vec<i128> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [pr, start, end] = f[..] {
            step.insert(pr as u64, (start, end));
        }
    }
    let mut claimed: HashMap<u64, i128> = HashMap::new();
    let mut settled: HashMap<u64, i128> = HashMap::new();
    let log = fs::read_to_string(berth_dir.join("decisions.jsonl")).unwrap_or_default();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(id), Some(to), Some(at)) = (
            v["record"].as_str(),
            v["to"].as_str(),
            v["time"].as_str().and_then(berth::clock::parse_iso),
        ) else {
            continue;
        };
        let (Some(pr), Some(ns)) = (ids.get(id), at.timestamp_nanos_opt()) else {
            continue;
        };
        match (v["kind"].as_str(), to) {
            (Some("status"), "claiming") => claimed.insert(*pr, i128::from(ns)),
            (Some("status"), "landed") => settled.insert(*pr, i128::from(ns)),
            _ => None,
        };
    }
    let mut spans: Vec<Span> = step
        .iter()
        .filter_map(|(pr, &(step_start, step_end))| {
            Some(Span {
                claimed: *claimed.get(pr)?,
                settled: *settled.get(pr)?,
                step_start,
                step_end,
            })
        })
        .collect();
    spans.sort_by_key(|s| s.claimed);
    spans
}

/// What berth added to each landing, p50: (claim → verdict) − the step's own wall time.
pub fn claim_to_verdict_p50(spans: &[Span]) -> Option<Duration> {
    p50(spans
        .iter()
        .map(|s| (s.settled - s.claimed) - (s.step_end - s.step_start))
        .collect())
}

/// On one lane, what berth added between one landing's step and the next one's, p50:
/// (one claim → the next claim) − the first one's step. Unlike [`claim_to_verdict_p50`]
/// this holds the claim write, the lock's release and the next tick.
pub fn claim_to_claim_p50(spans: &[Span]) -> Option<Duration> {
    p50(spans
        .windows(2)
        .map(|w| (w[1].claimed - w[0].claimed) - (w[0].step_end - w[0].step_start))
        .collect())
}

fn p50(mut ns: Vec<i128>) -> Option<Duration> {
    if ns.is_empty() {
        return None;
    }
    ns.sort();
    let mid = ns[(ns.len() - 1) / 2].max(0);
    Some(Duration::from_nanos(u64::try_from(mid).unwrap_or(u64::MAX)))
}
