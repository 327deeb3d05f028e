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

/// The fault watch over a build-state dir in a temp world, on berth's real worker, alone
/// among this process's tests that run workers.
struct Watch {
    world: World,
    state_dir: std::path::PathBuf,
    halts: berth::faults::halt_store::HaltStore,
    rules: berth::rules::Rules,
    _alone: std::sync::MutexGuard<'static, ()>,
}

impl Watch {
    fn new() -> Watch {
        let alone = IN_PROCESS_WORKERS.lock().unwrap_or_else(|e| e.into_inner());
        berth::faults::learned_match::worker::use_program(std::path::Path::new(env!(
            "CARGO_BIN_EXE_berth"
        )));
        let world = World::new();
        let state_dir = world.root.join("build-state");
        fs::create_dir_all(&state_dir).unwrap();
        let halts = berth::faults::halt_store::HaltStore::new(world.root.join("skill-faults"));
        Watch {
            world,
            state_dir,
            halts,
            rules: berth::rules::Rules::embedded().unwrap(),
            _alone: alone,
        }
    }

    /// A run `slug` whose stdout log holds `log`; the log's path.
    fn run(&self, slug: &str, log: &str) -> std::path::PathBuf {
        let stdout = self.state_dir.join(format!("{slug}.log"));
        fs::write(&stdout, log).unwrap();
        let state = json!({"slug": slug, "stdoutLog": stdout});
        fs::write(
            self.state_dir.join(format!("{slug}.json")),
            state.to_string(),
        )
        .unwrap();
        stdout
    }

    /// The learned file of `(category, pattern)` stdout regexes, loaded whole.
    fn learned(&self, patterns: &[(&str, String)]) -> berth::faults::learned::LearnedSet {
        let entries: Vec<serde_json::Value> = patterns
            .iter()
            .map(|(category, pattern)| {
                json!({"category": category, "severity": "MEDIUM", "description": category,
                       "matcherKind": "stdout_regex", "pattern": pattern})
            })
            .collect();
        let path = self.world.root.join("learned-patterns.json");
        fs::write(&path, serde_json::Value::from(entries).to_string()).unwrap();
        let learned = berth::faults::learned::LearnedSet::load(&path).unwrap();
        assert_eq!(
            learned.patterns.len(),
            patterns.len(),
            "{:?}",
            learned.warnings
        );
        learned
    }

    /// One fault-watch pass.
    fn pass(
        &self,
        learned: &berth::faults::learned::LearnedSet,
    ) -> berth::faults::watch::WatchReport {
        berth::faults::watch::watch_runs(
            &self.rules.current(),
            &self.state_dir,
            &self.halts,
            learned,
        )
    }

    /// How many files of the halt dir name `category`.
    fn filed(&self, category: &str) -> usize {
        walk(&self.world.root.join("skill-faults"))
            .iter()
            .filter(|file| fs::read_to_string(file).is_ok_and(|text| text.contains(category)))
            .count()
    }
}

/// `berth detect` of the run whose state file is `state`, with the learned file `learned`
/// and each `(flag, file)` of `texts` (`--stdout`, `--plan`).
fn detect(
    world: &World,
    learned: &std::path::Path,
    texts: &[(&str, &std::path::Path)],
    state: &std::path::Path,
) -> std::process::Output {
    let mut command = world.berth();
    command
        .args(["detect", "--no-count", "--learned"])
        .arg(learned);
    for (flag, file) in texts {
        command.arg(flag).arg(file);
    }
    command.arg(state).output().unwrap()
}

/// 300 `()(?:|z)` in a repeated body held 58.9 MB in one match in the daemon (review b35).
#[test]
fn a_pattern_the_worker_dies_of_is_named_and_the_others_still_match() {
    let watch = Watch::new();
    watch.run("heavy-run", &"a".repeat(4096));
    let heavy = format!("(?:(?:|z){}(?=a)a)*", "()(?:|z)".repeat(300));
    let learned = watch.learned(&[("HEAVY", heavy), ("LIGHT", "a(?=a)".to_owned())]);
    let report = watch.pass(&learned);
    let named: Vec<&String> = report
        .problems
        .iter()
        .filter(|problem| problem.starts_with("learned pattern 0 (HEAVY)"))
        .collect();
    assert_eq!(named.len(), 1, "{:?}", report.problems);
    assert!(
        watch.filed("LIGHT") > 0 && watch.filed("HEAVY") == 0,
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
    let detect_over = |stdout: &str| {
        let log = world.root.join("out.log");
        fs::write(&log, stdout).unwrap();
        let out = detect(&world, &learned, &[("--stdout", &log)], &state);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Over a short text the pattern holds little, and matches: it is a real pattern.
    let (code, stdout, _) = detect_over("aaaa");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("HEAVY"), "{stdout}");
    let (code, stdout, stderr) = detect_over(&"a".repeat(4096));
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
    let detect_with = |entries: serde_json::Value| {
        let learned = world.root.join("learned-patterns.json");
        fs::write(&learned, entries.to_string()).unwrap();
        let out = detect(&world, &learned, &[("--stdout", &log)], &state);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let alone = detect_with(json!([entry("SECOND")]));
    assert!(alone.contains("SECOND"), "{alone}");
    let both = detect_with(json!([entry("FIRST"), entry("SECOND")]));
    let fired = ["FIRST", "SECOND"].map(|category| both.contains(category));
    assert_eq!(
        fired,
        [true, true],
        "SECOND matches alone, not after FIRST on the same worker: {both}"
    );
}

/// A pattern the budget stopped with less than a whole tick starts its run's next pass,
/// and has the whole tick when that run's turn at a tick's first match comes. Review 39:
/// with one rotation for all runs while "first" was the tick's, a run read before (here a
/// live run whose log grows each tick) took every tick's first match, so the slow pattern,
/// slow on the second run only, was killed there with less than a whole tick every tick,
/// and the pattern after it never had a turn on that run: its fault was never filed.
#[test]
fn a_pattern_killed_on_a_later_run_does_not_hold_the_rotation_forever() {
    let watch = Watch::new();
    // Read first: over its short log the slow pattern answers at once.
    let live = watch.run("a-live-run", "b\n");
    // Over 4 KiB of `a` one match of the slow pattern takes ~1.4 s (debug): killed.
    watch.run("b-slow-run", &format!("NEEDLE\n{}", "a".repeat(4096)));
    let slow = format!("(?:{}(?=a)a)*c", "()".repeat(80));
    let learned = watch.learned(&[("SLOW", slow), ("AFTER", "NEEDLE".to_owned())]);
    let mut spent_by = Vec::new();
    for tick in 0..3 {
        // The live run's log grows, as a running build's does: it is matched every tick.
        fs::write(&live, "b\n".repeat(tick + 2)).unwrap();
        let report = watch.pass(&learned);
        spent_by.push(report.learned_budget.map(|spent| spent.category));
    }
    assert!(
        watch.filed("AFTER") > 0,
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
    let detect_with = |entries: serde_json::Value| {
        let learned = world.root.join("learned-patterns.json");
        fs::write(&learned, entries.to_string()).unwrap();
        let texts = [("--plan", plan.as_path()), ("--stdout", &log)];
        let out = detect(&world, &learned, &texts, &state);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let alone = detect_with(json!([entry("HEAVY", "stdout_regex", heavy.clone())]));
    assert!(
        alone.contains("HEAVY") && !alone.contains("died"),
        "{alone}"
    );
    let both = detect_with(json!([
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
