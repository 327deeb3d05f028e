//! Runs whose safe run ids collide (`a_b` and `a/b` are both `a_b`): each files, archives,
//! resolves and acks its own files ([`super::stems`]).

use super::*;

fn names_in(dir: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_run_whose_safe_id_is_taken_files_resolves_and_archives_under_its_own_stem() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let fault = event("a_b", "X", "").fault_id;
    let own = Stems::of("a/b").own;
    assert!(
        own.starts_with("a_b~") && own.len() == "a_b~".len() + 16,
        "{own}"
    );
    store.emit(&event("a_b", "X", "first")).unwrap();
    assert_eq!(store.emit(&event("a/b", "X", "one")).unwrap(), Emitted::New);
    let recurred = store.emit(&event("a/b", "X", "two")).unwrap();
    assert_eq!(recurred, Emitted::Recurred { occurrences: 2 });
    assert_eq!(
        names_in(dir.path(), PENDING_DIR),
        [format!("a_b-{fault}.json"), format!("{own}-{fault}.json")]
    );
    assert_eq!(
        names_in(dir.path(), COLLAPSED_DIR),
        [format!("{own}-{fault}-1.json")]
    );
    let kept = read(
        &dir.path()
            .join(PENDING_DIR)
            .join(format!("a_b-{fault}.json")),
    );
    assert_eq!(kept["runId"], "a_b");
    assert!(kept["snapshot"].get("occurrences").is_none(), "{kept:#}");
    assert_eq!(
        store.pending_path("a/b", &fault),
        dir.path()
            .join(PENDING_DIR)
            .join(format!("{own}-{fault}.json"))
    );

    // Each clear writes the run's own marker, and a raise removes only its own.
    store.resolve("a/b", &fault).unwrap();
    store.resolve("a_b", &fault).unwrap();
    store.emit(&event("a_b", "X", "first")).unwrap();
    assert!(store.resolved_path("a/b", &fault).exists());
    assert!(!store.resolved_path("a_b", &fault).exists());
    let statuses: Vec<(String, HaltStatus)> = store
        .list()
        .halts
        .into_iter()
        .map(|h| (h.run_id, h.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("a_b".to_owned(), HaltStatus::Pending),
            ("a/b".to_owned(), HaltStatus::Resolved)
        ]
    );

    // An ack moves the run's own event, never the other run's under gstack's name.
    let moved = store.mark_investigated("a/b", &fault).unwrap();
    let processed = dir
        .path()
        .join(PROCESSED_DIR)
        .join(format!("{own}-{fault}.json"));
    assert_eq!(moved, Marked::Moved(processed.clone()));
    assert_eq!(store.processed_path("a/b", &fault), processed);
    assert_eq!(
        store.mark_investigated("a/b", &fault).unwrap(),
        Marked::AlreadyMoved
    );
    assert!(store.pending_path("a_b", &fault).exists());
}

#[test]
fn a_run_keeps_its_own_stem_while_a_file_of_it_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = HaltStore::new(dir.path());
    let fault = event("a_b", "X", "").fault_id;
    store.emit(&event("a_b", "X", "")).unwrap();
    store.emit(&event("a/b", "X", "")).unwrap();
    // gstack's name is free again (its run's event acked): the other run's pending event
    // still goes by its own stem, and is rewritten there, not filed twice.
    store.mark_investigated("a_b", &fault).unwrap();
    assert_eq!(
        store.emit(&event("a/b", "X", "")).unwrap(),
        Emitted::Refreshed
    );
    let own = Stems::of("a/b").own;
    assert_eq!(
        names_in(dir.path(), PENDING_DIR),
        [format!("{own}-{fault}.json")]
    );
    // A run alone keeps gstack's name.
    store.emit(&event("c/d", "X", "")).unwrap();
    assert!(
        dir.path()
            .join(PENDING_DIR)
            .join(format!("c_d-{fault}.json"))
            .exists()
    );
}

/// The per-run cap counts by stem: a run filed under its own stem counts against it, its
/// whole run id's; files under gstack's shared name count together.
#[test]
fn files_under_a_runs_own_stem_count_against_its_own_cap() {
    let dir = tempfile::tempdir().unwrap();
    plant_pending(dir.path(), "a_b", MAX_PENDING_PER_RUN - 1);
    let store = HaltStore::new(dir.path());
    store.emit(&event("a_b", "X", "")).unwrap();
    // gstack's name of X is a_b's: a/b's X goes under its own stem, within its own cap.
    assert_eq!(store.emit(&event("a/b", "X", "")).unwrap(), Emitted::New);
    // A fault whose gstack name is free counts under the shared name, which a_b filled.
    let held = store.emit(&event("a/b", "Y", ""));
    assert!(
        matches!(
            held,
            Err(HaltStoreError::Withheld {
                source: CapReached::Run,
                ..
            })
        ),
        "{held:?}"
    );
}
