//! One repository, one lane: two spellings of one origin (a symlinked path, `file://`
//! next to a path, GitHub owner/name in another case) give gstack two lock refs, yet berth
//! never lands them at once, in one daemon or in two.

use std::path::Path;

use berth::identity::normalize_remote_url;
use berth::lane_lock::{Acquire, Lane, Released, lock_ref_name};

use crate::lane_lock::{LONG_TTL, Reach, acquired, client, remote_by};
use crate::support::{GitLane, World};

/// `remote`'s bare repository reached through a symlink to its parent directory.
fn symlinked(bare: &Path, link: &Path) -> String {
    std::os::unix::fs::symlink(bare.parent().unwrap(), link).unwrap();
    link.join(bare.file_name().unwrap())
        .to_str()
        .unwrap()
        .to_owned()
}

fn lane_of(url: &str) -> Lane {
    Lane {
        repo_identity: normalize_remote_url(url).unwrap(),
        base_branch: "main".into(),
    }
}

/// Client A holds the lane through `first`; client B, through `second`, finds it held
/// until A lets go. Each holds gstack's ref of its own spelling.
fn second_spelling_waits(
    remote: &crate::lane_lock::Remote,
    first: (&str, Lane),
    second: (&str, Lane),
) {
    let (_a_dir, a) = client(LONG_TTL);
    let (_b_dir, b) = client(LONG_TTL);
    assert_ne!(lock_ref_name(&first.1), lock_ref_name(&second.1));
    let held = acquired(a.acquire(first.0, &first.1, "owner-a", Path::new("/a")));
    assert!(remote.sha(&lock_ref_name(&first.1)).is_some());
    match b.acquire(second.0, &second.1, "owner-b", Path::new("/b")) {
        Ok(Acquire::HeldElsewhere { holder, .. }) => assert_eq!(holder.owner_id, "owner-a"),
        other => panic!("the alias must find the lane held, got {other:?}"),
    }
    // B wrote nothing: its spelling's ref is absent, or is the shared ref A holds.
    let second_ref = lock_ref_name(&second.1);
    assert!(
        remote.sha(&second_ref).is_none()
            || held.alias_ref_names().any(|alias| alias == second_ref)
    );
    assert_eq!(a.release(&held).unwrap(), Released::Deleted);
    for alias in held.alias_ref_names() {
        assert_eq!(remote.sha(alias), None, "the alias lock is released too");
    }
    let taken = acquired(b.acquire(second.0, &second.1, "owner-b", Path::new("/b")));
    assert_eq!(remote.sha(&lock_ref_name(&second.1)), Some(taken.sha()));
    assert_eq!(b.release(&taken).unwrap(), Released::Deleted);
}

#[test]
fn a_symlinked_path_to_the_same_bare_repo_waits_for_the_lane() {
    let remote = remote_by(Reach::Path);
    let dir = tempfile::tempdir().unwrap();
    let alias = symlinked(&remote.bare, &dir.path().join("link"));
    second_spelling_waits(
        &remote,
        (&remote.url, lane_of(&remote.url)),
        (&alias, lane_of(&alias)),
    );
}

#[test]
fn a_file_url_and_a_path_to_the_same_bare_repo_are_one_lane() {
    let remote = remote_by(Reach::Path);
    let file_url = format!("file://{}", remote.bare.display());
    second_spelling_waits(
        &remote,
        (&file_url, lane_of(&file_url)),
        (&remote.url, lane_of(&remote.url)),
    );
}

#[test]
fn github_owner_and_name_in_another_case_are_one_lane() {
    let remote = remote_by(Reach::GitDaemon);
    let lane = |identity: &str| Lane {
        repo_identity: identity.into(),
        base_branch: "main".into(),
    };
    second_spelling_waits(
        &remote,
        (&remote.url, lane("github.com/Acme/Widget")),
        (&remote.url, lane("github.com/acme/widget")),
    );
    second_spelling_waits(
        &remote,
        (&remote.url, lane("github.com/acme/widget")),
        (&remote.url, lane("github.com/ACME/widget")),
    );
}

/// One daemon, two records of one bare repo cloned through two paths, room for two
/// lanes: one tick lands only one of them; the other waits for the lane.
#[test]
fn one_bare_repo_under_two_paths_never_lands_twice_at_once() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let alias_url = symlinked(Path::new(&lane.remote_url), &world.root.join("mirror"));
    let alias = GitLane {
        world: &world,
        clone: world.clone_into(&world.code, "widget-mirror", &alias_url),
        remote_url: alias_url,
    };
    let first = lane.queue(1, "main");
    let second = alias.queue(2, "main");

    let config = world.git_forge_config("max_lanes = 2\n");
    world.run_once(&config).success();

    let statuses: Vec<String> = [&first, &second]
        .iter()
        .map(|id| world.read_record(id)["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        world.ledger().len(),
        1,
        "one landing per lane: {statuses:?}"
    );
    assert!(statuses.contains(&"landed".to_owned()), "{statuses:?}");
    assert!(statuses.contains(&"queued".to_owned()), "{statuses:?}");
    assert!(
        world.lock_refs(&lane.remote_url).is_empty(),
        "both locks released"
    );
}

/// Two spellings of one bare repo whose identities berth keys apart (one names a sibling
/// checkout next to `widget.git`, the other a symlink straight to it) run as two lanes in
/// one daemon; only the ref every spelling shares serializes them. Finding that ref held
/// in this daemon's own name is then a live landing of this process, not an orphan.
#[test]
fn a_shared_ref_held_by_a_sibling_landing_of_this_daemon_is_not_an_orphan() {
    use std::time::Duration;

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let world = World::new();
    let lane = world.git_lane("widget", None);
    let bare = Path::new(&lane.remote_url);
    // A working checkout beside the bare repo: the identity `<remotes>/widget` names it.
    std::fs::create_dir(bare.with_extension("")).unwrap();
    let link = world.root.join("link.git");
    std::os::unix::fs::symlink(bare, &link).unwrap();
    let alias_url = link.to_str().unwrap().to_owned();
    let alias = GitLane {
        world: &world,
        clone: world.clone_into(&world.code, "widget-link", &alias_url),
        remote_url: alias_url,
    };
    let ids = [lane.queue(1, "main"), alias.queue(2, "main")];

    let trace = world.root.join("trace");
    let script = format!(
        "echo start $3 >> {trace}; sleep 1; {land} \"$1\" \"$2\" {ledger} \"$3\"; s=$?; echo end $3 >> {trace}; exit $s",
        trace = trace.display(),
        land = world.land_script().display(),
        ledger = world.root.join("ledger").display()
    );
    let config = world.config(&format!(
        "forge = \"git\"\nmax_lanes = 2\npoll_secs = 1\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    let mut daemon = world.spawn_watch(&config);
    let landed = |id: &String| world.read_record(id)["status"] == "landed";
    let _ = world.wait_for(Duration::from_secs(60), || ids.iter().all(landed));
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    let steps: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    let log = std::fs::read_to_string(world.berth_state().with_extension("log")).unwrap();
    assert!(
        !log.contains("orphaned lane lock"),
        "a sibling landing's live lock was taken for an orphan:\n{log}"
    );
    assert!(
        steps.len() == 4 && steps[0].starts_with("start") && steps[1].starts_with("end"),
        "overlapping landings: {steps:?}"
    );
    assert!(ids.iter().all(landed), "{steps:?}");
}

/// One bare repository reached by its path (a berth on the git server itself) and by the
/// network (`git://`, as `ssh://server/srv/git/w.git` from another host): every path that
/// reaches the repository reaches its `+repo` ref, but only the local spelling takes it, so
/// the network spelling's client takes the lane while the local one holds it.
#[test]
fn a_local_path_and_a_network_url_to_the_same_bare_repo_are_one_lane() {
    let remote = remote_by(Reach::GitDaemon);
    let path = remote.bare.to_str().unwrap().to_owned();
    second_spelling_waits(
        &remote,
        (&path, lane_of(&path)),
        (&remote.url, lane_of(&remote.url)),
    );
}

/// One daemon, two lanes of one repository that berth cannot tell are one: the bare
/// repository by a `git daemon` URL and by its path. They meet at the repository's `+repo`
/// lock. The first lane's refresh of that lock is written by the server, but its answer is
/// lost (the connection dies after the ref moved). The lock it left is still the first
/// lane's, a live landing of this process: the second lane must find it held by this
/// process (`holds`, which keeps the daemon from force-releasing it as an orphan), and the
/// first lane's next heartbeat and its release must carry on with it.
#[test]
fn a_refresh_whose_answer_was_lost_stays_the_live_lanes_lock() {
    use std::os::unix::fs::PermissionsExt as _;
    let remote = remote_by(Reach::GitDaemon);
    let armed = remote.bare.join("lose-the-next-answer");
    let hook = remote.bare.join("hooks/reference-transaction");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n[ \"$1\" = committed ] || exit 0\n[ -e '{armed}' ] || exit 0\ngrep -q ' refs/gstack/release-locks/+repo/' || exit 0\nrm -f '{armed}'\nkill -9 $PPID\n",
            armed = armed.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = remote.bare.to_str().unwrap().to_owned();
    let (by_url, by_path) = (lane_of(&remote.url), lane_of(&path));
    let (_dir, daemon) = client(LONG_TTL);
    let mut held = acquired(daemon.acquire(&remote.url, &by_url, "me", Path::new("/a")));

    let repo_ref = "refs/gstack/release-locks/+repo/main";
    let before = remote.sha(repo_ref).unwrap();
    std::fs::write(&armed, "").unwrap();
    let lost = daemon.heartbeat(&mut held);
    assert!(!armed.exists(), "the answer was not lost");
    assert!(lost.is_err(), "{lost:?}");
    let left = remote.sha(repo_ref).expect("the refresh was written");
    assert_ne!(left, before, "the refresh did not move the ref");
    assert!(
        daemon.holds(&left),
        "a live lane's lock taken for an orphan"
    );

    match daemon.acquire(&path, &by_path, "me", Path::new("/b")) {
        Ok(Acquire::HeldElsewhere { sha, .. }) => assert!(daemon.holds(&sha)),
        other => panic!("the second lane must find the lane held, got {other:?}"),
    }
    daemon.heartbeat(&mut held).unwrap();
    assert_eq!(daemon.release(&held).unwrap(), Released::Deleted);
    assert_eq!(
        remote.sha(repo_ref),
        None,
        "the +repo lock outlived its release"
    );
}

/// A legacy record (no `repoIdentity`) in flight in another live daemon holds the lane its
/// origin names, as its lock does: a queued record of that lane waits, and is never
/// selected beside it because the in-flight one was keyed by `path:<repoPath>` and the
/// queued one by its origin.
#[test]
fn a_legacy_record_in_flight_elsewhere_holds_its_origins_lane() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let in_flight = lane.queue(31, "main");
    let legacy = world.read_record(&in_flight);
    assert!(legacy.get("repoIdentity").is_none(), "legacy: {legacy:#}");
    world.plant_claim(&in_flight, "other-host:1:1", &berth::clock::now_iso());
    let queued = lane.queue(32, "main");

    world.run_once(&world.git_forge_config("")).success();
    assert_eq!(world.read_record(&queued)["status"], "queued");
    assert_eq!(world.read_record(&in_flight)["status"], "landing");
    assert!(world.ledger().is_empty(), "{:?}", world.ledger());
}
