//! The worker process a tick's backtracking matches run on: started at the first, one for
//! all of them, gone with the tick's budget; a match it dies of or is killed in does not
//! match and is reported by index.

use super::*;

/// `patterns` as stdout regexes, compiled together.
fn stdout_regexes(patterns: &[&str]) -> Compiled {
    let matchers = patterns
        .iter()
        .map(|pattern| Matcher::Regex(Field::Stdout, Regex::compile(pattern).unwrap()));
    Compiled::build(matchers.zip(patterns.iter().copied())).unwrap()
}

/// One tick's answers of `patterns` over `stdout` within `budget`.
fn tick(patterns: &[&str], stdout: &str, budget: &mut Budget) -> Vec<bool> {
    let texts = Texts {
        stdout: Some(stdout),
        ..Texts::default()
    };
    let state = Document::new(json!({}));
    let none = RunAnswers::default();
    stdout_regexes(patterns)
        .hits(patterns, &texts, &state, budget, &none)
        .hit
}

#[test]
fn a_ticks_backtracking_matches_share_one_worker_gone_with_the_tick() {
    let patterns = [r"ECONN(?=RESET)", "ECONN", r"(E)\1?CONN", r"(?<!x)RESET"];
    let mut budget = Budget::for_tick();
    let hit = tick(&patterns, "ECONNRESET", &mut budget);
    assert_eq!(hit, [true; 4]);
    let counts = budget.worker.counts;
    assert_eq!((counts.started, counts.answered), (1, 3));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(budget.worker.pid().unwrap()).unwrap());
    assert!(nix::sys::signal::kill(pid, None).is_ok());
    drop(budget);
    assert!(
        nix::sys::signal::kill(pid, None).is_err(),
        "no process is left after the tick"
    );
}

#[test]
fn no_worker_runs_while_no_backtracking_pattern_matches() {
    let patterns = ["ECONN", "^$", "RESET$"];
    let mut budget = Budget::for_tick();
    let hit = tick(&patterns, "ECONNRESET", &mut budget);
    assert_eq!(hit, [true, false, true]);
    assert_eq!(
        (budget.worker.counts.started, budget.worker.pid()),
        (0, None)
    );
}

/// 300 `()(?:|z)` in a repeated body held 58.9 MB in one match (review b35): its worker
/// dies at its memory limit, the pattern does not match and is named; the next pattern
/// gets a new worker.
#[test]
fn a_match_its_worker_dies_of_is_no_match_and_named() {
    let heavy = format!("(?:(?:|z){}(?=a)a)*", "()(?:|z)".repeat(300));
    let patterns = [r"a(?=a)", heavy.as_str(), r"(?<=a)a"];
    let mut budget = Budget::for_tick();
    let stdout = "a".repeat(4096);
    let hit = tick(&patterns, &stdout, &mut budget);
    assert_eq!(hit, [true, false, true]);
    assert_eq!(budget.died, [1]);
    let counts = budget.worker.counts;
    assert_eq!((counts.started, counts.answered, counts.died), (2, 2, 1));
}

/// `(?:` + `()`×80 + `(?=a)a)*c` took 1.38 s in one match (debug, review b35): reached
/// after another match, with what is left of the tick's budget, its worker is killed at
/// the deadline; the match keeps its last answer (a budget cut never clears a learned fault:
/// review 38 found it answered "no match"), the pattern is the one named for the budget,
/// and the next tick starts with it, which then has a whole tick's time.
#[test]
fn a_match_killed_at_the_ticks_budget_keeps_its_last_answer_and_goes_first_next() {
    let slow = format!("(?:{}(?=a)a)*c", "()".repeat(80));
    let patterns = [r"a(?=a)", slow.as_str(), "^a"];
    let compiled = stdout_regexes(&patterns);
    let stdout = "a".repeat(4096);
    let texts = Texts {
        stdout: Some(&stdout),
        ..Texts::default()
    };
    let state = Document::new(json!({}));
    // The tick's 50 ms, made 400: the first match (a worker's start and an answer) must
    // end within it on a loaded machine too; the slow one still runs past it by far.
    let mut budget = Budget::of(std::time::Duration::from_millis(400));
    let last = RunAnswers {
        hit: vec![false, true, false],
        next: 0,
    };
    let now = compiled.hits(&patterns, &texts, &state, &mut budget, &last);
    assert_eq!(
        now.hit,
        [true, true, false],
        "the killed match and the one left out kept their last answers"
    );
    assert_eq!(
        (budget.exhausted, budget.killed.as_slice()),
        (
            Some(Exhausted {
                index: 1,
                skipped: 1
            }),
            [1].as_slice()
        )
    );
    assert_eq!(
        (budget.worker.counts.killed, budget.worker.pid()),
        (1, None)
    );
    drop(budget);
    assert_eq!(
        now.next, 1,
        "the run's next pass starts with the pattern the deadline stopped"
    );
}

/// A tick where no worker could start (the state `Worker::answer` leaves after a failed
/// start: fork refused at a pid limit, no descriptor left for its socket, `/proc` hidden)
/// answers "no match" for every backtracking pattern, said in a warning. The run cache
/// then keeps that answer as the run's, as if the log had been read and matched, so once
/// workers start again the run's learned fault stays cleared until one of its files
/// changes; run_cache.rs keeps no answer a system failure made ("`EMFILE`, `ENOMEM`,
/// `EIO`…: tried again") nor one the tick's budget cut short.
#[test]
fn a_tick_without_a_worker_is_not_kept_as_the_runs_answer() {
    use crate::faults::learned::LearnedSet;
    use crate::faults::run_cache::RunCache;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    std::fs::write(&log, "x ECONNRESET\n").unwrap();
    let file = dir.path().join("run.json");
    let state = json!({"slug": "r", "stdoutLog": log.to_str().unwrap()});
    std::fs::write(&file, state.to_string()).unwrap();
    let learned_path = dir.path().join("learned-patterns.json");
    let entries = json!([{"category": "RESET_SEEN", "severity": "HIGH", "description": "d",
        "matcherKind": "stdout_regex", "pattern": "ECONN(?=RESET)"}]);
    std::fs::write(&learned_path, entries.to_string()).unwrap();
    crate::file_stamp::age_past_racy_window();
    let learned = LearnedSet::load(&learned_path).unwrap();
    let rules = crate::rules::Rules::embedded().unwrap();
    let set = rules.current();
    let cache = RunCache::default();
    let doc = std::sync::Arc::new(Document::new(state));
    let answer = |budget: &mut Budget| {
        let answer = cache.answer(&file, &doc, &set, &learned, budget);
        let fired = answer
            .outcome
            .faults
            .iter()
            .any(|f| f.category == "RESET_SEEN");
        (answer.detectors_ran, fired)
    };
    let mut no_worker = Budget::for_tick();
    no_worker.worker.failed = Some(worker::WorkerError::NoProgram);
    assert_eq!(answer(&mut no_worker), (true, false));
    let mut working = Budget::for_tick();
    assert_eq!(
        answer(&mut working),
        (true, true),
        "(detectors ran, learned fault fired) on the next tick, a worker starting again"
    );
}

/// Under the budget cut `every_pattern_runs_across_ticks_under_a_budget_cut_while_hits_are_written`
/// (learned/source.rs) uses, a tick runs one regex to its end and the next tick starts
/// after it, so "every pattern gets its turn" (docs/faults.md). A backtracking pattern
/// reached with less time left than its worker takes to start is killed before it is
/// asked, the tick ends on it, and the next tick starts after it: its turn never comes.
/// Here, over three rounds of the patterns, the linear one answered every round and the
/// backtracking ones never did.
#[test]
fn a_backtracking_pattern_gets_its_turn_across_ticks_under_a_budget_cut() {
    let patterns = [r"(?<!y)x|never0", r"x(?!y)|never1", "x|never2"];
    let compiled = stdout_regexes(&patterns);
    let texts = Texts {
        stdout: Some("x"),
        ..Texts::default()
    };
    let state = Document::new(json!({}));
    let mut answered = [0usize; 3];
    let mut last = RunAnswers {
        hit: vec![false; 3],
        next: 0,
    };
    for _tick in 0..3 * patterns.len() {
        let mut cut = Budget::of(std::time::Duration::from_nanos(1));
        let now = compiled.hits(&patterns, &texts, &state, &mut cut, &last);
        for (count, (now, before)) in answered.iter_mut().zip(now.hit.iter().zip(&last.hit)) {
            *count += usize::from(*now && !before);
        }
        last = now;
    }
    assert_eq!(
        (last.hit, answered.map(|n| n > 0)),
        (vec![true; 3], [true; 3]),
        "(answers after 3 rounds of ticks, whether each ever answered a match)"
    );
}
