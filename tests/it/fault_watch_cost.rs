//! The fault watch over an unchanged build-state dir costs what changed: no state file
//! parsed, no attachment read, no detector run again (docs/limits.md).

use std::fs;
use std::time::Duration;

use berth::faults::halt_store::HaltStore;
use berth::faults::learned::LearnedSet;
use berth::faults::watch::{WatchReport, watch_runs};
use berth::rules::{RuleSet, Rules};

use crate::faults::fixture_path;
use crate::memory::{in_own_process, status_kib, trim_and_reset_peak};
use crate::support::World;

/// How many times `path` is read (inotify `IN_ACCESS`: a `read` of its data; opening it or
/// taking its stamp is not one) while `f` runs.
pub(crate) fn reads_of(path: &std::path::Path, f: impl FnOnce()) -> usize {
    events_on(path, nix::libc::IN_ACCESS, false, f)
}

/// How many times the directory `dir` itself is opened (to be listed) while `f` runs; the
/// opens of the files in it are not counted.
fn listings_of(dir: &std::path::Path, f: impl FnOnce()) -> usize {
    events_on(dir, nix::libc::IN_OPEN, true, f)
}

/// How many inotify events of `mask` `path` sees while `f` runs (`own_only`: only those
/// about `path` itself, not about a file in it). Identical consecutive events coalesce.
fn events_on(path: &std::path::Path, mask: u32, own_only: bool, f: impl FnOnce()) -> usize {
    use nix::libc;
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscalls on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        assert!(fd >= 0);
        assert!(libc::inotify_add_watch(fd, c_path.as_ptr(), mask) >= 0);
        f();
        let mut count = 0;
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            let mut at = 0usize;
            while at < n as usize {
                let event = buf
                    .as_ptr()
                    .add(at)
                    .cast::<libc::inotify_event>()
                    .read_unaligned();
                assert_eq!(
                    event.mask & libc::IN_Q_OVERFLOW,
                    0,
                    "inotify queue overflowed"
                );
                if event.mask & mask != 0 && (!own_only || event.len == 0) {
                    count += 1;
                }
                at += std::mem::size_of::<libc::inotify_event>() + event.len as usize;
            }
        }
        libc::close(fd);
        count
    }
}

/// A build-state dir in a world of its own, and what a pass of the fault watch over it
/// reads: the halt store, the embedded rules, no learned patterns.
struct StateDir {
    world: World,
    dir: std::path::PathBuf,
    halts: HaltStore,
    set: std::sync::Arc<RuleSet>,
    learned: LearnedSet,
}

impl StateDir {
    fn new() -> StateDir {
        let world = World::new();
        let dir = world.root.join("build-state");
        fs::create_dir_all(&dir).unwrap();
        let halts = HaltStore::new(world.root.join("skill-faults"));
        StateDir {
            world,
            dir,
            halts,
            set: Rules::embedded().unwrap().current(),
            learned: LearnedSet::default(),
        }
    }

    /// One pass of the fault watch over the dir.
    fn pass(&self) -> WatchReport {
        watch_runs(&self.set, &self.dir, &self.halts, &self.learned)
    }
}

/// Scenario: the build-state dir holds run state files and gstack's
/// `plan-review-report.json` (capped at 8 MiB). Read and parsed again for every state file
/// on every tick, watcher wakes included, 20 state files and an 8 MiB report would cost
/// 160 MiB of JSON parsing per tick over an unchanged dir.
#[test]
fn a_tick_over_an_unchanged_build_state_dir_does_not_read_the_review_report_again() {
    let state = StateDir::new();
    for n in 0..3 {
        fs::copy(fixture_path(), state.dir.join(format!("run{n}.json"))).unwrap();
    }
    let report = state.dir.join("plan-review-report.json");
    fs::write(&report, r#"{"round": 1}"#).unwrap();
    let first = reads_of(&report, || {
        state.pass();
    });
    assert!(first > 0, "the first pass reads the report");
    // Until the files' stamps are old enough to trust, a pass reads them again.
    let settled = state.world.wait_for(Duration::from_secs(60), || {
        let pass = state.pass();
        (pass.parsed, pass.detected) == (0, 0)
    });
    assert!(settled, "every pass over the unchanged dir read it again");
    let again = reads_of(&report, || {
        state.pass();
        state.pass();
    });
    assert_eq!(
        again, 0,
        "two passes over the unchanged dir read the unchanged review report again ({again} IN_ACCESS events; identical queued events coalesce)"
    );
}

/// Scenario: a producer writes 8 run state files of 60,000 phases each (~2 MB, under the
/// 4 MiB cap) and never touches them again. Running every detector over every state again
/// on every tick and watcher wake (each call up to its 250 ms limit) would cost files ×
/// detectors × 250 ms per wake.
#[test]
fn a_pass_over_an_unchanged_build_state_dir_costs_what_changed() {
    let state_dir = StateDir::new();
    let phase = serde_json::json!({"codexReview": {"iterations": 0}, "testFix": {"iterations": 0}});
    let state = serde_json::json!({"slug": "big", "phases": vec![phase; 60_000]}).to_string();
    for n in 0..8 {
        fs::write(state_dir.dir.join(format!("run{n}.json")), &state).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let first = state_dir.pass();
    assert_eq!(
        first.detected, 8,
        "the first pass runs the detectors over every run"
    );
    // Tests share the daemon's caches, and another test's pass over its own dir may evict
    // these runs between two passes: one of five passes must run no detector at all.
    let passes: Vec<_> = (0..5).map(|_| state_dir.pass()).collect();
    assert!(
        passes
            .iter()
            .any(|pass| pass.parsed == 0 && pass.detected == 0),
        "every pass over the unchanged dir ran detectors again (parsed, detected per pass: {:?})",
        passes
            .iter()
            .map(|pass| (pass.parsed, pass.detected))
            .collect::<Vec<_>>()
    );
}

/// Scenario: a producer (or a crashed orchestrator) leaves a 3 MiB state file that is not
/// valid JSON (cut short before its closing brace), under the 4 MiB cap, and never touches
/// it again. docs/limits.md: a state file is "parsed again only when its stamp moved", and
/// the queue view keeps bad content as a file's answer until it changes. The state cache
/// forgets a file whose parse failed, so every tick and watcher wake reads and parses all
/// 3 MiB again and logs the same error again: N such files cost N x 4 MiB of parsing and N
/// log lines per tick, for ever.
#[test]
fn a_malformed_state_file_is_not_read_again_while_its_stamp_is_unchanged() {
    let state = StateDir::new();
    let torn = state.dir.join("torn.json");
    fs::write(
        &torn,
        format!(
            r#"{{"slug": "torn", "pad": "{}""#,
            "a".repeat(3 * 1024 * 1024)
        ),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let first = state.pass();
    assert!(
        first.problems.iter().any(|p| p.contains("torn.json")),
        "{first:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut problems = Vec::new();
    let again = reads_of(&torn, || {
        for _ in 0..2 {
            problems.extend(state.pass().problems);
        }
    });
    assert_eq!(
        again, 0,
        "two passes over the unchanged dir read the unchanged malformed state again ({again} IN_ACCESS events); problems reported again: {problems:?}"
    );
}

/// Scenario: the build-state dir holds 2,000 run state files (a long-lived gstack host keeps
/// its finished runs; a producer can write as many), none raising a fault, and none changes.
/// A pass over it parses nothing and runs no detector, yet it costs far more than a stat per
/// file: every run's sync lists the whole `active-faults/` dir (`raised_elsewhere`, which
/// holds a lock file per run) and both caches' `keep_only` search a Vec per entry, so the
/// pass is quadratic in the runs. Measured (debug build): ~0.4 s at 500 runs, 6-7 s at
/// 2,000, on every tick and every watcher wake, ahead of the gates and the landings. Counted
/// here: the listings of `active-faults/` one pass makes (2,000 before the fix).
#[test]
fn a_pass_over_many_unchanged_runs_costs_about_a_stat_per_run() {
    let state = StateDir::new();
    let runs = 2000;
    for n in 0..runs {
        fs::write(
            state.dir.join(format!("run{n:05}.json")),
            format!(r#"{{"slug": "run{n:05}"}}"#),
        )
        .unwrap();
    }
    // Until the files' stamps are old enough to trust, a pass parses them again.
    let settled = state
        .world
        .wait_for(Duration::from_secs(120), || state.pass().parsed == 0);
    assert!(settled, "every pass parsed some unchanged state again");
    let active = state.world.root.join("skill-faults").join("active-faults");
    assert!(active.is_dir(), "the first pass made {}", active.display());
    let mut again = None;
    let listings = listings_of(&active, || {
        again = Some(state.pass());
    });
    let again = again.unwrap();
    assert_eq!(again.runs, runs, "{again:?}");
    assert!(
        listings <= 1,
        "a pass over {runs} unchanged runs listed {} {listings} times",
        active.display()
    );
}

/// Scenario: whoever writes the build-state dir plants names there without bound (empty
/// `*.json` files: inodes, no data). Every other dir others write is listed up to 10,000
/// names (`MAX_NAMES_PER_LISTING`: the halt subdirs, a run's registries); the build-state
/// listing holds every name (twice: the sorted list and the set the caches keep), and each
/// pass, on the tick's own thread, stats and syncs each one: a million planted names are a
/// million stats and syncs a tick, ahead of the gates and the landings. docs/limits.md
/// gives no bound on the state files a pass looks at. Counted: the state files one pass
/// looked at (a run, or an unreadable state reported).
#[test]
fn a_pass_looks_at_no_more_state_files_than_a_listing_holds() {
    let state = StateDir::new();
    let planted = berth::faults::halt_store::MAX_NAMES_PER_LISTING + 2_000;
    for n in 0..planted {
        fs::File::create(state.dir.join(format!("p{n:06}.json"))).unwrap();
    }
    let pass = state.pass();
    let looked_at = pass.runs + pass.problems.len();
    assert!(
        looked_at <= berth::faults::halt_store::MAX_NAMES_PER_LISTING + 1,
        "one pass looked at {looked_at} of {planted} planted state files, e.g. {:?}",
        pass.problems.first()
    );
}

/// Scenario: the build-state dir holds six 1 MiB state files of the worst shape docs/faults.md
/// measures (`[0],[0],…`: ~110× its size once parsed). The 4 MiB cap on a state file is
/// there so that "the worst case [stays] under 512 MiB"; that held when each state was
/// parsed, used and dropped. The state cache now keeps every state file's parsed document
/// for the daemon's lifetime, so the bound is per file times the files: here ~610 MiB stays
/// resident after one pass (five 4 MiB files would keep ~2.2 GiB).
#[test]
fn parsed_state_files_kept_between_passes_stay_within_the_documented_memory_bound() {
    let rss_kib = || status_kib("VmRSS:");
    let state = StateDir::new();
    let body = format!(
        "{{\"slug\": \"w\", \"x\": [{}[0]]}}",
        "[0],".repeat(256 * 1024)
    );
    for n in 0..6 {
        fs::write(state.dir.join(format!("w{n}.json")), &body).unwrap();
    }
    drop(body);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib();
    let pass = state.pass();
    assert_eq!(pass.runs, 6, "{pass:?}");
    // Only live memory counts: what the allocator merely kept for reuse is given back.
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe {
        nix::libc::malloc_trim(0);
    }
    let kept_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        kept_mib < 512,
        "{kept_mib} MiB stay resident after one pass over six 1 MiB state files"
    );
}

/// The state cache keeps parsed states within 448 MiB by an estimate of their heap that is
/// an upper bound of what they hold: states of `{"a":{}}` items (an object per item, the
/// shape an older estimate under-counted ~1.8×) kept hold no more than their estimate, and
/// a 4 MiB `[0],[0],…` state loaded next is refused part way through its parse (past what
/// one state's parse may hold), the cache and that parse together staying under 1 GiB.
#[test]
fn the_state_cache_holds_no_more_than_its_estimate_and_one_more_parse_stays_under_1_gib() {
    if !in_own_process(
        "fault_watch_cost::the_state_cache_holds_no_more_than_its_estimate_and_one_more_parse_stays_under_1_gib",
    ) {
        return;
    }
    use berth::faults::state_file::{MAX_STATE_BYTES, STATE_CACHE_BUDGET, StateCache};
    let dir = tempfile::tempdir().unwrap();
    let unit = "{\"a\":{}},";
    let mut paths = Vec::new();
    for (n, bytes) in [4_100_000, 4_100_000, 4_100_000, 1_800_000]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("a{n}.json"));
        let body = format!(
            "{{\"slug\": \"a\", \"x\": [{}0]}}",
            unit.repeat(bytes / unit.len())
        );
        assert!(body.len() as u64 <= MAX_STATE_BYTES);
        fs::write(&path, body).unwrap();
        paths.push(path);
    }
    let worst = dir.path().join("z.json");
    let body = format!(
        "{{\"slug\": \"z\", \"x\": [{}[0]]}}",
        "[0],".repeat(1_040_000)
    );
    assert!(body.len() as u64 <= MAX_STATE_BYTES);
    fs::write(&worst, body).unwrap();
    let cache = StateCache::default();
    trim_and_reset_peak();
    let before = status_kib("VmRSS:");
    for path in &paths {
        assert!(cache.load(path).state.is_ok(), "{}", path.display());
    }
    let estimate = cache.kept_bytes();
    trim_and_reset_peak();
    let kept_mib = status_kib("VmRSS:").saturating_sub(before) / 1024;
    let refused = cache.load(&worst).state.is_err();
    let peak_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
    assert!(
        estimate <= STATE_CACHE_BUDGET,
        "{} MiB kept",
        estimate >> 20
    );
    assert!(refused, "a 4 MiB [0],[0],... state was parsed whole");
    assert!(
        kept_mib <= (estimate >> 20) as u64 && kept_mib <= 448 && peak_mib < 1024,
        "states estimated at {} MiB (kept) hold {kept_mib} MiB resident (bound: the estimate, 448 MiB); with a 4 MiB [0],[0],... state loaded next the cache peaked at {peak_mib} MiB (bound 1 GiB)",
        estimate >> 20
    );
}

/// The review report beside the state files (`plan-review-report.json`, whoever writes the
/// build-state dir writes it) is read up to the faults dir's 8 MiB JSON cap: of
/// `[0],[0],...` it would hold ~100× that parsed, then copied into the rules' input. Its
/// parse is refused part way (reported with the run's detector errors, naming the file),
/// and one fault-watch pass over one small run stays well under 1 GiB.
#[test]
fn an_8_mib_review_report_is_refused_part_way_and_a_pass_stays_under_1_gib() {
    if !in_own_process(
        "fault_watch_cost::an_8_mib_review_report_is_refused_part_way_and_a_pass_stays_under_1_gib",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("build-state");
    fs::create_dir_all(&state_dir).unwrap();
    fs::write(state_dir.join("run.json"), r#"{"slug": "run"}"#).unwrap();
    let report = format!("{{\"x\": [{}[0]]}}", "[0],".repeat(2_090_000));
    assert!(report.len() as u64 <= berth::faults::json_file::MAX_JSON_BYTES);
    fs::write(state_dir.join("plan-review-report.json"), report).unwrap();
    let halts = HaltStore::new(dir.path().join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let learned = LearnedSet::default();
    trim_and_reset_peak();
    let before = status_kib("VmRSS:");
    let pass = watch_runs(&set, &state_dir, &halts, &learned);
    let peak_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
    assert_eq!(pass.runs, 1, "{pass:?}");
    assert!(
        pass.problems
            .iter()
            .any(|p| p.contains("plan-review-report.json") && p.contains("would hold more than")),
        "the refused report is not reported: {pass:?}"
    );
    assert!(
        peak_mib < 1024,
        "one pass over one run of 15 bytes and an 8 MiB review report peaked at {peak_mib} MiB"
    );
}
