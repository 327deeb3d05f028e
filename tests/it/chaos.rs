//! The chaos run, bounded for CI: three daemons (two on one queue, one on another; both
//! queues land the same origins, one a local path, one behind `git daemon`) under random
//! pauses, kills, restarts and planted claims. `cargo bench --bench chaos` runs it longer.

use std::time::Duration;

use crate::chaos_check::check;
use crate::chaos_faults::{Fault, Knobs, drive};

/// The CI bound: 4 rounds of 2 PRs on each of 3 lanes (24 landings plus the planted
/// ones), faults stop after 60 s, every record settles within 90 s more.
fn ci_knobs() -> Knobs {
    Knobs::from_env(Knobs {
        seed: Knobs::fresh_seed(),
        daemons: 3,
        rounds: 4,
        prs_per_lane: 2,
        time_limit: Duration::from_secs(60),
        fault_rate: 0.08,
        faults: Fault::ALL.to_vec(),
        alias: true,
        keep: false,
    })
}

#[test]
fn chaos_no_lane_lands_twice_at_once_no_pr_twice_no_record_lost() {
    let knobs = ci_knobs();
    let driven = drive(&knobs);
    let report = check(&driven);
    eprintln!("{}", report.render());
    assert!(
        report.clean(),
        "seed {}: the lane promise broke (the table above lists how)",
        knobs.seed
    );
    for fault in &knobs.faults {
        assert!(
            report.faults.get(fault.name()).is_some_and(|&n| n > 0),
            "seed {}: no {} injected",
            knobs.seed,
            fault.name()
        );
    }
    assert!(report.landings > 0, "nothing landed");
}
