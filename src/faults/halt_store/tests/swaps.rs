//! Whoever writes the faults dir swaps one of berth's subdirs for a symlink to a dir of its
//! choosing (here a stand-in for berth's own dir; as root, any dir) while berth files
//! faults: nothing berth writes may land in the link's target.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// Swaps `sub` of the halt dir `dir` and a symlink to `victim` back and forth
/// (`renameat2(RENAME_EXCHANGE)`, so one of the two is always at the name) while `pass`
/// runs, pass after pass, until something appears in `victim` or `passes` ran. Returns
/// what appeared and how many passes ran.
fn while_swapped(
    dir: &Path,
    sub: &str,
    victim: &Path,
    passes: usize,
    mut pass: impl FnMut(usize),
) -> (Vec<String>, usize) {
    let real = dir.join(sub);
    let link = dir.join(format!("{sub}.swap"));
    std::os::unix::fs::symlink(victim, &link).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = Arc::clone(&stop);
        let (a, b) = (
            CString::new(real.as_os_str().as_bytes()).unwrap(),
            CString::new(link.as_os_str().as_bytes()).unwrap(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                // SAFETY: two valid NUL-terminated paths.
                unsafe {
                    nix::libc::renameat2(
                        nix::libc::AT_FDCWD,
                        a.as_ptr(),
                        nix::libc::AT_FDCWD,
                        b.as_ptr(),
                        nix::libc::RENAME_EXCHANGE,
                    );
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let planted = || -> Vec<String> {
        fs::read_dir(victim)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    // A bound on a slow machine's run, not an oracle: the passes are counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ran = 0;
    while ran < passes && planted().is_empty() && Instant::now() < deadline {
        pass(ran);
        ran += 1;
    }
    stop.store(true, Ordering::SeqCst);
    swapper.join().unwrap();
    (planted(), ran)
}

/// Runs `pass` (see [`while_swapped`]) with `sub` swapped for a symlink to a dir of its
/// own and fails if anything berth wrote landed in that dir.
fn assert_nothing_lands_while_swapped(dir: &Path, sub: &str, pass: impl FnMut(usize)) {
    let victim = tempfile::tempdir().unwrap();
    let (found, passes) = while_swapped(dir, sub, victim.path(), 1000, pass);
    assert!(
        found.is_empty(),
        "after {passes} passes berth wrote {found:?} into the symlink's target {}",
        victim.path().display()
    );
}

/// `store` or, when `fresh`, a store of its own for the pass, as the daemon makes one per
/// pass.
fn kept_or_fresh(store: &HaltStore, dir: &Path, fresh: bool, pass: impl FnOnce(&HaltStore)) {
    if fresh {
        pass(&HaltStore::new(dir));
    } else {
        pass(store);
    }
}

/// The run's lock (`.r.lock`) and its registry were created in the link's target: berth
/// checked the name once, then wrote by it.
#[test]
fn a_symlink_swapped_in_for_active_faults_redirects_berths_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let x = event("r", "X", "");
    store.sync_run("r", "/s/r.json", std::slice::from_ref(&x));
    assert_nothing_lands_while_swapped(dir.path(), ACTIVE_DIR, |i| {
        let events = if i % 2 == 0 { vec![] } else { vec![x.clone()] };
        kept_or_fresh(&store, dir.path(), i % 4 >= 2, |s| {
            s.sync_run("r", "/s/r.json", &events);
        });
    });
}

/// Pending events and resolved markers filed and removed while `pending-investigations/`
/// is swapped.
#[test]
fn a_symlink_swapped_in_for_pending_investigations_gets_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    store.sync_run("r", "/s/r.json", &[event("r", "X", "")]);
    assert_nothing_lands_while_swapped(dir.path(), PENDING_DIR, |i| {
        let raised = [event("r", &format!("P{}", i / 2), "")];
        let events: &[HaltEvent] = if i % 2 == 0 { &raised } else { &[] };
        kept_or_fresh(&store, dir.path(), i % 4 >= 2, |s| {
            s.sync_run("r", "/s/r.json", events);
        });
    });
}

/// Captures archived (and old ones pruned) while `collapsed/` is swapped.
#[test]
fn a_symlink_swapped_in_for_collapsed_gets_no_archive() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    store.emit(&event("r", "X", "tail 0")).unwrap();
    store.emit(&event("r", "X", "tail 1")).unwrap();
    assert_nothing_lands_while_swapped(dir.path(), COLLAPSED_DIR, |i| {
        let recurred = event("r", "X", &format!("tail {}", i + 2));
        kept_or_fresh(&store, dir.path(), i % 2 == 1, |s| {
            let _ = s.emit(&recurred);
        });
    });
}

/// A subdir found to be a symlink when a store opens it is refused for that store, with
/// its reason in the pass's report; once the link is gone the next store works as ever.
#[test]
fn a_subdir_that_is_a_symlink_is_refused_and_reported_then_the_next_store_works() {
    let dir = tempfile::tempdir().unwrap();
    let victim = tempfile::tempdir().unwrap();
    let active = dir.path().join(ACTIVE_DIR);
    std::os::unix::fs::symlink(victim.path(), &active).unwrap();
    let report = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &[event("r", "X", "")]);
    assert!(report.emitted.is_empty(), "{report:?}");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(
        report.problems[0].contains(&format!("{} is a symlink", active.display())),
        "{report:?}"
    );
    let processed = dir.path().join(PROCESSED_DIR);
    std::os::unix::fs::symlink(victim.path(), &processed).unwrap();
    let listing = HaltStore::new(dir.path()).list();
    assert_eq!(listing.unreadable.len(), 1, "{listing:?}");
    assert!(
        listing.unreadable[0].reason.contains("is a symlink"),
        "{listing:?}"
    );
    fs::remove_file(&processed).unwrap();
    fs::remove_file(&active).unwrap();
    let report = HaltStore::new(dir.path()).sync_run("r", "/s/r.json", &[event("r", "X", "")]);
    assert_eq!(report.emitted.len(), 1, "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 0);
}

/// `dirs.rs`: a subdir swapped for a link "is refused with its reason for that pass". The
/// store tries `active-faults/` again at every sync, and every sync says so: with it a
/// symlink, a pass over 50 state files, none of which raises anything, logs 50 error lines,
/// every pass (10,000 state files, the pass's listing cap: 10,000 lines a pass).
#[test]
fn a_swapped_active_dir_is_said_once_a_pass_not_once_per_state_file() {
    const STATE_FILES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(ACTIVE_DIR)).unwrap();
    let pass = HaltStore::new(dir.path());
    let lines: Vec<String> = (0..STATE_FILES)
        .flat_map(|n| {
            pass.sync_run(&format!("r{n}"), &format!("/s/r{n}.json"), &[])
                .problems
        })
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one pass over runs with nothing raised said: {:?}",
        &lines[..2.min(lines.len())]
    );
}
