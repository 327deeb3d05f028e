//! The fault watch over an unchanged build-state dir costs what changed: no state file
//! parsed, no attachment read, no detector run again (docs/limits.md).

use std::fs;
use std::time::Duration;

use berth::faults::halt_store::HaltStore;
use berth::faults::learned::LearnedSet;
use berth::faults::watch::watch_runs;
use berth::rules::Rules;

use crate::faults::fixture_path;
use crate::support::World;

/// How many times `path` is read (inotify `IN_ACCESS`: a `read` of its data; opening it or
/// taking its stamp is not one) while `f` runs.
pub(crate) fn reads_of(path: &std::path::Path, f: impl FnOnce()) -> usize {
    use nix::libc;
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscalls on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        assert!(fd >= 0);
        assert!(libc::inotify_add_watch(fd, c_path.as_ptr(), libc::IN_ACCESS) >= 0);
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
                if event.mask & libc::IN_ACCESS != 0 {
                    count += 1;
                }
                at += std::mem::size_of::<libc::inotify_event>() + event.len as usize;
            }
        }
        libc::close(fd);
        count
    }
}

/// Scenario: the build-state dir holds run state files and gstack's
/// `plan-review-report.json` (capped at 8 MiB). Read and parsed again for every state file
/// on every tick, watcher wakes included, 20 state files and an 8 MiB report would cost
/// 160 MiB of JSON parsing per tick over an unchanged dir.
#[test]
fn a_tick_over_an_unchanged_build_state_dir_does_not_read_the_review_report_again() {
    let world = World::new();
    let state_dir = world.root.join("build-state");
    fs::create_dir_all(&state_dir).unwrap();
    for n in 0..3 {
        fs::copy(fixture_path(), state_dir.join(format!("run{n}.json"))).unwrap();
    }
    let report = state_dir.join("plan-review-report.json");
    fs::write(&report, r#"{"round": 1}"#).unwrap();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let learned = LearnedSet::default();
    std::thread::sleep(Duration::from_millis(300));
    let first = reads_of(&report, || {
        watch_runs(&set, &state_dir, &halts, &learned);
    });
    assert!(first > 0, "the first pass reads the report");
    std::thread::sleep(Duration::from_millis(300));
    let again = reads_of(&report, || {
        watch_runs(&set, &state_dir, &halts, &learned);
        watch_runs(&set, &state_dir, &halts, &learned);
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
    let world = World::new();
    let state_dir = world.root.join("build-state");
    fs::create_dir_all(&state_dir).unwrap();
    let phase = serde_json::json!({"codexReview": {"iterations": 0}, "testFix": {"iterations": 0}});
    let state = serde_json::json!({"slug": "big", "phases": vec![phase; 60_000]}).to_string();
    for n in 0..8 {
        fs::write(state_dir.join(format!("run{n}.json")), &state).unwrap();
    }
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let learned = LearnedSet::default();
    std::thread::sleep(Duration::from_millis(300));
    let first = watch_runs(&set, &state_dir, &halts, &learned);
    assert_eq!(
        first.detected, 8,
        "the first pass runs the detectors over every run"
    );
    // Tests share the daemon's caches, and another test's pass over its own dir may evict
    // these runs between two passes: one of five passes must run no detector at all.
    let passes: Vec<_> = (0..5)
        .map(|_| watch_runs(&set, &state_dir, &halts, &learned))
        .collect();
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
