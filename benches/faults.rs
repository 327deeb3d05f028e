//! Faults over a generated 10,000-feature orchestrator state (~2 MB):
//!
//! - `hand_merged/rhai`: the shipped `rules/detectors/05_hand_merged_feature.rhai`, from the
//!   file's bytes to validated faults (parse, hand the parsed state to the rule, validate);
//! - `hand_merged/native`: the same check written in Rust, from the same bytes;
//! - `state_jsonpath/hand_merged`: the hand-merged pattern on the parsed state (a
//!   `Document`: the `Value` plus the compact form every query of that file shares);
//! - `state_jsonpath/build`: making that compact form, once per state file;
//! - `state_jsonpath/wide_object`: a longest-allowed pattern of 499 filters over one object of
//!   200,000 keys, the case where a member scan would cost pattern × width (it hashes).
//!
//! After criterion's figures, an interleaved run prints medians: the Rhai/native ratio
//! (target: within 2x), the jsonpath evaluation (target: < 0.3 ms), the one-off build, and
//! the plain native check on the parsed `Value` for scale.
//!
//! Then the learned patterns (issue 9 §4): the 1,000 a file may hold, spread over the seven kinds,
//! compiled once, over that state, a 2 MiB stdout log and a plan (target: the learned pass
//! ≤ 50 ms), and the worst regexes the bounds accept over a full window (target ≤ 100 ms).
//! `cargo bench --bench faults`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::{Map, Value, json};

use berth::faults::detect::{RunInput, detect_run, run_detector};
use berth::faults::learned::LearnedSet;
use berth::faults::learned_match::{self, Regex, Texts, window};
use berth::faults::state_jsonpath::{Document, StatePath};
use berth::faults::{Fault, Severity};
use berth::rules::{RuleSet, Rules};

#[path = "support/learned_world.rs"]
mod learned_world;
use learned_world::{FEATURES, LEARNED, learned_pass, load_learned, run_texts, state_bytes};

const RULE: &str = "rules/detectors/05_hand_merged_feature.rhai";
const PATTERN: &str =
    "$.features[?(@.status == 'committed' && !@.completedAt && @.mergeSha && @.prNumber)]";

/// One object of 200,000 keys, `z` last.
fn wide_object() -> Value {
    let mut members: Map<String, Value> =
        (0..200_000).map(|i| (format!("a{i}"), json!(i))).collect();
    members.insert("z".into(), json!(1));
    Value::Object(members)
}

fn rhai_path(set: &RuleSet, bytes: &[u8]) -> Vec<Fault> {
    let state: Value = serde_json::from_slice(bytes).expect("state parses");
    let run = RunInput::from_state(state, None, None, None);
    run_detector(set, RULE, run.to_rule_input()).expect("rule runs")
}

fn native_path(bytes: &[u8]) -> Vec<Fault> {
    let state: Value = serde_json::from_slice(bytes).expect("state parses");
    native_check(&state)
}

/// The hand-merged check on a parsed state, in plain Rust.
fn native_check(state: &Value) -> Vec<Fault> {
    let truthy = |v: Option<&Value>| match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    let Some(features) = state.get("features").and_then(Value::as_array) else {
        return Vec::new();
    };
    features
        .iter()
        .filter(|f| {
            f.get("status").and_then(Value::as_str) == Some("committed")
                && !truthy(f.get("completedAt"))
                && truthy(f.get("mergeSha"))
                && truthy(f.get("prNumber"))
        })
        .map(|f| {
            let number = match f.get("number") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "undefined".into(),
            };
            Fault {
                category: "HAND_MERGED_FEATURE".into(),
                severity: Severity::High,
                description: format!(
                    "Feature {number} carries mergeSha+prNumber but completedAt is missing. Likely a hand-merged PR."
                ),
                // gstack's detector carries no evidence (fault-detectors.md §3.3).
                source_files: Vec::new(),
                evidence: Map::new(),
            }
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    // Backtracking learned patterns run on a worker process: berth's binary.
    berth::faults::learned_match::worker::use_program(std::path::Path::new(env!(
        "CARGO_BIN_EXE_berth"
    )));
    let bytes = state_bytes();
    let rules = Rules::embedded().expect("shipped rules load");
    let set = rules.current();
    let rhai = rhai_path(&set, &bytes);
    let native = native_path(&bytes);
    assert_eq!(rhai, native, "both paths find the same faults");
    assert_eq!(rhai.len(), FEATURES / 100);
    let parsed: Value = serde_json::from_slice(&bytes).expect("state parses");
    let document = Document::new(parsed.clone());
    let path = StatePath::parse(PATTERN).expect("pattern parses");
    assert_eq!(document.select(&path).len(), FEATURES / 100);

    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(6))
        .configure_from_args();
    let mut group = criterion.benchmark_group("hand_merged");
    group.bench_function("rhai", |b| b.iter(|| rhai_path(&set, black_box(&bytes))));
    group.bench_function("native", |b| b.iter(|| native_path(black_box(&bytes))));
    group.finish();
    criterion.bench_function("state_jsonpath/hand_merged", |b| {
        b.iter(|| black_box(&document).query(black_box(PATTERN)).len())
    });
    let wide = Document::new(json!({"w": wide_object()}));
    let many_filters = format!("$.w{}.z", "[?(@.z)]".repeat(499));
    let found = wide.query(&many_filters);
    assert!(found.len() == 1 && *found[0] == json!(1));
    criterion.bench_function("state_jsonpath/wide_object", |b| {
        b.iter(|| black_box(&wide).query(black_box(&many_filters)).len())
    });
    criterion.bench_function("state_jsonpath/build", |b| {
        b.iter_batched(
            || parsed.clone(),
            |value| Document::new(black_box(value)),
            criterion::BatchSize::LargeInput,
        )
    });
    criterion.final_summary();

    // Interleaved, so machine load hits both paths alike.
    let (mut rhai_t, mut native_t, mut path_t, mut build_t, mut check_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..40 {
        let t = Instant::now();
        black_box(rhai_path(&set, &bytes));
        rhai_t.push(t.elapsed());
        let t = Instant::now();
        black_box(native_path(&bytes));
        native_t.push(t.elapsed());
        let t = Instant::now();
        for _ in 0..20 {
            black_box(document.query(black_box(PATTERN)));
        }
        path_t.push(t.elapsed() / 20);
        let value = parsed.clone();
        let t = Instant::now();
        let built = Document::new(black_box(value));
        build_t.push(t.elapsed());
        drop(black_box(built));
        let t = Instant::now();
        for _ in 0..20 {
            black_box(native_check(&parsed));
        }
        check_t.push(t.elapsed() / 20);
    }
    let (r, n, p, b, c) = (
        median(rhai_t),
        median(native_t),
        median(path_t),
        median(build_t),
        median(check_t),
    );
    println!(
        "state: {FEATURES} features, {:.2} MB; faults: {}",
        bytes.len() as f64 / 1e6,
        rhai.len()
    );
    println!(
        "HAND_MERGED_FEATURE bytes->faults: rhai {:.3} ms, native {:.3} ms, ratio {:.2}x (target <= 2x)",
        r.as_secs_f64() * 1e3,
        n.as_secs_f64() * 1e3,
        r.as_secs_f64() / n.as_secs_f64()
    );
    println!(
        "state_jsonpath hand-merged pattern: {:.3} ms per evaluation (target < 0.3 ms)",
        p.as_secs_f64() * 1e3
    );
    println!(
        "  its compact form, built once per state file and shared by every query: {:.3} ms",
        b.as_secs_f64() * 1e3
    );
    println!(
        "for scale, the native check alone on the parsed Value: {:.3} ms",
        c.as_secs_f64() * 1e3
    );
    learned_patterns(&set, parsed);
    worst_regexes();
}

fn learned_patterns(set: &RuleSet, parsed: Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rss_before = peak_rss_kib();
    let t = Instant::now();
    let learned = load_learned(dir.path());
    let compile = t.elapsed();
    assert_eq!(
        learned.patterns.len(),
        LEARNED + 3,
        "{:?}",
        learned.warnings
    );
    let rss_compiled = peak_rss_kib();
    let (stdout, plan) = run_texts(dir.path());
    let run = RunInput::from_state(parsed, None, Some(&plan), Some(&stdout));
    let with = detect_run(set, &run, &learned);
    let without = detect_run(set, &run, &LearnedSet::default());
    let learned_faults: Vec<&str> = with.faults[without.faults.len()..]
        .iter()
        .map(|f| f.category.as_str())
        .collect();
    assert_eq!(learned_faults, ["NET_FLAKE", "NET_RESET", "STILL_RUNNING"]);
    let texts = || Texts {
        stdout: run.stdout.as_ref().map(|a| window(&a.content)),
        plan: run.plan.as_ref().map(|a| window(&a.content)),
        failure_reason: None,
    };
    let pass = learned_pass(set, &run, &learned, 15);
    let matching = median(
        (0..15)
            .map(|_| {
                let t = Instant::now();
                black_box(learned.matching(&texts(), &run.state));
                t.elapsed()
            })
            .collect(),
    );
    println!(
        "learned patterns: {LEARNED} over a 2 MB state (2 MiB stdout, {} KiB plan): learned pass {:.2} ms (target <= 50 ms); native matching alone {:.2} ms",
        run.plan.as_ref().map_or(0, |a| a.content.len() / 1024),
        pass.as_secs_f64() * 1e3,
        matching.as_secs_f64() * 1e3
    );
    println!(
        "  compiled once per version of the file: {:.0} ms; peak RSS {} MiB before, {} MiB after compiling",
        compile.as_secs_f64() * 1e3,
        rss_before / 1024,
        rss_compiled / 1024
    );
}

/// The worst patterns the bounds accept, over a full window of text chosen to hurt them.
fn worst_regexes() {
    let mut bits = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bits.len() < learned_match::WINDOW_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bits.push(if x & 1 == 1 { '1' } else { '0' });
    }
    let a_run = "a".repeat(learned_match::WINDOW_BYTES);
    // The largest n of `[01]*1[01]{n}x` (an automaton exponential in n) under the limit.
    let accepted = |n: usize| Regex::compile(&format!("[01]*1[01]{{{n}}}x")).is_ok();
    let (mut lo, mut hi) = (1usize, 5000usize);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if accepted(mid) {
            lo = mid
        } else {
            hi = mid - 1
        }
    }
    assert!(
        Regex::compile("[01]*1[01]{5000}x").is_err(),
        "issue 9's example is refused"
    );
    // One worker for every backtracking match, as a tick has: its start is timed apart.
    let mut worker = learned_match::worker::Worker::default();
    let reset = Regex::compile("ECONN(?=RESET)").expect("accepted");
    let t = Instant::now();
    black_box(reset.answer("ECONNRESET", &mut worker, None));
    let start = t.elapsed();
    let round_trip = median(
        (0..200)
            .map(|_| {
                let t = Instant::now();
                black_box(reset.answer(black_box("ECONNRESET"), &mut worker, None));
                t.elapsed()
            })
            .collect(),
    );
    println!(
        "backtracking match on the worker: first (starts it) {:.2} ms, then `ECONN(?=RESET)` over 10 bytes {:.1} µs a match (round trip and build)",
        start.as_secs_f64() * 1e3,
        round_trip.as_secs_f64() * 1e6
    );
    for (pattern, text) in [
        (format!("[01]*1[01]{{{lo}}}x"), &bits),
        (r"(?!x)(a|aa)*b".to_owned(), &a_run),
        // A backreference to a group inside a repetition is refused (JavaScript empties it at
        // each repetition); one repeated after its group is not.
        (r"(a+)(?:\1)*b".to_owned(), &a_run),
    ] {
        let regex = Regex::compile(&pattern).expect("accepted");
        let window = window(text);
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            black_box(regex.answer(black_box(window), &mut worker, None));
            times.push(t.elapsed());
        }
        println!(
            "worst accepted regex over the window: `{pattern}` over {} KiB: {:.1} ms (target <= 100 ms)",
            window.len() / 1024,
            median(times).as_secs_f64() * 1e3
        );
    }
}

/// The process's peak resident set so far, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
