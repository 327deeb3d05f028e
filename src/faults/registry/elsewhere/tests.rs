use super::super::{ActiveFault, Registry, name, save};
use super::*;

/// The look of run `run` from its state file `own` (its own registry the one left out),
/// asking about fault `asked`.
fn look(reads: &mut PassReads, dir: &PrivateDir, own: &str, asked: &str) -> Elsewhere {
    raised_elsewhere(
        reads,
        dir,
        ("run", &name("run", own)),
        &HashSet::from([asked]),
    )
}

/// A temp dir and its `active-faults/`.
fn active_faults() -> (tempfile::TempDir, PrivateDir) {
    let root = tempfile::tempdir().unwrap();
    let dir = PrivateDir::ensure(root.path(), "active-faults").unwrap();
    (root, dir)
}

/// A state file `live.json` in `root`, as a registry's source names it: its path.
fn live_state(root: &std::path::Path) -> String {
    let state = root.join("live.json");
    std::fs::write(&state, "{}").unwrap();
    state.display().to_string()
}

/// Empty files under the names of `run`'s registries for state files `/s/<n>.json`.
fn empty_names(dir: &PrivateDir, run: &str, numbers: std::ops::Range<usize>) {
    for n in numbers {
        std::fs::write(dir.join(name(run, &format!("/s/{n}.json"))), "").unwrap();
    }
}

/// Empty files under names of the run cost no bytes of the budget, but each is kept (with
/// why it is no registry): past the pass's file count the rest are left unread, and
/// counted so, which keeps a clear raised.
#[test]
fn files_past_the_pass_count_are_left_unread() {
    let (_root, dir) = active_faults();
    empty_names(&dir, "run", 0..3);
    let mut reads = PassReads {
        max_files: 2,
        ..PassReads::default()
    };
    let elsewhere = look(&mut reads, &dir, "/s/own.json", "K:s:00000000");
    assert_eq!(reads.by_stamp.len(), 2);
    let unread = elsewhere.unread();
    assert_eq!(unread.len(), 3, "{unread:?}");
    assert!(
        unread[2].contains(": 1 registries of the run not read"),
        "{unread:?}"
    );
}

/// A FIFO berth refuses to open, hard-linked under three names of the run: no handle
/// stamps it, yet it is kept once a pass and said once a look, with its other names.
#[test]
fn a_refused_file_under_many_names_is_kept_once_and_said_once() {
    let (_root, dir) = active_faults();
    let first = dir.join(name("run", "/s/0.json"));
    nix::unistd::mkfifo(&first, nix::sys::stat::Mode::S_IRWXU).unwrap();
    for n in 1..3 {
        std::fs::hard_link(&first, dir.join(name("run", &format!("/s/{n}.json")))).unwrap();
    }
    let mut reads = PassReads::default();
    let elsewhere = look(&mut reads, &dir, "/s/own.json", "K:s:00000000");
    assert_eq!(reads.by_stamp.len(), 1);
    let unread = elsewhere.unread();
    assert_eq!(unread.len(), 1, "{unread:?}");
    assert!(
        unread[0].contains("a FIFO") && unread[0].ends_with("(the same file under 2 more names)"),
        "{unread:?}"
    );
}

/// Distinct registries of the run past what one look reads: those left unread may hold
/// the fault, so the look says so, once, and a clear keeps the fault raised.
#[test]
fn registries_of_a_run_past_the_looks_read_budget_count_as_unread_once() {
    let (root, dir) = active_faults();
    let state = live_state(root.path());
    let per_file = MAX_JSON_BYTES - 400;
    let files = (MAX_ELSEWHERE_READ_BYTES / per_file + 2) as usize;
    for n in 0..files {
        let registry = Registry {
            run_id: "run".into(),
            source: state.clone(),
            updated_at: "x".repeat(per_file as usize - 200),
            ..Registry::default()
        };
        save(&dir, &name("run", &format!("/s/{n}.json")), &registry).unwrap();
    }
    let elsewhere = look(
        &mut PassReads::default(),
        &dir,
        "/s/own.json",
        "K:s:00000000",
    );
    assert!(!elsewhere.contains("K:s:00000000"));
    assert_eq!(elsewhere.unread().len(), 1, "{:?}", elsewhere.unread());
    assert!(
        elsewhere.unread()[0].contains("not read"),
        "{:?}",
        elsewhere.unread()
    );
}

/// Two state files of a run change in one pass, each asking about its own fault: the
/// second look is answered about its fault too, not only about what the first asked
/// (the pass keeps only asked ids, so it reads the registry again for a new one).
#[test]
fn a_second_look_of_a_run_in_one_pass_learns_of_faults_the_first_did_not_ask_about() {
    let (root, dir) = active_faults();
    let state = live_state(root.path());
    let fault = |id: &str| ActiveFault {
        fault_id: id.into(),
        first_detected_at: String::new(),
    };
    let registry = Registry {
        run_id: "run".into(),
        source: state,
        updated_at: String::new(),
        active: [
            ("a".into(), fault("K:s:0000000a")),
            ("b".into(), fault("K:s:0000000b")),
        ]
        .into(),
    };
    save(&dir, &name("run", "/s/held.json"), &registry).unwrap();
    let mut reads = PassReads::default();
    let first = look(&mut reads, &dir, "/s/one.json", "K:s:0000000a");
    assert!(first.contains("K:s:0000000a") && !first.contains("K:s:0000000b"));
    let second = look(&mut reads, &dir, "/s/two.json", "K:s:0000000b");
    assert!(second.contains("K:s:0000000b"), "{second:?}");
    assert!(second.unread().is_empty(), "{second:?}");
}

/// Two runs each with more than `MAX_NAMES_PER_LISTING` registries in
/// one pass. The cut line names the dir only, so its text is the same for both runs: the
/// second run's cut (a different problem, its own registries left unread, its faults kept
/// raised) must still be said in the pass.
#[test]
fn a_second_runs_listing_cut_is_said_in_the_same_pass() {
    let (_root, dir) = active_faults();
    for run in ["a", "b"] {
        empty_names(&dir, run, 0..MAX_NAMES_PER_LISTING + 1);
    }
    let asked = HashSet::from(["K:s:00000000"]);
    let mut reads = PassReads::default();
    let a = raised_elsewhere(&mut reads, &dir, ("a", &name("a", "/s/own.json")), &asked);
    let said_a: Vec<String> = reads.unsaid(&a).into_iter().map(str::to_owned).collect();
    assert!(
        said_a.iter().any(|l| l.contains("more than")),
        "run a's cut said"
    );
    let b = raised_elsewhere(&mut reads, &dir, ("b", &name("b", "/s/own.json")), &asked);
    assert!(
        b.unread().iter().any(|l| l.contains("more than")),
        "run b's look finds its cut"
    );
    let said_b = reads.unsaid(&b);
    assert!(
        said_b.iter().any(|l| l.contains("more than")),
        "run b's own listing cut (its registries left unread, its faults kept raised) is never said this pass; b's unread lines: {}, said: {}",
        b.unread().len(),
        said_b.len()
    );
}

/// A look of another run that left its registries unread past the budget says how many
/// it left, even after a first run's look said its own count (docs/limits.md).
#[test]
fn another_runs_count_left_past_the_budget_is_said_in_the_same_pass() {
    let (_root, dir) = active_faults();
    empty_names(&dir, "x", 0..3);
    empty_names(&dir, "a", 0..1);
    empty_names(&dir, "b", 0..2);
    let asked = HashSet::from(["K:s:00000000"]);
    let mut reads = PassReads {
        max_files: 3,
        ..PassReads::default()
    };
    // Run x's look (a raise: nothing kept raised, nothing said) fills the pass's files.
    let _x = raised_elsewhere(&mut reads, &dir, ("x", &name("x", "/s/own.json")), &asked);
    let a = raised_elsewhere(&mut reads, &dir, ("a", &name("a", "/s/own.json")), &asked);
    assert_eq!(reads.unsaid(&a).len(), 1, "{:?}", a.unread());
    let b = raised_elsewhere(&mut reads, &dir, ("b", &name("b", "/s/own.json")), &asked);
    assert_eq!(b.unread().len(), 1, "{:?}", b.unread());
    assert!(
        b.unread()[0].contains(": 2 registries of the run not read"),
        "{:?}",
        b.unread()
    );
    let said_b = reads.unsaid(&b);
    assert_eq!(
        said_b.len(),
        1,
        "run b's look left 2 of its registries unread (its faults kept raised) and says nothing of them: {:?}",
        b.unread()
    );
}
