//! The worker process backtracking learned patterns run on, as the fault watch drives it:
//! berth's own binary under its memory limit. A pattern whose match it dies of does not
//! match and is named by index; the others still answer; no worker is left after the pass.

use std::fs;

use serde_json::json;

use crate::support::World;

/// The processes whose parent is this one and whose command line holds the worker's
/// argument.
fn workers_of_this_process() -> usize {
    let me = std::process::id().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let dir = entry.path();
            let parent = fs::read_to_string(dir.join("stat")).ok().and_then(|stat| {
                // `pid (comm) state ppid …`: the command may hold spaces and parentheses.
                let after = stat.rsplit_once(')')?.1.to_owned();
                after.split_whitespace().nth(1).map(str::to_owned)
            });
            let command = fs::read(dir.join("cmdline")).unwrap_or_default();
            parent.as_deref() == Some(me.as_str())
                && String::from_utf8_lossy(&command)
                    .contains(berth::faults::learned_match::worker::WORKER_ARG)
        })
        .count()
}

/// Held by the tests here that run workers in this process: the one counting this
/// process's workers must not count another test's.
static IN_PROCESS_WORKERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut left = vec![dir.to_owned()];
    while let Some(dir) = left.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                left.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// 300 `()(?:|z)` in a repeated body held 58.9 MB in one match in the daemon (review b35).
#[test]
fn a_pattern_the_worker_dies_of_is_named_and_the_others_still_match() {
    let _alone = IN_PROCESS_WORKERS.lock().unwrap_or_else(|e| e.into_inner());
    use berth::faults::halt_store::HaltStore;
    use berth::faults::learned::LearnedSet;
    use berth::faults::watch::watch_runs;
    use berth::rules::Rules;
    berth::faults::learned_match::worker::use_program(std::path::Path::new(env!(
        "CARGO_BIN_EXE_berth"
    )));
    let world = World::new();
    let state_dir = world.root.join("build-state");
    fs::create_dir_all(&state_dir).unwrap();
    let stdout = state_dir.join("heavy-run.log");
    fs::write(&stdout, "a".repeat(4096)).unwrap();
    let state = json!({"slug": "heavy-run", "stdoutLog": stdout});
    fs::write(state_dir.join("heavy-run.json"), state.to_string()).unwrap();
    let entry = |category: &str, pattern: String| {
        json!({"category": category, "severity": "MEDIUM", "description": category,
               "matcherKind": "stdout_regex", "pattern": pattern})
    };
    let heavy = format!("(?:(?:|z){}(?=a)a)*", "()(?:|z)".repeat(300));
    let entries = json!([entry("HEAVY", heavy), entry("LIGHT", "a(?=a)".to_owned()),]);
    let learned_path = world.root.join("learned-patterns.json");
    fs::write(&learned_path, entries.to_string()).unwrap();
    let learned = LearnedSet::load(&learned_path).unwrap();
    assert_eq!(learned.patterns.len(), 2, "{:?}", learned.warnings);
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let report = watch_runs(&rules.current(), &state_dir, &halts, &learned);
    let named: Vec<&String> = report
        .problems
        .iter()
        .filter(|problem| problem.starts_with("learned pattern 0 (HEAVY)"))
        .collect();
    assert_eq!(named.len(), 1, "{:?}", report.problems);
    let filed = |category: &str| {
        walk(&world.root.join("skill-faults"))
            .iter()
            .filter(|file| fs::read_to_string(file).is_ok_and(|text| text.contains(category)))
            .count()
    };
    assert!(
        filed("LIGHT") > 0 && filed("HEAVY") == 0,
        "the light pattern's fault is filed, the heavy one's not: {report:?}"
    );
    assert_eq!(
        workers_of_this_process(),
        0,
        "no worker is left after the pass"
    );
}

/// `berth detect` runs the same worker: a pattern the worker dies of must not be a clean
/// answer. The fault watch names it ("learned pattern 0 (HEAVY): … its worker died of
/// it"); the one-shot command printed "no faults", exited 0 and said nothing on stderr,
/// where the same pattern matched in the daemon before the worker (it held 58.9 MB).
#[test]
fn berth_detect_says_when_the_worker_died_of_a_pattern() {
    let world = World::new();
    let heavy = format!("(?:(?:|z){}(?=a)a)*", "()(?:|z)".repeat(300));
    let learned = world.root.join("learned-patterns.json");
    let entries = json!([{"category": "HEAVY", "severity": "MEDIUM", "description": "HEAVY",
        "matcherKind": "stdout_regex", "pattern": heavy}]);
    fs::write(&learned, entries.to_string()).unwrap();
    let state = world.root.join("run.json");
    fs::write(&state, json!({"slug": "run"}).to_string()).unwrap();
    let detect = |stdout: &str| {
        let log = world.root.join("out.log");
        fs::write(&log, stdout).unwrap();
        let out = world
            .berth()
            .args(["detect", "--no-count", "--learned"])
            .arg(&learned)
            .arg("--stdout")
            .arg(&log)
            .arg(&state)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Over a short text the pattern holds little, and matches: it is a real pattern.
    let (code, stdout, _) = detect("aaaa");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("HEAVY"), "{stdout}");
    let (code, stdout, stderr) = detect(&"a".repeat(4096));
    assert!(
        stderr.contains("learned pattern 0") || code != Some(0),
        "the worker died of pattern 0 and `berth detect` said nothing: exit {code:?}, \
         stdout {stdout:?}, stderr {stderr:?}"
    );
}

/// One worker serves every backtracking match of a tick (of a `berth detect`), and what a
/// match held stays with it: `(?:` + `()(?:|z)`×90 + `(?=a)a)*` over 4 KiB matches on a
/// fresh worker well within its 32 MiB, but the same match again on that worker (a second
/// entry, here the same pattern under another category; in the daemon, the next run with
/// the same log) dies, so whether a pattern matches depends on what the worker matched
/// before it. The in-process engine answered both.
#[test]
fn a_match_answers_the_same_whatever_the_worker_matched_before() {
    let world = World::new();
    let pattern = format!("(?:(?:|z){}(?=a)a)*", "()(?:|z)".repeat(90));
    let entry = |category: &str| {
        json!({"category": category, "severity": "MEDIUM", "description": category,
               "matcherKind": "stdout_regex", "pattern": pattern})
    };
    let state = world.root.join("run.json");
    fs::write(&state, json!({"slug": "run"}).to_string()).unwrap();
    let log = world.root.join("out.log");
    fs::write(&log, "a".repeat(4096)).unwrap();
    let detect = |entries: serde_json::Value| {
        let learned = world.root.join("learned-patterns.json");
        fs::write(&learned, entries.to_string()).unwrap();
        let out = world
            .berth()
            .args(["detect", "--no-count", "--learned"])
            .arg(&learned)
            .arg("--stdout")
            .arg(&log)
            .arg(&state)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let alone = detect(json!([entry("SECOND")]));
    assert!(alone.contains("SECOND"), "{alone}");
    let both = detect(json!([entry("FIRST"), entry("SECOND")]));
    let fired = ["FIRST", "SECOND"].map(|category| both.contains(category));
    assert_eq!(
        fired,
        [true, true],
        "SECOND matches alone, not after FIRST on the same worker: {both}"
    );
}

/// The pattern a tick's budget ran out in goes first next tick, with a whole tick's time
/// ("first" is the budget's first match). But the rotation starts over in every run of
/// the tick while "first" is the tick's: a run read before (here a live run whose log
/// grows each tick) takes the first match, so the slow pattern, slow on the second run
/// only, is killed there again with less than a whole tick, starts the next tick again,
/// and so on forever. The pattern after it never has a turn on that run: its fault is
/// never filed (before review 38's fix the rotation moved past the killed pattern and it
/// was filed on the next tick).
#[test]
fn a_pattern_killed_on_a_later_run_does_not_hold_the_rotation_forever() {
    let _alone = IN_PROCESS_WORKERS.lock().unwrap_or_else(|e| e.into_inner());
    use berth::faults::halt_store::HaltStore;
    use berth::faults::learned::LearnedSet;
    use berth::faults::watch::watch_runs;
    use berth::rules::Rules;
    berth::faults::learned_match::worker::use_program(std::path::Path::new(env!(
        "CARGO_BIN_EXE_berth"
    )));
    let world = World::new();
    let state_dir = world.root.join("build-state");
    fs::create_dir_all(&state_dir).unwrap();
    let run = |slug: &str, log: &str| {
        let stdout = state_dir.join(format!("{slug}.log"));
        fs::write(&stdout, log).unwrap();
        let state = json!({"slug": slug, "stdoutLog": stdout});
        fs::write(state_dir.join(format!("{slug}.json")), state.to_string()).unwrap();
        stdout
    };
    // Read first: over its short log the slow pattern answers at once.
    let live = run("a-live-run", "b\n");
    // Over 4 KiB of `a` one match of the slow pattern takes ~1.4 s (debug): killed.
    run("b-slow-run", &format!("NEEDLE\n{}", "a".repeat(4096)));
    let entry = |category: &str, pattern: String| {
        json!({"category": category, "severity": "MEDIUM", "description": category,
               "matcherKind": "stdout_regex", "pattern": pattern})
    };
    let slow = format!("(?:{}(?=a)a)*c", "()".repeat(80));
    let entries = json!([entry("SLOW", slow), entry("AFTER", "NEEDLE".to_owned())]);
    let learned_path = world.root.join("learned-patterns.json");
    fs::write(&learned_path, entries.to_string()).unwrap();
    let learned = LearnedSet::load(&learned_path).unwrap();
    assert_eq!(learned.patterns.len(), 2, "{:?}", learned.warnings);
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let mut spent_by = Vec::new();
    for tick in 0..3 {
        // The live run's log grows, as a running build's does: it is matched every tick.
        fs::write(&live, "b\n".repeat(tick + 2)).unwrap();
        let report = watch_runs(&rules.current(), &state_dir, &halts, &learned);
        spent_by.push(report.learned_budget.map(|spent| spent.category));
    }
    let filed = walk(&world.root.join("skill-faults"))
        .iter()
        .filter(|file| fs::read_to_string(file).is_ok_and(|text| text.contains("AFTER")))
        .count();
    assert!(
        filed > 0,
        "AFTER matches the slow run's log but never had a turn there in 3 ticks; the \
         budget ran out in {spent_by:?}"
    );
}

/// The worker fixes glibc's mmap threshold and trims its heap after each match so that a
/// match finds the whole 32 MiB whatever ran before it (review 38's fix). What the trim
/// cannot give back stays: a match whose 16 lookaheads fill their lazy DFAs over a 4 KiB
/// plan of `0`/`1` (~30 ms) leaves ~5 MB of heap charged to `RLIMIT_DATA`, and
/// `(?:` + `()(?:|z)`×80 + `(?=a)a)*`, which matches on a fresh worker, then dies of its
/// memory limit on that worker. Whether a pattern matches still depends on what the
/// worker matched before it.
#[test]
fn a_match_finds_the_whole_limit_after_a_match_that_filled_lazy_dfas() {
    let world = World::new();
    let entry = |category: &str, kind: &str, pattern: String| {
        json!({"category": category, "severity": "MEDIUM", "description": category,
               "matcherKind": kind, "pattern": pattern})
    };
    let filler: String = (0..16)
        .map(|i| format!("(?=[01]*1[01]{{{}}})", 16 + i % 4))
        .collect();
    let heavy = format!("(?:(?:|z){}(?=a)a)*", "()(?:|z)".repeat(80));
    let state = world.root.join("run.json");
    fs::write(&state, json!({"slug": "run"}).to_string()).unwrap();
    let log = world.root.join("out.log");
    fs::write(&log, "a".repeat(4096)).unwrap();
    // A fixed pseudo-random plan of 0 and 1 (xorshift): the lookaheads' DFAs fill with it.
    let mut seed: u32 = 2_463_534_242;
    let plan_text: String = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            if seed & 1 == 1 { '1' } else { '0' }
        })
        .collect();
    let plan = world.root.join("plan.md");
    fs::write(&plan, plan_text).unwrap();
    let detect = |entries: serde_json::Value| {
        let learned = world.root.join("learned-patterns.json");
        fs::write(&learned, entries.to_string()).unwrap();
        let out = world
            .berth()
            .args(["detect", "--no-count", "--learned"])
            .arg(&learned)
            .arg("--plan")
            .arg(&plan)
            .arg("--stdout")
            .arg(&log)
            .arg(&state)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let alone = detect(json!([entry("HEAVY", "stdout_regex", heavy.clone())]));
    assert!(
        alone.contains("HEAVY") && !alone.contains("died"),
        "{alone}"
    );
    let both = detect(json!([
        entry("FILLER", "plan_regex", filler),
        entry("HEAVY", "stdout_regex", heavy)
    ]));
    let heavy_fired = both
        .lines()
        .any(|line| line.contains("HEAVY") && !line.contains("detector error"));
    assert!(
        both.contains("FILLER") && heavy_fired,
        "HEAVY matches on a fresh worker, not after FILLER on the same one: {both}"
    );
}
