use std::collections::HashSet;

use super::*;

/// `active-faults/` in a fresh temp dir: the temp dir (kept alive) and the handle.
fn active() -> (tempfile::TempDir, PrivateDir) {
    let root = tempfile::tempdir().unwrap();
    let dir = PrivateDir::ensure(root.path(), "active-faults").unwrap();
    (root, dir)
}

/// A look for a run's other registries keeps only the fault ids the pass asks about
/// (the faults the run raises or clears): ten registries of the run planted within the
/// 8 MiB a registry may be, each of distinct ids, are more than one faults-dir parse
/// may take. Those past the look's read budget count as unread, the fault stays raised.
#[test]
fn a_look_for_a_runs_other_registries_holds_at_most_one_parse_of_fault_ids() {
    const REGISTRIES: usize = 10;
    const ENTRIES: usize = 1_900;
    let (_root, dir) = active();
    let scope = "s".repeat(4_000);
    for r in 0..REGISTRIES {
        let active = (0..ENTRIES)
            .map(|n| {
                let fault = ActiveFault {
                    fault_id: format!("K:{scope}:{:08x}", r * ENTRIES + n),
                    first_detected_at: String::new(),
                };
                (format!("d{n}"), fault)
            })
            .collect();
        let registry = Registry {
            run_id: "run".into(),
            source: format!("/queue-{r}"),
            updated_at: String::new(),
            active,
        };
        let name = name("run", &format!("/queue-{r}"));
        save(&dir, &name, &registry).unwrap();
        let size = dir.entry(&name).unwrap().unwrap().size;
        assert!(size <= json_file::MAX_JSON_BYTES, "{size}");
    }
    // What a pass asks about: the faults its run raises or clears, here every tenth id
    // planted (as many as one registry of the run holds) and one held nowhere.
    let ids: Vec<String> = (0..REGISTRIES * ENTRIES)
        .step_by(10)
        .map(|n| format!("K:{scope}:{n:08x}"))
        .chain(["K:elsewhere:00000000".to_owned()])
        .collect();
    let asked: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let elsewhere = raised_elsewhere(
        &mut PassReads::default(),
        &dir,
        ("run", &name("run", "/s/own.json")),
        &asked,
    );
    assert_eq!(elsewhere.unread().len(), 1, "{:?}", elsewhere.unread());
    assert!(!elsewhere.raised.is_empty());
    assert!(
        elsewhere
            .raised
            .iter()
            .all(|id| asked.contains(id.as_str()))
    );
    assert!(!elsewhere.contains(&ids[ids.len() - 1]));
    let held: usize = elsewhere.raised.iter().map(String::len).sum();
    assert!(
        held <= json_file::MAX_JSON_PARSE,
        "one look holds {} fault ids, {held} bytes of them",
        elsewhere.raised.len()
    );
}

#[test]
fn unreadable_registry_is_moved_aside_not_lost() {
    let (_root, dir) = active();
    let path = dir.join("run.json");
    let (registry, warning) = load(&dir, "run.json", "run", "/s.json").unwrap();
    assert!(registry.active.is_empty() && warning.is_none());
    std::fs::write(&path, b"{ torn").unwrap();
    let (registry, warning) = load(&dir, "run.json", "run", "/s.json").unwrap();
    assert!(registry.active.is_empty());
    assert!(warning.unwrap().contains("moved aside"));
    assert!(!path.exists());
    let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let kept = kept[0].as_ref().unwrap().path();
    assert_eq!(std::fs::read(kept).unwrap(), b"{ torn");
}

/// A run's own registry whose content quotes a megabyte string where a map belongs:
/// serde's error quotes it whole, but the move aside's line says a cut of it.
#[test]
fn a_moved_aside_registry_is_said_in_a_bounded_line() {
    let (_root, dir) = active();
    let planted = format!(
        r#"{{"run_id":"run","source":"/s.json","updated_at":"","active":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    std::fs::write(dir.join("run.json"), planted).unwrap();
    let (_, warning) = load(&dir, "run.json", "run", "/s.json").unwrap();
    let warning = warning.unwrap();
    assert!(warning.contains("moved aside"), "{warning}");
    assert!(
        warning.len() < 2 * MAX_SAID_BYTES + 400,
        "{} bytes",
        warning.len()
    );
}

/// Content planted at a registry's name on every pass leaves the newest few moved-aside
/// files, not one per pass for good; other registries' files are not touched.
#[test]
fn only_the_newest_moved_aside_registries_are_kept() {
    let (_root, dir) = active();
    let older: Vec<String> = (1..=5)
        .map(|n| format!("run.json.unreadable-2020010{n}T000000.000Z"))
        .collect();
    for name in &older {
        std::fs::write(dir.join(name), b"{ torn").unwrap();
    }
    let other = "other.json.unreadable-20200101T000000.000Z";
    std::fs::write(dir.join(other), b"{ torn").unwrap();
    std::fs::write(dir.join("run.json"), b"{ torn").unwrap();
    load(&dir, "run.json", "run", "/s.json").unwrap();
    let (mut kept, _) = dir.names_up_to(usize::MAX).unwrap();
    kept.sort();
    assert_eq!(kept.len(), MAX_ASIDE_PER_REGISTRY + 1, "{kept:?}");
    assert_eq!(kept[0], other);
    assert_eq!(kept[1..3], older[3..5]);
    assert!(kept[3] > older[4], "{kept:?}");
}

/// Whoever writes the faults dir fills `active-faults/` with 60,000 names of 240 bytes:
/// a fault watch pass's look for the run's other registries (and the move aside's
/// pruning) holds them all, not the 10,000 names a listing of a halt subdir reads.
#[test]
fn a_look_for_a_runs_other_registries_holds_a_bounded_listing() {
    let (_root, dir) = active();
    for n in 0..60_000 {
        let name = format!("{n:06}{}", "x".repeat(234));
        std::fs::File::create(dir.join(name)).unwrap();
    }
    crate::rules::memory::start();
    let others = others_exist(&dir, "run", "run-01234567.json");
    let elsewhere = raised_elsewhere(
        &mut PassReads::default(),
        &dir,
        ("run", "run-01234567.json"),
        &HashSet::new(),
    );
    let peak = crate::rules::memory::stop();
    assert!(!others && elsewhere.raised.is_empty());
    let bound = (MAX_NAMES_PER_LISTING * (255 + 48)) as isize;
    assert!(
        peak <= bound,
        "looking for a run's other registries held {peak} bytes at its peak, over the {bound} of a 10,000-name listing"
    );
}

/// More registries of the run than a listing holds: the ones left unread may hold any
/// fault, so they count as unread and the run's faults stay raised.
#[test]
fn more_registries_of_a_run_than_a_listing_holds_count_as_unread() {
    let (_root, dir) = active();
    // Another run with the same safe id: read, it raises nothing for `run/1`.
    let other = Registry {
        run_id: "run:1".into(),
        ..Registry::default()
    };
    save(&dir, "first.json", &other).unwrap();
    let prefix = name_prefix("run/1");
    for n in 0..=MAX_NAMES_PER_LISTING {
        fs::hard_link(
            dir.join("first.json"),
            dir.join(format!("{prefix}{n}.json")),
        )
        .unwrap();
    }
    let elsewhere = raised_elsewhere(
        &mut PassReads::default(),
        &dir,
        ("run/1", &name("run/1", "/s/b.json")),
        &HashSet::new(),
    );
    assert!(elsewhere.raised.is_empty());
    assert_eq!(elsewhere.unread().len(), 1, "{:?}", elsewhere.unread());
}

/// More moved-aside files than a listing holds: the newest may be among the unread, so
/// none is removed.
#[test]
fn moved_aside_registries_past_a_listing_are_not_pruned() {
    let (_root, dir) = active();
    for n in 0..=MAX_NAMES_PER_LISTING {
        fs::File::create(dir.join(format!("r.json.unreadable-{n:06}"))).unwrap();
    }
    prune_asides(&dir, "r.json");
    let (left, _) = dir.names_up_to(usize::MAX).unwrap();
    assert_eq!(left.len(), MAX_NAMES_PER_LISTING + 1);
}

#[test]
fn each_state_file_of_a_run_has_its_own_registry() {
    let (root, dir) = active();
    let (a_name, b_name) = (name("run/1", "/s/a.json"), name("run/1", "/s/b.json"));
    let a = path(dir.path(), "run/1", "/s/a.json");
    assert_ne!(a_name, b_name);
    assert!(
        a.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("run_1-")
    );
    let state = root.path().join("a-state.json");
    fs::write(&state, "{}").unwrap();
    let mut registry = Registry {
        run_id: "run/1".into(),
        source: state.display().to_string(),
        ..Registry::default()
    };
    registry.active.insert(
        "X:all:*".into(),
        ActiveFault {
            fault_id: "PHASE_FAILED:all:0123abcd".into(),
            first_detected_at: "t".into(),
        },
    );
    save(&dir, &a_name, &registry).unwrap();
    // Another run whose id has the same safe form does not count.
    save(
        &dir,
        &name("run:1", "/s/c.json"),
        &Registry {
            run_id: "run:1".into(),
            ..registry.clone()
        },
    )
    .unwrap();
    let asked = HashSet::from(["PHASE_FAILED:all:0123abcd"]);
    let elsewhere = raised_elsewhere(&mut PassReads::default(), &dir, ("run/1", &b_name), &asked);
    assert_eq!(
        elsewhere.raised,
        HashSet::from(["PHASE_FAILED:all:0123abcd".to_owned()])
    );
    assert!(elsewhere.unread().is_empty());
    assert!(
        raised_elsewhere(&mut PassReads::default(), &dir, ("run/1", &a_name), &asked)
            .raised
            .is_empty()
    );
    assert!(
        a.exists(),
        "{a:?}: only a gone state file's registry is removed"
    );
}

/// A registry of the run that cannot be read (here a directory in its place) may hold
/// any fault: it is reported, never read as "holds nothing".
#[test]
fn an_unreadable_other_registry_is_reported_not_read_as_empty() {
    let (_root, dir) = active();
    let a = path(dir.path(), "run/1", "/s/a.json");
    fs::create_dir(&a).unwrap();
    let elsewhere = raised_elsewhere(
        &mut PassReads::default(),
        &dir,
        ("run/1", &name("run/1", "/s/b.json")),
        &HashSet::new(),
    );
    assert_eq!(elsewhere.unread().len(), 1, "{elsewhere:?}");
    assert!(elsewhere.unread()[0].contains(&a.display().to_string()));
}

/// A detector id carries its fault's first source file, which a state may name at any
/// length: the registry keeps a long one under a key of at most `MAX_KEY_BYTES` written
/// (control bytes, six each written, counted), two ids that share a long start under two
/// keys, and a short id as it is.
#[test]
fn a_long_detector_id_is_kept_under_a_key_of_a_fixed_size() {
    let written = |key: &str| serde_json::to_string(key).unwrap().len() as u64 - 2;
    assert_eq!(key("X:1:/s/plan.md"), "X:1:/s/plan.md");
    let exact = format!("X:1:{}", "p".repeat(MAX_KEY_BYTES as usize - 4));
    assert_eq!(key(&exact), exact);
    let start = format!("X:1:{}", "\u{1}".repeat(4_000));
    let (a, b) = (format!("{start}/a.md"), format!("{start}/b.md"));
    for id in [&a, &b, &exact[..exact.len() - 1].replace('p', "\"")] {
        let key = key(id);
        assert!(written(&key) <= MAX_KEY_BYTES, "{} bytes", written(&key));
        assert!(key.starts_with("X:1:"), "{key:?}");
    }
    assert_ne!(key(&a), key(&b));
    assert_eq!(key(&a), key(&format!("{start}/a.md")));
}

/// A registry of many detector ids of one fault id past the 8 MiB berth reads, even
/// compact: it is written with the first detector id of that fault only, and reads back.
#[test]
fn a_registry_past_what_berth_reads_keeps_one_detector_id_per_fault() {
    const ENTRIES: usize = 20_000;
    let (_root, dir) = active();
    let fault = |id: &str| ActiveFault {
        fault_id: id.to_owned(),
        first_detected_at: "2026-01-01T00:00:00.000Z".into(),
    };
    let mut active: BTreeMap<String, ActiveFault> = (0..ENTRIES)
        .map(|n| {
            (
                key(&format!("X:{n}:{}", "p".repeat(500))),
                fault("K:all:00000000"),
            )
        })
        .collect();
    active.insert("Y:all:*".into(), fault("K:all:11111111"));
    let registry = Registry {
        run_id: "run".into(),
        source: "/s/run.json".into(),
        updated_at: String::new(),
        active,
    };
    assert_eq!(save(&dir, "run.json", &registry).unwrap(), ENTRIES - 1);
    let size = dir.entry("run.json").unwrap().unwrap().size;
    assert!(size <= json_file::MAX_JSON_BYTES, "{size}");
    let (read, warning) = load(&dir, "run.json", "run", "/s/run.json").unwrap();
    assert!(warning.is_none(), "{warning:?}");
    let faults: HashSet<&str> = read.active.values().map(|a| a.fault_id.as_str()).collect();
    assert_eq!(faults, HashSet::from(["K:all:00000000", "K:all:11111111"]));
    assert_eq!(read.active.len(), 2);
}

/// A registry whose distinct faults alone are past the 8 MiB berth reads (planted fault
/// ids it carried over) is not written: the save says why, the file there is kept.
#[test]
fn a_registry_too_large_to_read_back_is_not_written_and_the_old_one_stays() {
    let (_root, dir) = active();
    let mut registry = Registry {
        run_id: "run".into(),
        source: "/s/run.json".into(),
        ..Registry::default()
    };
    save(&dir, "run.json", &registry).unwrap();
    let before = fs::read(dir.join("run.json")).unwrap();
    for n in 0..3 {
        let fault = ActiveFault {
            fault_id: format!("K:{}:{n:08x}", "s".repeat(3 << 20)),
            first_detected_at: String::new(),
        };
        registry.active.insert(format!("X:{n}:*"), fault);
    }
    let refused = save(&dir, "run.json", &registry).unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::FileTooLarge,
        "{refused}"
    );
    assert!(refused.to_string().contains("8388608"), "{refused}");
    assert_eq!(fs::read(dir.join("run.json")).unwrap(), before);
}

/// A run's own registry larger than berth reads: berth writes none ([`save`]), so it was
/// planted or left by a berth before 3ada9b0. Left unread it would hide every new fault of
/// its state file for good; it is moved aside as invalid, named, and the run starts afresh
/// (its faults filed anew: fail closed for halts). Read as another run's registry (the
/// look's [`read_opened`]), the same file stays a read error: nothing of it is known.
#[test]
fn an_own_registry_larger_than_berth_reads_is_moved_aside_another_runs_left_unread() {
    let (_root, dir) = active();
    let path = dir.join("run.json");
    fs::File::create(&path)
        .unwrap()
        .set_len(json_file::MAX_JSON_BYTES + 1)
        .unwrap();
    let opened = dir
        .open_regular("run.json", json_file::MAX_JSON_BYTES)
        .map(|opened| read_opened(opened).map(|_| ()));
    assert!(
        matches!(
            opened,
            Err(ReadError::TooLarge { .. }) | Ok(Err(ReadError::TooLarge { .. }))
        ),
        "{opened:?}"
    );
    let (registry, warning) = load(&dir, "run.json", "run", "/s.json").unwrap();
    assert!(registry.active.is_empty());
    let warning = warning.unwrap();
    assert!(warning.contains("moved aside"), "{warning}");
    let (names, _) = dir.names_up_to(usize::MAX).unwrap();
    assert!(
        names.len() == 1 && names[0].starts_with("run.json.unreadable-"),
        "{names:?}"
    );
}
