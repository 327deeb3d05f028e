//! Review b22 (failing): the facts a watch round's queue detectors run over.

use std::collections::HashMap;

use super::*;

/// a25fb97 makes the two rounds' runs of the queue detectors take turns on one lock and
/// read the learned budget once their turn comes, "so the last to file judges the budget
/// as the last watch round left it". But a watch round whose budget changed takes the last
/// poll round's facts before its turn (in `budget_found`) and waits for the turn holding
/// them: a poll round that leaves newer facts and runs first is followed by a run over the
/// older ones. Here the poll round's facts say PR #7 carries the label with no local record
/// (QUEUE_REMOTE_DISAGREE, filed by its run); the watch round, which took the facts of the
/// poll round before (nothing labelled), runs after it and writes a resolved marker for a
/// fault the newest facts still raise (filed again a poll later: the flap a25fb97 fixed
/// for the budget). Which round reads the budget first does not matter here: each order
/// ends with the older facts judged last.
#[test]
fn a_watch_round_does_not_run_the_queue_detectors_over_facts_older_than_the_last_filed() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let config = crate::config::Config {
        forge: crate::config::ForgeKind::Git,
        faults_dir: Some(dir.path().join("faults")),
        build_state_dir: Some(dir.path().join("build-state")),
        ..Default::default()
    };
    let (allowlist, _) = crate::gates::Allowlist::build(Some(dir.path()), None, None);
    let shared = Shared::new(
        crate::store::QueueStore::new(&queue),
        allowlist,
        config,
        dir.path().join("berth"),
    )
    .unwrap();
    let budget = LearnedBudget {
        index: 3,
        category: "SLOW".into(),
        skipped: 10,
        budget_ms: 1000,
    };
    let newer = vec![RepoFacts {
        identity: "example.org/widget".into(),
        labelled: Some(vec![(7, "main".into())]),
        states: HashMap::new(),
        locks: Vec::new(),
        records: Vec::new(),
    }];
    // The poll round before: nothing labelled.
    shared.memory().last_poll = Some((Vec::new(), true));
    let memory = shared.memory();
    std::thread::scope(|s| {
        // The poll round's detectors take the turn first (and wait for the memory).
        let poll = s.spawn(|| detect(&shared, true, &newer));
        while shared.queue_detecting.try_lock().is_ok() {
            std::thread::yield_now();
        }
        // The watch round finds the budget changed: it takes the last poll's facts (as
        // left before this poll round's) and waits for its turn.
        let watch = s.spawn(|| budget_found(&shared, Some(budget)));
        drop(memory);
        poll.join().unwrap();
        watch.join().unwrap();
    });
    let pending = shared
        .config()
        .faults_dir_or_default()
        .join("pending-investigations");
    let files: Vec<(String, serde_json::Value)> = std::fs::read_dir(&pending)
        .unwrap()
        .flatten()
        .map(|e| {
            let text = std::fs::read(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, serde_json::from_slice(&text).unwrap())
        })
        .collect();
    let disagree: Vec<&str> = files
        .iter()
        .filter(|(_, event)| {
            event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("[QUEUE_REMOTE_DISAGREE] "))
        })
        .filter_map(|(_, event)| event["faultId"].as_str())
        .collect();
    assert_eq!(
        disagree.len(),
        1,
        "the poll round filed its fault: {files:?}"
    );
    let resolved: Vec<&String> = files
        .iter()
        .map(|(name, _)| name)
        .filter(|name| name.contains("RESOLVED-") && name.contains(disagree[0]))
        .collect();
    assert!(
        resolved.is_empty(),
        "the watch round's run over the facts it took before the poll round's resolved QUEUE_REMOTE_DISAGREE, which the newest facts raise: {resolved:?}"
    );
}
