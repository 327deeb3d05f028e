//! A local write left at its deadline, when its origin answers again.

use super::*;

/// The lock refs in the origin `bare`, each with its id ("<id> <ref>").
fn lock_refs_in(bare: &Path) -> Vec<String> {
    let out = std::process::Command::new("git")
        .args(["--git-dir", bare.to_str().unwrap(), "for-each-ref"])
        .args([
            "--format=%(objectname) %(refname)",
            "refs/gstack/release-locks/",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A release left at its deadline (its thread stuck opening an origin whose config
/// includes a FIFO) still gives the lane back once the origin answers: the delete is a
/// compare-and-swap against the released lock, so a late one can only remove that
/// lock. Refused, the lock stays, held by no landing (the caller forgot it), and every
/// other contender waits out its TTL (2 h by default).
#[test]
fn a_release_left_at_its_deadline_gives_the_lane_back_once_the_origin_answers() {
    let origin = BareOrigin::new();
    let settings = LockSettings {
        remote_timeout: Duration::from_secs(2),
        ..LockSettings::default()
    };
    let scratch = origin.dir.path().join("scratch");
    let client = Arc::new(LockClient::new(&scratch, settings).unwrap());
    let taken = acquire(&client, &origin);
    let Ok(Acquire::Acquired(held)) = taken else {
        panic!("the lane was not taken: {taken:?}");
    };
    // gstack's ref is released first (its alias after it, refused at once while the
    // first is left): its release is the one left at its deadline.
    let own = format!("{} {}", held.sha, held.ref_name);
    assert!(lock_refs_in(&origin.bare).contains(&own), "{own}");
    let included = fifo_included_by_config(&origin.bare);
    let (tx, rx) = mpsc::channel();
    let releaser = Arc::clone(&client);
    std::thread::spawn(move || {
        let _ = tx.send(format!("{:?}", releaser.release(&held)));
    });
    let released = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the release never returned");
    assert!(
        released.contains(&did_not_answer_within_a_writes_deadline()),
        "{released}"
    );
    let writer = answer_stuck_opens(&included).expect("no access is stuck opening the FIFO");
    drop(writer);
    std::fs::remove_file(&included).unwrap();
    std::fs::write(&included, "").unwrap();
    until_none_late_on(&origin.bare);
    let left = lock_refs_in(&origin.bare);
    assert!(
        !left.contains(&own),
        "the released lock {own} still holds the lane after its late release returned: {left:?}"
    );
}
