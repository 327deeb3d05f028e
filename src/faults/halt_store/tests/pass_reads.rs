//! What one fault-watch pass keeps of the runs' other registries its looks read: bounded by
//! what it read, however many names reach a file or ids a look asks about.

use super::bounded::plant_under_names;
use super::*;

/// What a pass keeps of each file its looks read is documented as "its run id's SHA-256,
/// its source up to 4,096 bytes, the asked ids it holds": bounded by the file. But each
/// registry of the run a look reads keeps a copy of every id the look asked
/// (`Registered::asked`), whether the file holds them or not. Whoever writes the faults dir
/// plants the run's own registry with many long cleared fault ids (a scope may be any
/// length) and many tiny registries under names of the run: the pass then holds
/// names × asked bytes (10,000 names × an 8 MiB registry's ids: ~80 GB), none of it read
/// from disk, so the 32 MiB read budget never stops it.
#[test]
fn a_pass_keeps_only_the_asked_ids_a_registry_holds() {
    use crate::faults::registry::{self, ActiveFault, Registry};
    use crate::private_dir::PrivateDir;
    const CLEARED: usize = 100;
    const OTHERS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    fs::write(&live, "{}").unwrap();
    let own = dir.path().join("r.json");
    fs::write(&own, "{}").unwrap();
    let own = own.to_str().unwrap().to_owned();
    let active = PrivateDir::ensure(dir.path(), ACTIVE_DIR).unwrap();
    let scope = "s".repeat(4000);
    let planted = Registry {
        run_id: "r".into(),
        source: own.clone(),
        updated_at: String::new(),
        active: (0..CLEARED)
            .map(|n| {
                let fault = ActiveFault {
                    fault_id: format!("K:{scope}:{n:08x}"),
                    first_detected_at: String::new(),
                };
                (format!("d{n}"), fault)
            })
            .collect(),
    };
    registry::save(&active, &registry::name("r", &own), &planted).unwrap();
    let tiny = Registry {
        run_id: "r".into(),
        source: live.to_str().unwrap().into(),
        ..Registry::default()
    };
    for n in 0..OTHERS {
        registry::save(
            &active,
            &registry::name("r", &format!("/s/{n}.json")),
            &tiny,
        )
        .unwrap();
    }
    let store = HaltStore::new(dir.path());
    crate::rules::memory::start();
    let report = store.sync_run("r", &own, &[]);
    let kept = crate::rules::memory::live();
    crate::rules::memory::stop();
    assert_eq!(report.resolved.len(), CLEARED, "{:?}", report.problems);
    // Per file read: 32 bytes of hash, its source (here ~60 bytes), no asked id it holds;
    // 4 KiB each is generous.
    let bound = (OTHERS * 4096) as isize;
    assert!(
        kept <= bound,
        "one pass's looks keep {} KiB after reading {OTHERS} registries of ~150 bytes holding none of the {CLEARED} asked ids; documented: at most ~{} KiB",
        kept / 1024,
        bound / 1024
    );
    drop(store);
}

/// A registry of the run planted with one long invalid fault id (a scope of `/`), under
/// 200 names of the run (hard links: one file, one read): the look reads it once, but the
/// reason it is no registry quotes the whole id and is copied for every name, into the
/// look's unread list and again into the pass's problems (one error log line each). A
/// 256 KiB file then costs the pass ~100 MB and ~50 MB of log lines; at 8 MiB under the
/// 10,000 names a look keeps, 80 GB a pass, where one read of it is documented as its cost.
#[test]
fn an_invalid_registry_under_many_names_costs_one_reason_not_one_per_name() {
    const NAMES: usize = 200;
    let (dir, own, active) = run_r_raised();
    let planted = serde_json::json!({
        "runId": "r",
        "source": own,
        "updatedAt": "",
        "active": {"d": {"faultId": format!("K:/{}:00000000", "s".repeat(256 * 1024)), "firstDetectedAt": ""}},
    });
    let names = names_of_run_r(NAMES);
    plant_under_names(&active, &serde_json::to_vec(&planted).unwrap(), names);
    let clearing = HaltStore::new(dir.path());
    crate::rules::memory::start();
    let report = clearing.sync_run("r", &own, &[]);
    let peak = crate::rules::memory::stop();
    assert!(report.resolved.is_empty(), "{:?}", report.resolved);
    let said: usize = report.problems.iter().map(String::len).sum();
    assert!(
        said <= 4 * 256 * 1024 && peak <= 8 * 256 * 1024,
        "one 256 KiB registry under {NAMES} names: the pass's problems say {said} bytes ({} lines), its peak heap {peak} bytes",
        report.problems.len()
    );
}

/// A file under names of the run that berth refuses to read (here larger than 8 MiB: a
/// sparse file, no disk), hard-linked under 200 names: docs/limits.md says one problem a
/// pass "per unreadable registry file (not per name: a hard-linked file is said once a
/// look, with how many more names it had)". A refused open is said once per name instead
/// (the once-a-look dedup only covers files that opened and failed to parse), so the
/// 10,000 names a look reads cost 10,000 lines a look, each raise or clear of the run.
#[test]
fn a_refused_registry_file_under_many_names_is_said_once_a_look() {
    const NAMES: usize = 200;
    let (dir, own, active) = run_r_raised();
    let mut names = names_of_run_r(NAMES);
    let first = active.join(names.next().unwrap());
    fs::File::create(&first)
        .unwrap()
        .set_len(crate::faults::json_file::MAX_JSON_BYTES + 1)
        .unwrap();
    for name in names {
        fs::hard_link(&first, active.join(name)).unwrap();
    }
    let report = HaltStore::new(dir.path()).sync_run("r", &own, &[]);
    assert!(report.resolved.is_empty(), "{:?}", report.resolved);
    let of_the_file = report
        .problems
        .iter()
        .filter(|p| p.contains("/s/") || p.contains("larger") || p.contains("8388608"))
        .count();
    assert!(
        of_the_file <= 2,
        "one refused file under {NAMES} names is said in {of_the_file} of the pass's {} problems; first: {:?}",
        report.problems.len(),
        report.problems.first()
    );
}

/// A halt dir where run `r` raised fault `X` from a live state file: the dir, that file's
/// path and the dir's `active-faults/`.
fn run_r_raised() -> (tempfile::TempDir, String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("r.json");
    fs::write(&state, "{}").unwrap();
    let own = state.to_str().unwrap().to_owned();
    let raised = HaltStore::new(dir.path()).sync_run("r", &own, &[event("r", "X", "")]);
    assert_eq!(raised.emitted.len(), 1, "{raised:?}");
    let active = dir.path().join(ACTIVE_DIR);
    (dir, own, active)
}

/// `count` registry names of run `r`, each for another state file.
fn names_of_run_r(count: usize) -> impl Iterator<Item = String> {
    (0..count).map(|n| crate::faults::registry::name("r", &format!("/s/{n}.json")))
}

/// docs/faults.md: "each pass reports each such fault once and each unreadable registry
/// once"; docs/limits.md: "one problem ... per fault kept and one per unreadable registry
/// file ..., each pass". One FIFO (berth refuses it, no read, no budget) under a name of run
/// `r`, and `r`'s 20 state files each clearing a fault of its own in one pass (one store):
/// each state file's look says the FIFO again, so the pass says it 20 times (looks ×
/// unreadable files: 10,000 state files × 10,000 planted FIFOs, 10^8 lines a pass).
#[test]
fn a_refused_registry_is_said_once_a_pass_not_once_per_look() {
    const STATES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let states: Vec<String> = (0..STATES)
        .map(|n| {
            let state = dir.path().join(format!("r{n}.json"));
            fs::write(&state, "{}").unwrap();
            state.to_str().unwrap().to_owned()
        })
        .collect();
    let raising = HaltStore::new(dir.path());
    for (n, own) in states.iter().enumerate() {
        let raised = raising.sync_run("r", own, &[event("r", &format!("X{n}"), "")]);
        assert_eq!(raised.emitted.len(), 1, "{raised:?}");
    }
    let active = dir.path().join(ACTIVE_DIR);
    let fifo = active.join(crate::faults::registry::name("r", "/s/planted.json"));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let clearing = HaltStore::new(dir.path());
    let mut problems = Vec::new();
    for own in &states {
        let report = clearing.sync_run("r", own, &[]);
        assert!(report.resolved.is_empty(), "{:?}", report.resolved);
        problems.extend(report.problems);
    }
    let of_the_fifo = problems.iter().filter(|p| p.contains("a FIFO")).count();
    assert!(
        of_the_fifo <= 1 && problems.len() <= STATES + 1,
        "one pass says the one FIFO {of_the_fifo} times, {} problems for {STATES} faults kept raised and 1 unreadable registry; e.g. {:?}",
        problems.len(),
        &problems[..2]
    );
}

/// docs/limits.md: a fault kept raised because other registries of its run are unreadable
/// is "one problem (a log error line) per fault kept", and a fault id a reason quotes is
/// cut to 256 bytes (`MAX_SAID_BYTES`). Whoever writes the faults dir plants the run's own
/// registry with one cleared fault of a 4 MiB scope (a valid id: a scope may be any length)
/// and a directory at another registry name of the run: each pass (the planted detector id
/// is never the run's, so the registry is never "unchanged") says the id cut in its "not
/// resolved" line, not a 4 MiB error log line a pass.
#[test]
fn a_kept_fault_is_said_with_its_id_cut() {
    use crate::faults::registry::{self, ActiveFault, MAX_SAID_BYTES, Registry};
    use crate::private_dir::PrivateDir;
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("r.json");
    fs::write(&own, "{}").unwrap();
    let own = own.to_str().unwrap().to_owned();
    let active = PrivateDir::ensure(dir.path(), ACTIVE_DIR).unwrap();
    let id = format!("K:{}:00000000", "s".repeat(4 * 1024 * 1024));
    let planted = Registry {
        run_id: "r".into(),
        source: own.clone(),
        updated_at: String::new(),
        active: [(
            "planted".to_owned(),
            ActiveFault {
                fault_id: id.clone(),
                first_detected_at: String::new(),
            },
        )]
        .into(),
    };
    registry::save(&active, &registry::name("r", &own), &planted).unwrap();
    fs::create_dir(active.join(registry::name("r", "/s/other.json"))).unwrap();
    let store = HaltStore::new(dir.path());
    let mut said = Vec::new();
    for _ in 0..2 {
        let report = store.sync_run("r", &own, &[]);
        assert!(report.resolved.is_empty(), "{:?}", report.resolved);
        said.push(report.problems.iter().map(String::len).sum::<usize>());
    }
    assert!(
        said.iter().all(|&bytes| bytes <= 4 * MAX_SAID_BYTES + 4096),
        "problem lines of two passes over a kept fault of a {} byte id: {said:?} bytes",
        id.len()
    );
}
