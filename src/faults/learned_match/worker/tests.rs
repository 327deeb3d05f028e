use super::*;
use crate::faults::learned_match::Regex;

/// The test the harness runs as a worker ([`worker_command`]).
pub(super) const WORKER_TEST: &str =
    "faults::learned_match::worker::tests::serves_as_the_worker_when_started_as_one";
/// Set only in a worker's environment.
pub(super) const WORKER_ENV: &str = "BERTH_TEST_LEARNED_REGEX_WORKER";

/// Not a test: the worker's entry under `cargo test`, where the binary is the harness
/// (ignored, so only a worker runs it; run by hand it returns).
#[test]
#[ignore = "the learned-regex worker's entry under the test harness, not a test"]
fn serves_as_the_worker_when_started_as_one() {
    if std::env::var_os(WORKER_ENV).is_some() {
        std::process::exit(i32::from(serve() != ExitCode::SUCCESS));
    }
}

/// The rewritten pattern of a backtracking learned pattern.
fn rewritten(pattern: &str) -> Box<str> {
    match Regex::compile(pattern).unwrap() {
        Regex::Backtracking { pattern, .. } => pattern,
        Regex::Linear(_) => panic!("{pattern} compiled for the linear engine"),
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// Whether process `pid` exists (a zombie does).
fn exists(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, None).is_ok()
}

#[test]
fn one_worker_answers_every_match_of_its_caller_and_is_gone_with_it() {
    let mut worker = Worker::default();
    assert_eq!(worker.pid(), None, "nothing runs before a match");
    let pattern = rewritten(r"ECONN(?=RESET)");
    assert_eq!(
        worker.answer(&pattern, b"x ECONNRESET", soon()),
        Answer::Matched(true)
    );
    assert_eq!(
        worker.answer(&pattern, b"x ECONNREFUSED", soon()),
        Answer::Matched(false)
    );
    let other = rewritten(r"(a)\1");
    assert_eq!(worker.answer(&other, b"xaa", soon()), Answer::Matched(true));
    assert_eq!(
        worker.counts,
        Counts {
            started: 1,
            answered: 3,
            died: 0,
            killed: 0,
            retired: 0
        }
    );
    let pid = worker.pid().unwrap();
    assert!(exists(pid));
    drop(worker);
    assert!(
        !exists(pid),
        "the worker was killed and reaped with its caller"
    );
}

/// 300 `()(?:|z)` in a repeated body held 58.9 MB in one match in the daemon (review
/// b35); on the worker it dies at its limit, that match does not match, and the next match
/// starts a new worker.
#[test]
fn a_match_past_the_workers_memory_limit_kills_only_its_worker() {
    let mut worker = Worker::default();
    let pattern = rewritten(&format!("(?:(?:|z){}(?=a)a)*", "()(?:|z)".repeat(300)));
    assert_eq!(
        worker.answer(&pattern, "a".repeat(4096).as_bytes(), soon()),
        Answer::Died
    );
    // The same pattern over a short text holds little, and matches.
    assert_eq!(
        worker.answer(&pattern, b"aaaa", soon()),
        Answer::Matched(true)
    );
    assert_eq!(
        worker.counts,
        Counts {
            started: 2,
            answered: 1,
            died: 1,
            killed: 0,
            retired: 0
        }
    );
}

/// `(?:` + `()`×80 + `(?=a)a)*c` over 4 KiB took 1.38 s in one match (debug, review b35);
/// the worker is killed at the deadline and the match answers no match.
#[test]
fn a_match_past_its_deadline_is_killed() {
    let mut worker = Worker::default();
    let pattern = rewritten(&format!("(?:{}(?=a)a)*c", "()".repeat(80)));
    let until = Instant::now() + Duration::from_millis(50);
    assert_eq!(
        worker.answer(&pattern, "a".repeat(4096).as_bytes(), until),
        Answer::Killed
    );
    assert_eq!(worker.counts.killed, 1);
    assert_eq!(worker.pid(), None);
}

/// A request longer than a loaded pattern and a window can be is refused unread.
#[test]
fn the_worker_reads_no_request_past_its_bounds() {
    let mut worker = Worker::default();
    let pattern = rewritten(r"ECONN(?=RESET)");
    let text = "a".repeat(BACKTRACKING_WINDOW_BYTES + 1);
    assert_eq!(
        worker.answer(&pattern, text.as_bytes(), soon()),
        Answer::Died
    );
    let long = "a".repeat(MAX_REWRITTEN_BYTES + 1);
    assert_eq!(worker.answer(&long, b"a", soon()), Answer::Died);
    assert_eq!(worker.counts.started, 2);
}

/// A worker gone between two matches (killed from outside) fails only the next match, as
/// an error, never a signal, and the one after starts a new worker.
#[test]
fn a_worker_gone_between_matches_fails_one_match_and_is_replaced() {
    let mut worker = Worker::default();
    let pattern = rewritten(r"ECONN(?=RESET)");
    assert_eq!(
        worker.answer(&pattern, b"ECONNRESET", soon()),
        Answer::Matched(true)
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(worker.pid().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(worker.answer(&pattern, b"ECONNRESET", soon()), Answer::Died);
    assert_eq!(
        worker.answer(&pattern, b"ECONNRESET", soon()),
        Answer::Matched(true)
    );
    assert_eq!((worker.counts.started, worker.counts.died), (2, 1));
}

/// A match whose 16 lookaheads fill their lazy DFAs over 4 KiB of `0`/`1` left glibc
/// holding ~5 MB of the worker's heap that no trim gives back (review 39): that worker
/// says so in its answer and ends, and the next match runs on a fresh one with the whole
/// limit. Small matches (the first test) leave a worker running.
#[test]
fn a_worker_a_match_left_holding_memory_ends_after_answering() {
    let mut worker = Worker::default();
    let filler: String = (0..16)
        .map(|i| format!("(?=[01]*1[01]{{{}}})", 16 + i % 4))
        .collect();
    let filler = rewritten(&filler);
    // A fixed pseudo-random text of 0 and 1 (xorshift).
    let mut seed: u32 = 2_463_534_242;
    let plan: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            b'0' + u8::from(seed & 1 == 1)
        })
        .collect();
    assert_eq!(worker.answer(&filler, &plan, soon()), Answer::Matched(true));
    assert_eq!(
        (worker.counts.retired, worker.pid()),
        (1, None),
        "the worker ended after the match that left it holding memory"
    );
    let small = rewritten(r"ECONN(?=RESET)");
    assert_eq!(
        worker.answer(&small, b"ECONNRESET", soon()),
        Answer::Matched(true)
    );
    assert_eq!((worker.counts.started, worker.counts.died), (2, 0));
}
