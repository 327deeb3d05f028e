//! What the running daemon says about itself: its instance lock, its last tick (the health
//! file), the rule set it runs and how its last reload went (the rules status), and its last
//! SIGHUP's configuration reload. A refused reload fails the doctor: the daemon runs
//! something other than what is on disk, and a restart would not start.

use std::path::Path;

use super::{Check, Verdict};
use crate::rules::RulesStatus;
use crate::telemetry::Health;

/// `daemon`, then (while one runs) `daemon rules` and, after a SIGHUP, `daemon config`.
pub fn checks(berth_dir: &Path, poll_secs: u64) -> Vec<Check> {
    let holder = match crate::instance::running(berth_dir) {
        Ok(Some(holder)) => holder,
        Ok(None) => {
            return vec![Check::new(
                "daemon",
                Verdict::Fail,
                format!("no daemon running on {}", berth_dir.display()),
            )];
        }
        Err(e) => {
            return vec![Check::new(
                "daemon",
                Verdict::Fail,
                format!("cannot read the instance lock: {e}"),
            )];
        }
    };
    let health = Health::read(berth_dir);
    let mut checks = vec![tick(
        &holder.to_string(),
        health.as_ref().ok().and_then(Option::as_ref),
        poll_secs,
    )];
    checks.push(rules(berth_dir));
    if let Ok(Some(Health {
        last_config_reload: Some(reload),
        ..
    })) = &health
    {
        let verdict = if reload.ok {
            Verdict::Ok
        } else {
            Verdict::Fail
        };
        checks.push(Check::new(
            "daemon config",
            verdict,
            format!("last SIGHUP reload at {}: {}", reload.at, reload.detail),
        ));
    }
    checks
}

fn tick(holder: &str, health: Option<&Health>, poll_secs: u64) -> Check {
    let name = "daemon";
    let Some(tick) = health.and_then(|h| h.last_tick.as_ref()) else {
        return Check::new(name, Verdict::Ok, format!("running, {holder}; no tick yet"));
    };
    let age = crate::clock::parse_iso(&tick.at)
        .map(|at| (crate::clock::now() - at).num_seconds().max(0) as u64);
    // A tick waits for the forge and the disk; three intervals plus a minute late means
    // the loop is stuck, not slow.
    let stale = age.is_some_and(|a| a > 3 * poll_secs.max(1) + 60);
    let verdict = if !tick.ok || stale {
        Verdict::Fail
    } else {
        Verdict::Ok
    };
    Check::new(
        name,
        verdict,
        format!(
            "running, {holder}; last tick {} ({}s ago): {}",
            tick.at,
            age.map_or("?".into(), |a| a.to_string()),
            tick.result
        ),
    )
}

/// The rule set the daemon runs; FAIL while its last reload was refused (the line names
/// each error's `file:line:col`).
fn rules(berth_dir: &Path) -> Check {
    let name = "daemon rules";
    match RulesStatus::read(berth_dir) {
        Ok(Some(status)) => {
            let verdict = if status.last_reload.ok {
                Verdict::Ok
            } else {
                Verdict::Fail
            };
            let line = status.line();
            let detail = line.strip_prefix("rules: ").unwrap_or(&line);
            Check::new(name, verdict, format!("runs {detail}"))
        }
        Ok(None) => Check::new(name, Verdict::Warn, "no rules status written yet"),
        Err(e) => Check::new(
            name,
            Verdict::Fail,
            format!(
                "cannot read {}: {e}",
                RulesStatus::path(berth_dir).display()
            ),
        ),
    }
}
