//! Every halt event berth files can be read back and listed: its file names fit one file
//! name however long the run id, its content fits the size berth reads, and the captures it
//! archives under `collapsed/` survive an investigator's ack.

use std::fs;

use berth::faults::fault::{Fault, Severity};
use berth::faults::halt::{HaltEvent, RunRef};
use berth::faults::halt_store::{COLLAPSED_DIR, Emitted, HaltStore};
use berth::faults::learned::LearnedSet;
use berth::faults::watch::watch_runs;
use berth::rules::Rules;
use serde_json::{Value, json};

use crate::faults::{clear_hand_merge, fixture_path, hit_count};
use crate::memory::{in_own_process, status_kib, trim_and_reset_peak};
use crate::support::World;

pub(crate) fn state_dir_with_slug(world: &World, slug: &str) -> std::path::PathBuf {
    let dir = world.root.join("build-state");
    fs::create_dir_all(&dir).unwrap();
    let mut state: Value = serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap();
    state["slug"] = Value::String(slug.to_owned());
    fs::write(dir.join("polis.json"), state.to_string()).unwrap();
    dir
}

/// Scenario: a state file whose run id (`launch.runId`, else `slug`) is 300 characters, all
/// in gstack's safe set. The hand-merged-feature detector raises a HIGH fault; every
/// halt-dir name starting with the run id (`.<run>.lock`, `<run>-<hex>.json`,
/// `<run>-<faultId>.json`) used to be over NAME_MAX, so the event was never filed.
#[test]
fn a_fault_of_a_run_with_a_long_run_id_is_filed_and_listed() {
    let world = World::new();
    let slug = "r".repeat(300);
    let state_dir = state_dir_with_slug(&world, &slug);
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let learned = LearnedSet::default();
    let tick = watch_runs(&set, &state_dir, &halts, &learned);
    assert_eq!(tick.runs, 1);
    let listed = halts.list();
    assert_eq!(
        listed.halts.len(),
        1,
        "the HIGH fault of run {}… was not filed: emitted {:?}, problems {:?}",
        &slug[..8],
        tick.emitted,
        tick.problems
    );
    assert_eq!(listed.halts[0].run_id, slug);
    // The registry knows it is raised: the next tick files nothing again.
    let again = watch_runs(&set, &state_dir, &halts, &learned);
    assert!(
        again.emitted.is_empty() && again.problems.is_empty(),
        "{again:?}"
    );
}

fn event_of(run: &str, tail: &str) -> HaltEvent {
    let fault = Fault {
        category: "X".into(),
        severity: Severity::High,
        description: "X happened".into(),
        source_files: vec![],
        evidence: Default::default(),
    };
    let run = RunRef {
        run_id: run,
        state_slug: run,
        stdout_tail: tail.to_owned(),
        ..RunRef::default()
    };
    HaltEvent::from_fault(&run, &fault)
}

fn event(tail: &str) -> HaltEvent {
    event_of("run", tail)
}

/// Every archived capture's stdout tail under `collapsed/`.
fn archived_tails(halts: &HaltStore) -> Vec<String> {
    let mut tails: Vec<String> = fs::read_dir(halts.dir().join(COLLAPSED_DIR))
        .unwrap()
        .map(|e| {
            let v: Value = serde_json::from_slice(&fs::read(e.unwrap().path()).unwrap()).unwrap();
            v["snapshot"]["stdoutTail"].as_str().unwrap().to_owned()
        })
        .collect();
    tails.sort();
    tails
}

/// Scenario: a run id whose pending file name just fits (224 characters: `<run>-<faultId>.json`
/// is 254 bytes) recurs 25 times: every capture's archive name (`-<n>.json` longer) is cut
/// to fit too, and the archive cap still keeps the newest 20.
#[test]
fn recurrences_of_a_run_whose_name_just_fits_are_archived_and_capped() {
    let world = World::new();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let run = "r".repeat(224);
    for n in 0..25 {
        halts.emit(&event_of(&run, &format!("{n:02}"))).unwrap();
    }
    let pending = halts.pending_path(&run, &event_of(&run, "").fault_id);
    assert!(
        pending
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&run),
        "a name that fits is gstack's: {}",
        pending.display()
    );
    let tails = archived_tails(&halts);
    let newest: Vec<String> = (4..24).map(|n| format!("{n:02}")).collect();
    assert_eq!(tails, newest);
    assert_eq!(halts.list().halts[0].occurrences, 25);
}

/// Scenario: a fault recurs once (capture "a" archived as `collapsed/<run>-<id>-1.json`),
/// an investigator acks it (`faults ack` moves the pending file to `processed/`), and the
/// same fault is raised again and recurs. The new pending file has no `occurrences`, so
/// the recurrence used to archive capture "c" as number 1 again, over capture "a".
#[test]
fn a_recurrence_after_an_ack_keeps_the_captures_archived_before_it() {
    let world = World::new();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let id = event("").fault_id;
    halts.emit(&event("a")).unwrap();
    halts.emit(&event("b")).unwrap();
    assert_eq!(archived_tails(&halts), ["a"]);
    halts.mark_investigated("run", &id).unwrap();
    halts.emit(&event("c")).unwrap();
    halts.emit(&event("d")).unwrap();
    assert_eq!(
        archived_tails(&halts),
        ["a", "c"],
        "an archived capture was overwritten"
    );
}

/// Scenario: as above, but the fault had recurred 25 times before the ack, so captures
/// 6..=25 are kept (the cap is 20). After the ack, the first recurrence used to archive
/// the newest capture as number 1, the lowest number, and the pruning (oldest = lowest
/// number) removed it at once.
#[test]
fn after_an_ack_the_newest_archived_capture_survives_the_archive_cap() {
    let world = World::new();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let id = event("").fault_id;
    for n in 0..=25 {
        halts.emit(&event(&format!("old {n:02}"))).unwrap();
    }
    halts.mark_investigated("run", &id).unwrap();
    halts.emit(&event("new 1")).unwrap();
    halts.emit(&event("new 2")).unwrap();
    let tails = archived_tails(&halts);
    assert!(
        tails.iter().any(|t| t == "new 1"),
        "the newest capture was pruned; kept: {tails:?}"
    );
    // Capture "old 05" (number 6) was the oldest kept: it made room.
    assert_eq!(tails.len(), 20, "{tails:?}");
    assert!(
        !tails.iter().any(|t| t == "old 05"),
        "the oldest capture was kept past the cap: {tails:?}"
    );
}

/// Scenario: a run's stdout log is 2 MiB of control bytes (within the 2 MiB berth reads of
/// a log). JSON escapes each to six bytes (`\u0001`), so the event berth filed was 12 MiB,
/// over the 8 MiB berth reads back: `faults list` showed it only as unreadable, the pending
/// gauge did not count it, and every later `emit` of that fault failed on it.
#[test]
fn a_halt_event_berth_files_stays_within_what_berth_can_read_back() {
    let world = World::new();
    let state_dir = world.root.join("build-state");
    fs::create_dir_all(&state_dir).unwrap();
    let log = state_dir.join("run.log");
    fs::write(&log, vec![1u8; 2 * 1024 * 1024]).unwrap();
    let mut state: Value = serde_json::from_slice(&fs::read(fixture_path()).unwrap()).unwrap();
    state["stdoutLog"] = Value::String(log.display().to_string());
    fs::write(state_dir.join("polis.json"), state.to_string()).unwrap();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let tick = watch_runs(&set, &state_dir, &halts, &LearnedSet::default());
    assert_eq!(tick.emitted.len(), 1, "{:?}", tick.problems);
    let listed = halts.list();
    assert!(
        listed.halts.len() == 1 && listed.unreadable.is_empty(),
        "the filed HIGH event is not listed: {} listed, unreadable {:?}",
        listed.halts.len(),
        listed
            .unreadable
            .iter()
            .map(|u| &u.reason)
            .collect::<Vec<_>>()
    );
}

/// Scenario: whoever can write the faults dir (a producer, a stray tool) leaves one file in
/// `collapsed/` named as capture number u64::MAX of a fault
/// (`<run>-<faultId>-18446744073709551615.json`). The fault then recurs three times. Each
/// archive takes "the next number after the highest one there", which saturates at
/// u64::MAX: every recurrence archives to that same name, so each archived capture is
/// overwritten by the next and berth keeps one capture instead of up to 20.
#[test]
fn a_planted_archive_numbered_u64_max_does_not_make_recurrences_overwrite_each_other() {
    let world = World::new();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let id = event("").fault_id;
    let planted = halts.collapsed_path("run", &id, u64::MAX);
    fs::create_dir_all(planted.parent().unwrap()).unwrap();
    fs::write(
        &planted,
        serde_json::to_vec(&serde_json::json!({"snapshot": {"stdoutTail": "planted"}})).unwrap(),
    )
    .unwrap();
    for tail in ["a", "b", "c", "d"] {
        halts.emit(&event(tail)).unwrap();
    }
    let tails = archived_tails(&halts);
    assert!(
        ["a", "b", "c"].iter().all(|t| tails.iter().any(|k| k == t)),
        "archived captures were overwritten; kept: {tails:?}"
    );
}

/// Scenario: run `nightly`'s state file `polis.json` raises a HIGH fault, which berth files;
/// an investigator acks it (`faults ack` moves it to `processed/`). The run's state file
/// then goes (the orchestrator archives it) and the run is launched again under the same
/// run id with a new state file, `polis-2.json`, that hits the same fault. Registries are
/// kept per state file, and the gone file's registry (`active-faults/nightly-<hex of
/// polis.json>.json`) is never synced or removed again: it holds the fault id as "raised
/// elsewhere" for ever, so the new incident is never filed (nor, when it clears, resolved).
#[test]
fn a_fault_of_a_new_state_file_is_filed_though_a_gone_state_file_of_the_run_raised_it() {
    let world = World::new();
    let state_dir = state_dir_with_slug(&world, "nightly");
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let learned = LearnedSet::default();
    let first = watch_runs(&set, &state_dir, &halts, &learned);
    assert_eq!(first.emitted.len(), 1, "{first:?}");
    let listed = halts.list();
    let halt = &listed.halts[0];
    halts
        .mark_investigated(&halt.run_id, &halt.fault_id)
        .unwrap();
    fs::rename(state_dir.join("polis.json"), state_dir.join("polis-2.json")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let again = watch_runs(&set, &state_dir, &halts, &learned);
    let pending: Vec<_> = halts
        .list()
        .halts
        .into_iter()
        .filter(|h| h.status == berth::faults::halt_store::HaltStatus::Pending)
        .collect();
    assert_eq!(
        pending.len(),
        1,
        "the new state file's fault was not filed: emitted {:?}, problems {:?}; registries: {:?}",
        again.emitted,
        again.problems,
        fs::read_dir(halts.dir().join("active-faults"))
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let text = fs::read_to_string(&path).unwrap_or_default();
                format!(
                    "{}: {}",
                    path.file_name().unwrap().to_string_lossy(),
                    text.replace('\n', "")
                )
            })
            .collect::<Vec<_>>()
    );
}

/// A pending event a producer planted: 8 MiB of `[0],[0],...` in a field berth never
/// shows (~760 MiB parsed into a JSON value), at `name` under `pending-investigations/`.
fn plant_8_mib_pending_event(halt_dir: &std::path::Path, name: &str) {
    let pending = halt_dir.join("pending-investigations");
    fs::create_dir_all(&pending).unwrap();
    let body = format!(
        "{{\"runId\": \"r\", \"x\": [{}[0]]}}",
        "[0],".repeat(2_090_000)
    );
    assert!(body.len() as u64 <= berth::faults::json_file::MAX_JSON_BYTES);
    fs::write(pending.join(name), body).unwrap();
}

/// Listing the halt dir builds only the fields it shows: a planted 8 MiB pending event
/// costs a listing its file's bytes, not hundreds of MiB. The queue page lists the halt dir
/// on each refresh and `/metrics` whenever the dir's stamp moved.
#[test]
fn listing_a_planted_8_mib_pending_event_costs_its_bytes_not_its_parse() {
    if !in_own_process(
        "halt_files::listing_a_planted_8_mib_pending_event_costs_its_bytes_not_its_parse",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    plant_8_mib_pending_event(dir.path(), "r-x.json");
    let store = HaltStore::new(dir.path());
    trim_and_reset_peak();
    let before = status_kib("VmRSS:");
    let listing = store.list();
    let peak_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
    assert_eq!(listing.halts.len(), 1);
    assert!(
        peak_mib < 64,
        "listing a halt dir of one 8 MiB pending event peaked at {peak_mib} MiB"
    );
}

/// Filing a fault reads only the stdout tail and the count of the pending file it
/// replaces: a planted 8 MiB event at the fault's own file name costs each filing its
/// bytes, not its parse, and is archived as it was.
#[test]
fn filing_over_a_planted_8_mib_pending_event_costs_its_bytes_not_its_parse() {
    if !in_own_process(
        "halt_files::filing_over_a_planted_8_mib_pending_event_costs_its_bytes_not_its_parse",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let event = event_of("r", "tail");
    let pending = store.pending_path(&event.run_id, &event.fault_id);
    plant_8_mib_pending_event(dir.path(), &pending.file_name().unwrap().to_string_lossy());
    let planted = fs::read(&pending).unwrap();
    trim_and_reset_peak();
    let before = status_kib("VmRSS:");
    let emitted = store.emit(&event);
    let peak_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
    assert!(
        peak_mib < 64,
        "filing a fault over an 8 MiB pending event peaked at {peak_mib} MiB: {emitted:?}"
    );
    assert_eq!(emitted.unwrap(), Emitted::Recurred { occurrences: 2 });
    assert_eq!(
        fs::read(store.collapsed_path(&event.run_id, &event.fault_id, 1)).unwrap(),
        planted
    );
}

/// Whoever writes the build-state dir names a plan at a path of 3,840 bytes of `\x01` (15
/// dirs of 255, beneath the state's dir), which JSON writes as 23 KB, and gives 400 failed
/// phases whose plan blocks check their gate, each with another out-of-range `index`: 400
/// PREMATURE_COMPLETION faults, one fault id (scope `all`, one message), 400 detector ids
/// each carrying the plan path. The registry keys each under 512 bytes, so berth reads back
/// the registry it wrote: the fault stays raised and the event the investigator
/// acknowledged stays acknowledged (it used to be written at 9 MB, refused and moved aside
/// by the next pass, and the fault filed again every pass).
#[test]
fn berth_reads_back_the_registry_it_wrote_and_an_acked_event_stays_acked() {
    use serde_json::json;
    const PHASES: usize = 400;
    let world = World::new();
    let state_dir = world.root.join("build-state");
    let mut plan_dir = state_dir.clone();
    for _ in 0..15 {
        plan_dir.push("\u{1}".repeat(255));
    }
    fs::create_dir_all(&plan_dir).unwrap();
    let plan = plan_dir.join("plan.md");
    fs::write(
        &plan,
        "### Phase\n- [x] **Implementation**\n".repeat(PHASES),
    )
    .unwrap();
    let phases: Vec<Value> = (0..PHASES)
        .map(|k| json!({"index": 1_000_000 + k, "number": "1", "status": "failed"}))
        .collect();
    let state = json!({"slug": "big", "planFile": plan, "phases": phases});
    fs::write(state_dir.join("big.json"), state.to_string()).unwrap();
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let learned = LearnedSet::default();
    let first = watch_runs(&set, &state_dir, &halts, &learned);
    assert_eq!(first.emitted.len(), 1, "{:?}", first.problems);
    let registry_bytes: u64 = fs::read_dir(halts.dir().join("active-faults"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let listed = halts.list();
    let halt = &listed.halts[0];
    halts
        .mark_investigated(&halt.run_id, &halt.fault_id)
        .unwrap();
    let again = watch_runs(&set, &state_dir, &halts, &learned);
    let pending = halts
        .list()
        .halts
        .into_iter()
        .filter(|h| h.status == berth::faults::halt_store::HaltStatus::Pending)
        .count();
    let moved: Vec<&String> = again
        .problems
        .iter()
        .filter(|p| p.contains("moved aside"))
        .collect();
    assert!(
        pending == 0 && moved.is_empty(),
        "berth wrote a registry of {registry_bytes} bytes (it reads at most 8 MiB); the next pass moved it aside ({} problems say so: {:?}) and filed the acked fault again: {pending} pending, emitted {:?}",
        moved.len(),
        moved
            .iter()
            .map(|p| &p[p.len().saturating_sub(160)..])
            .collect::<Vec<_>>(),
        again.emitted
    );
}

/// The phase a fault names is copied into its halt event's snapshot, and the event is cut
/// to the 8 MiB berth writes (`HaltEvent::fit_within`) by counting what it would write, up
/// to 8 MiB. A phase of 4,000 arrays nested 120 deep is 1 MB of state (a quarter of a
/// state's 4 MiB); pretty, each nested array costs its depth in indentation on two lines,
/// ~130 MB, which a measure of the whole text used to build (157 MiB peak) and drop with
/// the phase. A filing costs what it writes (the sibling tests: under 64 MiB).
#[test]
fn filing_a_fault_whose_phase_pretty_prints_large_costs_what_it_writes() {
    if !in_own_process(
        "halt_files::filing_a_fault_whose_phase_pretty_prints_large_costs_what_it_writes",
    ) {
        return;
    }
    let mut nested = "0".to_owned();
    for _ in 0..120 {
        nested = format!("[{nested}]");
    }
    let text = format!(
        r#"{{"slug":"r","phases":[{{"index":0,"status":"failed","x":[{}]}}]}}"#,
        vec![nested; 4000].join(",")
    );
    let state: Value = serde_json::from_str(&text).unwrap();
    let mut evidence = serde_json::Map::new();
    evidence.insert("phaseIndex".into(), Value::from(0));
    let fault = Fault {
        category: "X".into(),
        severity: Severity::High,
        description: "X happened".into(),
        source_files: vec![],
        evidence,
    };
    let run = RunRef {
        run_id: "r",
        state_slug: "r",
        state: Some(&state),
        ..RunRef::default()
    };
    let event = HaltEvent::from_fault(&run, &fault);
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    trim_and_reset_peak();
    let before = status_kib("VmRSS:");
    let emitted = store.emit(&event);
    let peak_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
    let written = fs::metadata(store.pending_path("r", &event.fault_id))
        .map(|m| m.len())
        .unwrap_or_default();
    assert!(
        peak_mib < 64,
        "filing a fault whose phase is {} bytes of state peaked at {peak_mib} MiB to write {written} bytes: {emitted:?}",
        text.len()
    );
}

/// Halt files are named by gstack's safe run id, which maps run ids `a_b` and `a/b` to one
/// name. Whoever writes the build-state dir adds a state file of run `a/b` (`z.json`,
/// synced after `a_b`'s `polis.json`) raising the fault run `a_b` raises: it used to
/// rewrite `a_b`'s pending event as its own, and once it cleared its resolved marker sat
/// beside it, so `a_b`'s still-raised fault showed resolved with no pending event. Now run
/// `a/b`'s filing is held while `a_b`'s event is at the name, and `a_b`'s stays pending.
#[test]
fn a_raised_fault_keeps_a_pending_event_when_a_run_of_the_same_safe_id_clears() {
    use berth::faults::halt_store::HaltStatus;
    let world = World::new();
    let state_dir = crate::halt_collisions::state_dir_of_colliding_runs(&world);
    let halts = HaltStore::new(world.root.join("skill-faults"));
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let learned = LearnedSet::default();
    let first = watch_runs(&set, &state_dir, &halts, &learned);
    assert!(
        first
            .emitted
            .contains(&"a_b/PHASE_FAILED:all:1fe2d874".to_owned()),
        "{first:?}"
    );
    fs::write(state_dir.join("z.json"), r#"{"slug": "a/b"}"#).unwrap();
    let second = watch_runs(&set, &state_dir, &halts, &learned);
    let listed: Vec<(String, HaltStatus)> = halts
        .list()
        .halts
        .into_iter()
        .map(|h| (h.run_id, h.status))
        .collect();
    assert!(
        listed.contains(&("a_b".to_owned(), HaltStatus::Pending)),
        "run a_b's fault is still raised but no pending event shows it: listed {listed:?}; resolved {:?}",
        second.resolved
    );
}

/// gstack's `persistHitCounts` counts every detector call that raised a fault; berth's
/// daemon counts "when a fault is newly raised" (docs/faults.md). A run whose pending
/// files reached the per-run cap (200) has its new fault held back, not filed, and so not
/// counted; if it clears before the cap frees, the hit is never counted: the learned
/// entry of its category keeps `hitCount` 0 where gstack's monitor would have made it 1.
#[test]
fn a_fault_held_back_by_the_pending_cap_still_counts_its_learned_hit() {
    let world = World::new();
    let state_dir = world.root.join("build-state");
    fs::create_dir_all(&state_dir).unwrap();
    fs::copy(fixture_path(), state_dir.join("polis.json")).unwrap();
    let faults = world.root.join("skill-faults");
    let pending = faults.join("pending-investigations");
    fs::create_dir_all(&pending).unwrap();
    for n in 0..200u32 {
        fs::write(
            pending.join(format!("polis-mesh-lane-b-OLD:p{n}:{n:08x}.json")),
            "{}",
        )
        .unwrap();
    }
    // A learned entry of the fixture's built-in category: gstack bumps it (its T14).
    let learned_path = faults.join("learned-patterns.json");
    let entry = json!({"category": "HAND_MERGED_FEATURE", "severity": "MEDIUM",
        "description": "kept", "matcherKind": "stdout_regex", "pattern": "^never-matches$",
        "source": "test", "learnedAt": "2026-05-17T00:00:00.000Z", "hitCount": 0});
    fs::write(&learned_path, json!([entry]).to_string()).unwrap();
    let learned = LearnedSet::load(&learned_path).unwrap();
    let rules = Rules::embedded().unwrap();
    let set = rules.current();
    let halts = HaltStore::new(&faults);
    let raised = watch_runs(&set, &state_dir, &halts, &learned);
    assert!(raised.emitted.is_empty(), "{raised:?}");
    assert!(raised.withheld > 0, "{raised:?}");
    clear_hand_merge(&state_dir);
    let cleared = watch_runs(&set, &state_dir, &halts, &learned);
    assert_eq!(
        hit_count(&learned_path),
        1,
        "a detector call raised HAND_MERGED_FEATURE once; passes {raised:?} then {cleared:?}"
    );
}
