//! The long chaos run: `cargo bench --bench chaos`, with the knobs of `Knobs::from_env`
//! (`CHAOS_SEED`, `CHAOS_DAEMONS`, `CHAOS_ROUNDS`, `CHAOS_PRS`, `CHAOS_SECS`,
//! `CHAOS_FAULT_RATE`, `CHAOS_FAULTS`, `CHAOS_ALIAS`, `CHAOS_KEEP`). The same harness as the CI test in
//! `tests/it/chaos.rs`, run longer; prints the table and every violation, and exits 1 if
//! the lane promise broke.

#[path = "../tests/it/chaos_check.rs"]
mod chaos_check;
#[path = "../tests/it/chaos_faults.rs"]
mod chaos_faults;
#[path = "../tests/it/chaos_world.rs"]
mod chaos_world;
#[path = "../tests/it/support.rs"]
mod support;

use std::time::{Duration, Instant};

use chaos_faults::{Fault, Knobs};

fn main() {
    // `cargo bench` passes `--bench`; a filter naming another bench skips this one.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"chaos".contains(&a))
    {
        return;
    }
    let knobs = Knobs::from_env(Knobs {
        seed: Knobs::fresh_seed(),
        daemons: 3,
        rounds: 60,
        prs_per_lane: 3,
        time_limit: Duration::from_secs(1800),
        fault_rate: 0.08,
        faults: Fault::ALL.to_vec(),
        alias: true,
        keep: false,
    });
    let started = Instant::now();
    let driven = chaos_faults::drive(&knobs);
    let report = chaos_check::check(&driven);
    println!(
        "chaos run: seed {}, {} daemons, {} s, berth at {}",
        knobs.seed,
        knobs.daemons,
        started.elapsed().as_secs(),
        commit()
    );
    println!("{}", report.render());
    if !report.clean() {
        std::process::exit(1);
    }
}

/// The commit the bench was built from (and whether the tree had changes).
fn commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let dirty = if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    format!("{}{dirty}", git(&["rev-parse", "--short", "HEAD"]))
}
