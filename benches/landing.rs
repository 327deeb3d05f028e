//! What landings cost and how lanes overlap (issue 18): `cargo bench --bench landing`
//! prints one table.
//!
//! Each scenario builds real bare origins and clones (the integration tests' `World`), and
//! queues PRs whose landing command is the tests' landing script: fetch the base, merge the
//! feature head into it, push the base. Its baseline, measured in the same run over the
//! same PRs (a second, identical world), is that script run alone, one PR after another,
//! in the clone. berth's time is from `berth run --watch` (git forge) starting until every
//! record is `landed`; its overhead per landing is (berth on one lane − the baseline) / PRs.
//! Latency: with the daemon idle on a free lane, a record is written and the clock stops
//! when its landing command starts (the script's first act writes the time).
//!
//! berth's CPU time (its own threads, from `/proc/<pid>/stat`) is reported beside the wall
//! times: a loaded machine inflates wall time many times over, CPU time far less.
//!
//! The one-lane run also gives berth's overhead per landing from that run alone, not from
//! two worlds run seconds apart under a load that moves: per landing, the claim → verdict
//! time in the decision log less the step's own time as the landing command stamped it,
//! p50 (`support/landing_spans.rs`), and the same from one claim to the next.
//!
//! `BERTH_BENCH_ROWS=one_lane,four_lanes,sixteen_lanes,latency` runs only those rows;
//! `BERTH_BENCH_WRAP="strace -f -tt -T -o FILE"` (or `perf record … --`) runs the daemon
//! under that command, for profiles.

#[path = "support/landing_spans.rs"]
mod landing_spans;
#[path = "support/proc_stat.rs"]
mod proc_stat;
#[path = "../tests/it/support.rs"]
mod support;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{GitLane, World};

/// How long any one scenario may take before the bench gives up on it.
const LIMIT: Duration = Duration::from_secs(600);
/// Records the latency row writes: enough that its p99 is a percentile (the 99th of 100 by
/// nearest rank), not the slowest record; the daemon's first record, which meets its
/// one-time start, has a row of its own.
const LATENCY_SAMPLES: usize = 100;

/// One scenario: PRs spread round-robin over `repos` × `bases` lanes.
struct Scenario {
    name: &'static str,
    repos: usize,
    bases: usize,
    prs: usize,
    max_lanes: usize,
}

const ONE_LANE: Scenario = Scenario {
    name: "20 PRs, 1 lane",
    repos: 1,
    bases: 1,
    prs: 20,
    max_lanes: 1,
};
const FOUR_LANES: Scenario = Scenario {
    name: "20 PRs, 4 lanes of one repo, max_lanes = 4",
    repos: 1,
    bases: 4,
    prs: 20,
    max_lanes: 4,
};
const SIXTEEN_LANES: Scenario = Scenario {
    name: "64 PRs, 16 lanes in 4 repos, max_lanes = 8",
    repos: 4,
    bases: 4,
    prs: 64,
    max_lanes: 8,
};

/// A scenario's world: its lanes and each PR's (lane index, PR number, base).
struct Built<'w> {
    lanes: Vec<GitLane<'w>>,
    prs: Vec<(usize, u64, String)>,
}

fn base_name(b: usize) -> String {
    if b == 0 {
        "main".into()
    } else {
        format!("rel-{b}")
    }
}

fn build<'w>(world: &'w World, s: &Scenario) -> Built<'w> {
    let lanes: Vec<GitLane> = (0..s.repos)
        .map(|r| world.git_lane(&format!("repo-{r}"), None))
        .collect();
    for lane in &lanes {
        for b in 1..s.bases {
            lane.push_base(&base_name(b));
        }
    }
    let prs = (0..s.prs)
        .map(|i| {
            let lane = i % s.repos;
            let base = base_name((i / s.repos) % s.bases);
            let pr = i as u64 + 1;
            lanes[lane].push_feature(&format!("feat/pr-{pr}"), &base);
            (lane, pr, base)
        })
        .collect();
    Built { lanes, prs }
}

/// The landing script run alone over every PR, one after another, in the clone.
fn baseline(s: &Scenario) -> Duration {
    let world = World::new();
    let built = build(&world, s);
    let land = world.land_script();
    let ledger = world.root.join("ledger");
    let started = Instant::now();
    for (lane, pr, base) in &built.prs {
        // `World::git`'s environment (identity, no user config), running the script.
        let cmd = world.git(&built.lanes[*lane].clone);
        let ok = std::process::Command::new(&land)
            .current_dir(&built.lanes[*lane].clone)
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .args([
                &format!("feat/pr-{pr}"),
                base.as_str(),
                ledger.to_str().unwrap(),
                &pr.to_string(),
            ])
            .status()
            .expect("land script runs")
            .success();
        assert!(ok, "the landing script failed on PR {pr}");
    }
    started.elapsed()
}

/// What berth took over a scenario: wall time, and the daemon's own CPU time (its threads,
/// not the landing commands it ran), from its start until every record is landed.
struct Took {
    wall: Duration,
    cpu: Duration,
    /// Each landing as the decision log and the landing script stamped it.
    spans: Vec<landing_spans::Span>,
}

/// berth over the same PRs: from the daemon's start until every record is landed.
fn with_berth(s: &Scenario) -> Took {
    let world = World::new();
    let built = build(&world, s);
    let prs: HashMap<String, u64> = built
        .prs
        .iter()
        .map(|(lane, pr, base)| {
            let id = world
                .record(&built.lanes[*lane].clone, *pr)
                .set("featureBranch", format!("feat/pr-{pr}"))
                .set("baseBranch", base.as_str())
                .write();
            (id, *pr)
        })
        .collect();
    let ids: Vec<&String> = prs.keys().collect();
    let steps = world.root.join("steps");
    let timed = landing_spans::timed_land_script(&world.root, &world.land_script(), &steps, 4);
    let config = world.config(&format!(
        "forge = \"git\"\nland_command = [\"{}\", \"{{branch}}\", \"{{base}}\", \"{}\", \"{{pr}}\"]\n\
         max_lanes = {}\npoll_secs = 30\n",
        timed.display(),
        world.root.join("ledger").display(),
        s.max_lanes
    ));
    let started = Instant::now();
    let mut daemon = spawn_watch(&world, &config);
    // Settled: landed, or blocked (which no wait would change).
    let settled = world.wait_for(LIMIT, || {
        ids.iter().all(|id| {
            let status = &world.read_record(id)["status"];
            status == "landed" || status == "blocked"
        })
    });
    let took = Took {
        wall: started.elapsed(),
        cpu: proc_stat::cpu_time(daemon.id()),
        spans: landing_spans::spans(&world.berth_state(), &steps, &prs),
    };
    stop(&mut daemon);
    let unlanded: Vec<String> = ids
        .iter()
        .map(|id| world.read_record(id))
        .filter(|r| r["status"] != "landed")
        .map(|r| format!("PR {} {}: {}", r["prNumber"], r["status"], r["lastError"]))
        .collect();
    assert!(
        settled && unlanded.is_empty(),
        "{}: not every record landed: {unlanded:#?}",
        s.name
    );
    took
}

/// `berth run --watch`, under the command `BERTH_BENCH_WRAP` names when it is set (for
/// `strace -f -tt -T -o FILE` or `perf record … --`; the CPU figures are then the
/// wrapper's).
fn spawn_watch(world: &World, config: &Path) -> std::process::Child {
    let args = ["run", "--watch", "--config", config.to_str().unwrap()];
    match std::env::var("BERTH_BENCH_WRAP") {
        Ok(wrap) if !wrap.trim().is_empty() => {
            let wrapper: Vec<&str> = wrap.split_whitespace().collect();
            world.spawn_berth_wrapped(&wrapper, &args, &world.berth_state())
        }
        _ => world.spawn_berth(&args, &world.berth_state(), &[]),
    }
}

fn stop(daemon: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = daemon.wait();
}

/// What the latency run measured: each record's enqueue-to-start time, sorted, and the
/// daemon's CPU time from its first record written to its last one landed.
struct Latency {
    samples: Vec<Duration>,
    /// The first record's, before sorting: it meets whatever the daemon makes on first
    /// need.
    first: Duration,
    cpu: Duration,
}

/// Enqueue-to-start latency of a record on a free lane, over [`LATENCY_SAMPLES`] records
/// written one at a time to an idle `run --watch`.
fn latency() -> Latency {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    for pr in 1..=LATENCY_SAMPLES as u64 {
        lane.push_feature(&format!("feat/pr-{pr}"), "main");
    }
    let starts = world.root.join("starts");
    fs::create_dir_all(&starts).unwrap();
    let land = world.land_script();
    let script = format!(
        "date +%s%N > {starts}/$3; exec {land} \"$1\" \"$2\" {ledger} \"$3\"",
        starts = starts.display(),
        land = land.display(),
        ledger = world.root.join("ledger").display()
    );
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 3600\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let mut daemon = spawn_watch(&world, &config);
    // The daemon is up once its first (empty) tick has written its health file.
    assert!(
        world.wait_for(LIMIT, || world
            .berth_state()
            .join("daemon-health.json")
            .exists()),
        "the daemon never ticked"
    );
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = proc_stat::cpu_time(daemon.id());
    let mut samples = Vec::new();
    for pr in 1..=LATENCY_SAMPLES as u64 {
        let written_ns = now_ns();
        let id = world
            .record(&lane.clone, pr)
            .set("featureBranch", format!("feat/pr-{pr}"))
            .write();
        let mark = starts.join(pr.to_string());
        assert!(
            world.wait_for(LIMIT, || fs::read_to_string(&mark)
                .is_ok_and(|t| t.trim().parse::<u128>().is_ok())),
            "PR {pr} never started"
        );
        let started_ns: u128 = fs::read_to_string(&mark).unwrap().trim().parse().unwrap();
        samples.push(Duration::from_nanos(
            started_ns.saturating_sub(written_ns) as u64
        ));
        assert!(
            world.wait_for(LIMIT, || world.read_record(&id)["status"] == "landed"),
            "PR {pr} did not land"
        );
    }
    let cpu = proc_stat::cpu_time(daemon.id()).saturating_sub(cpu_before);
    stop(&mut daemon);
    let first = samples[0];
    samples.sort();
    Latency {
        samples,
        first,
        cpu,
    }
}

/// `/proc/loadavg`'s three figures, printed with the table: wall times mean little
/// without them on a shared machine.
fn load_average() -> std::io::Result<(String, String, String)> {
    let text = fs::read_to_string("/proc/loadavg")?;
    let mut it = text.split_whitespace().map(str::to_owned);
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(std::io::Error::other("unexpected /proc/loadavg")),
    }
}

/// The file system the worlds are made on (the temp dir), as `findmnt` names it, and for
/// ext4 whether it has a journal: without one, every new file costs a pass over the inodes
/// freed in the last 30 s, which shows in berth's CPU a landing ([benchmarks]).
///
/// [benchmarks]: ../docs/benchmarks.md
fn temp_file_system() -> Option<String> {
    let dir = std::env::temp_dir();
    let out = std::process::Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE,SOURCE", "-T"])
        .arg(&dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut fields = text.split_whitespace();
    let (kind, source) = (fields.next()?, fields.next()?);
    let journal = (kind == "ext4").then(|| {
        let device = source.rsplit('/').next().unwrap_or(source);
        match fs::read_to_string(format!("/sys/fs/ext4/{device}/journal_task")) {
            Ok(task) if task.trim() == "<none>" => " without a journal",
            Ok(_) => " with a journal",
            Err(_) => "",
        }
    });
    Some(format!(
        "{} on {kind}{}",
        dir.display(),
        journal.unwrap_or("")
    ))
}

/// berth's overhead per landing from the one-lane run alone (no second world): the p50
/// over its landings of what the daemon added around the landing script.
fn same_run_rows(table: &mut comfy_table::Table, spans: &[landing_spans::Span]) {
    let rows = [
        (
            "berth's overhead per landing, same run (1 lane: claim → verdict − the step, p50)",
            landing_spans::claim_to_verdict_p50(spans),
        ),
        (
            "… claim → next claim − the step, p50 (adds the release, the next tick, the claim)",
            landing_spans::claim_to_claim_p50(spans),
        ),
    ];
    for (measure, p50) in rows {
        table.add_row([
            measure.to_owned(),
            "≤ 50 ms".to_owned(),
            p50.map_or("no landings stamped".to_owned(), ms),
            "—".to_owned(),
            p50.map_or("—", |d| {
                if d <= Duration::from_millis(50) {
                    "yes"
                } else {
                    "NO"
                }
            })
            .to_owned(),
        ]);
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let only = std::env::var("BERTH_BENCH_ROWS").ok();
    let selected = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == name))
    };
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header([
            "measure",
            "target",
            "berth",
            "baseline (script alone)",
            "ok?",
        ]);
    let yes = |ok: bool| if ok { "yes" } else { "NO" };
    if let Ok((one, five, fifteen)) = load_average() {
        println!("load average at the start: {one} {five} {fifteen}");
    }
    if let Some(file_system) = temp_file_system() {
        println!("the worlds' temp dir: {file_system}");
    }
    let mut one_lane: Option<(Took, Duration)> = None;
    for (row, s) in [
        ("one_lane", &ONE_LANE),
        ("four_lanes", &FOUR_LANES),
        ("sixteen_lanes", &SIXTEEN_LANES),
    ] {
        if !selected(row) {
            continue;
        }
        let base = baseline(s);
        let took = with_berth(s);
        let (target, ok) = match row {
            "one_lane" => ("—".to_owned(), None),
            "four_lanes" => match one_lane.as_ref().map(|(t, _)| t.wall) {
                Some(one) => (
                    format!("≤ 1 lane ({}), ideally ≤ 0.5×", secs(one)),
                    Some(took.wall <= one),
                ),
                None => ("≤ 1 lane".to_owned(), None),
            },
            _ => ("—".to_owned(), None),
        };
        table.add_row([
            s.name.to_owned(),
            target,
            format!(
                "{} ({:.2}× the script; berth's CPU {} a PR)",
                secs(took.wall),
                took.wall.as_secs_f64() / base.as_secs_f64(),
                ms(took.cpu / s.prs as u32)
            ),
            secs(base),
            ok.map_or("—", yes).to_owned(),
        ]);
        if row == "one_lane" {
            one_lane = Some((took, base));
        }
    }
    if let Some((took, base)) = one_lane {
        let per = took.wall.saturating_sub(base) / ONE_LANE.prs as u32;
        table.add_row([
            "berth's overhead per landing (1 lane, wall)".to_owned(),
            "≤ 50 ms".to_owned(),
            ms(per),
            ms(base / ONE_LANE.prs as u32) + " per PR",
            yes(per <= Duration::from_millis(50)).to_owned(),
        ]);
        same_run_rows(&mut table, &took.spans);
    }
    if selected("latency") {
        let Latency {
            samples,
            first,
            cpu,
        } = latency();
        let at = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        let per = cpu / LATENCY_SAMPLES as u32;
        table.add_row([
            "berth's CPU per landing (idle daemon, one record at a time)".to_owned(),
            "≤ 50 ms".to_owned(),
            ms(per),
            "—".to_owned(),
            yes(per <= Duration::from_millis(50)).to_owned(),
        ]);
        table.add_row([
            "enqueue → landing command starts, p50".to_owned(),
            "—".to_owned(),
            ms(at(0.5)),
            "—".to_owned(),
            "—".to_owned(),
        ]);
        table.add_row([
            format!("enqueue → landing command starts, p99 ({LATENCY_SAMPLES} records)"),
            "≤ 100 ms".to_owned(),
            ms(at(0.99)),
            "—".to_owned(),
            yes(at(0.99) <= Duration::from_millis(100)).to_owned(),
        ]);
        table.add_row([
            "enqueue → landing command starts, the first record".to_owned(),
            "—".to_owned(),
            ms(first),
            "—".to_owned(),
            "—".to_owned(),
        ]);
    }
    if let Ok((one, five, fifteen)) = load_average() {
        println!("load average at the end: {one} {five} {fifteen}");
    }
    println!();
    println!("{table}");
}
