//! berth beside gstack's TypeScript daemon: the values of `../shared/gstack/release-daemon.md`
//! (identities, record ids, lock refs, lock payloads, Appendix A texts) checked through real
//! daemon runs against real bare remotes. Locks are written the way gstack writes them,
//! with the `git` CLI (`mktree`, `commit-tree -m -m`, `push`).

use std::fs;
use std::path::Path;

use berth::clock;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::{GhLane, GitLane, World};

/// The lock ref gstack computes for `identity` and `main` (`safe_key` of each part).
fn gstack_lock_ref(identity: &str) -> String {
    format!(
        "refs/gstack/release-locks/{}/main",
        berth::safe_key::safe_key(identity)
    )
}

/// gstack's payload (`JSON.stringify(p, null, 2)`), expiring `expires_in` from now.
fn gstack_payload(identity: Option<&str>, expires_in: chrono::Duration) -> Value {
    let now = clock::now();
    let mut payload = json!({
        "ownerId": "gstack-mac-4242-pr-4",
        "repoPath": "/Users/alice/code/widget",
        "repoIdentity": identity,
        "baseBranch": "main",
        "createdAt": clock::iso(now - chrono::Duration::hours(3)),
        "expiresAt": clock::iso(now + expires_in),
    });
    if identity.is_none() {
        // What gstack's own tests write: no repoIdentity, no createdAt.
        let fields = payload.as_object_mut().unwrap();
        fields.remove("repoIdentity");
        fields.remove("createdAt");
    }
    payload
}

/// Writes a lock as gstack does, onto `remote_url`; returns the lock commit.
pub(crate) fn gstack_write_lock(
    world: &World,
    remote_url: &str,
    ref_name: &str,
    payload: &Value,
) -> String {
    let work = world.root.join("gstack-lock-writer");
    if !work.exists() {
        world.run_git(&world.root, &["init", "-q", "--bare", "gstack-lock-writer"]);
    }
    let tree = world.run_git(&work, &["mktree"]);
    let body = serde_json::to_string_pretty(payload).unwrap();
    let sha = world.run_git(
        &work,
        &[
            "commit-tree",
            &tree,
            "-m",
            "gstack release lock",
            "-m",
            &body,
        ],
    );
    world.run_git(
        &work,
        &[
            "push",
            "-q",
            "--force",
            remote_url,
            &format!("{sha}:{ref_name}"),
        ],
    );
    sha
}

/// The sha a remote's ref points at, as `git ls-remote` sees it.
fn remote_sha(world: &World, remote_url: &str, ref_name: &str) -> Option<String> {
    world
        .run_git(&world.root, &["ls-remote", remote_url, ref_name])
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

/// Queues PR 4 on `main` the way gstack's producer writes it: `repoIdentity` set, the file
/// named by gstack's record id.
fn queue_as_gstack(lane: &GitLane<'_>, identity: &str) -> String {
    let feature = lane.push_feature("feat/pr-4", "main");
    let id = lane
        .world
        .record(&lane.clone, 4)
        .set("featureBranch", feature)
        .set("repoIdentity", identity)
        .write();
    assert_eq!(
        id,
        format!("{}-main-pr-4", berth::safe_key::safe_key(identity)),
        "gstack's record id"
    );
    id
}

/// Local-path and `file://` origins: gstack's identity is the path itself, or `file:` + the
/// path (`.git` stripped). A gstack daemon holding that lane keeps berth off it.
#[test]
fn a_gstack_lock_on_a_local_or_file_remote_keeps_berth_off_the_lane() {
    for form in ["path", "file"] {
        let world = World::new();
        let bare = world.root.join("remotes/widget.git");
        let bare_text = bare.to_str().unwrap();
        let (origin, identity) = match form {
            "path" => (
                bare_text.to_owned(),
                bare_text.trim_end_matches(".git").to_owned(),
            ),
            _ => (
                format!("file://{bare_text}"),
                format!("file:{}", bare_text.trim_end_matches(".git")),
            ),
        };
        let lane = world.git_lane("widget", Some(origin.clone()));
        assert_eq!(
            berth::identity::repo_identity(&lane.clone).unwrap(),
            identity
        );
        let id = queue_as_gstack(&lane, &identity);
        let ref_name = gstack_lock_ref(&identity);
        let held = gstack_write_lock(
            &world,
            &origin,
            &ref_name,
            &gstack_payload(Some(&identity), chrono::Duration::hours(1)),
        );

        let run = world
            .run_once(&world.git_forge_config(""))
            .success()
            .get_output()
            .clone();
        let log = String::from_utf8_lossy(&run.stderr);

        assert!(
            world.ledger().is_empty(),
            "{form}: landed under gstack's lock"
        );
        let record = world.read_record(&id);
        assert_eq!(record["status"], "queued", "{form}");
        let why = record["lastError"].as_str().unwrap();
        assert!(
            why.starts_with(
                "release lock unavailable for main: release lock held by gstack-mac-4242-pr-4 until "
            ),
            "{form}: {why}"
        );
        assert!(
            log.contains(
                "release lock unavailable for main: release lock held by gstack-mac-4242-pr-4"
            ),
            "{form}: {log}"
        );
        assert!(log.contains("PR #4: queued"), "{form}: {log}");
        assert_eq!(
            remote_sha(&world, &origin, &ref_name),
            Some(held),
            "{form}: gstack's lock left alone"
        );
        assert_eq!(
            world.lock_refs(&origin),
            [ref_name],
            "{form}: no lock of berth's own"
        );
    }
}

/// A payload without `repoIdentity` and `createdAt` (as gstack's own tests write them) is
/// read as gstack reads it and taken over once expired; over `git daemon`, where the
/// takeover is a compare-and-swap the server enforces, and over a local path.
#[test]
fn an_expired_gstack_lock_without_identity_or_created_at_is_taken_over() {
    for served in [true, false] {
        let world = World::new();
        let server = served.then(|| world.git_daemon());
        let origin = server.as_ref().map(|s| s.url_for("widget.git"));
        let lane = world.git_lane("widget", origin);
        let identity = berth::identity::repo_identity(&lane.clone).unwrap();
        let id = queue_as_gstack(&lane, &identity);
        let ref_name = gstack_lock_ref(&identity);
        let stale = gstack_write_lock(
            &world,
            &lane.remote_url,
            &ref_name,
            &gstack_payload(None, -chrono::Duration::minutes(5)),
        );
        assert!(remote_sha(&world, &lane.remote_url, &ref_name).is_some());

        let run = world
            .run_once(&world.git_forge_config(""))
            .success()
            .get_output()
            .clone();

        assert_eq!(world.ledger(), [4], "served={served}");
        let record = world.read_record(&id);
        assert_eq!(record["status"], "landed", "served={served}");
        assert!(record.get("lastError").is_none(), "{record:#}");
        assert!(
            String::from_utf8_lossy(&run.stderr).contains("PR #4: landed"),
            "served={served}"
        );
        // Taken over, landed, released: the stale lock is gone and none is left.
        assert_ne!(remote_sha(&world, &lane.remote_url, &ref_name), Some(stale));
        assert!(world.lock_refs(&lane.remote_url).is_empty());
    }
}

/// Locks gstack (or a broken writer) left unreadable keep berth off the lane, and the
/// record says why in gstack's words (A.3): nothing is ever taken over that cannot be read.
#[test]
fn unreadable_gstack_locks_keep_berth_off_the_lane() {
    let expiry_unreadable = {
        let mut payload = gstack_payload(Some("x"), chrono::Duration::hours(1));
        payload["expiresAt"] = "soon".into();
        payload
    };
    let cases = [
        (
            json!("not a payload"),
            "release lock payload unreadable at ",
        ),
        (
            expiry_unreadable,
            "release lock expiry unreadable for gstack-mac-4242-pr-4",
        ),
    ];
    for (payload, reason) in cases {
        let world = World::new();
        let lane = world.git_lane("widget", None);
        let identity = berth::identity::repo_identity(&lane.clone).unwrap();
        let id = queue_as_gstack(&lane, &identity);
        let ref_name = gstack_lock_ref(&identity);
        let held = gstack_write_lock(&world, &lane.remote_url, &ref_name, &payload);

        let run = world
            .run_once(&world.git_forge_config(""))
            .success()
            .get_output()
            .clone();

        assert!(world.ledger().is_empty(), "{reason}: landed");
        let record = world.read_record(&id);
        assert_eq!(record["status"], "queued", "{reason}");
        let why = record["lastError"].as_str().unwrap();
        let expected = format!("release lock unavailable for main: {reason}");
        assert!(why.starts_with(&expected), "{why}");
        assert!(
            String::from_utf8_lossy(&run.stderr).contains(&expected),
            "{reason}: not logged"
        );
        assert_eq!(
            remote_sha(&world, &lane.remote_url, &ref_name),
            Some(held),
            "{reason}: the lock was touched"
        );
    }
}

/// PR 6 queued on a fresh lane and `berth run --once` started on it, with a landing
/// process that sleeps (`extra`: more config); returns once that process runs.
fn mid_landing<'w>(world: &'w World, extra: &str) -> (GitLane<'w>, String, std::process::Child) {
    let lane = world.git_lane("widget", None);
    let id = lane.queue(6, "main");
    let config = crate::daemon::sleeping_config(world, extra);
    let mut daemon = world.spawn_berth(
        &["run", "--once", "--config", config.to_str().unwrap()],
        &world.berth_state(),
        &[],
    );
    crate::crash::wait_for_pid(&world.root.join("landing.pid"), &mut daemon);
    (lane, id, daemon)
}

/// What the daemon started by [`mid_landing`] logged.
fn daemon_log(world: &World) -> String {
    fs::read_to_string(world.berth_state().with_extension("log")).unwrap()
}

/// gstack takes the lane `lane`'s landing holds: its live lock pushed over berth's.
/// Returns the lock ref.
fn gstack_takes_over(world: &World, lane: &GitLane<'_>) -> String {
    // gstack's ref, not the one every spelling of the local repository shares.
    let refs = world.lock_refs(&lane.remote_url);
    let [ref_name] = &refs
        .iter()
        .filter(|r| !r.contains("/+repo/"))
        .collect::<Vec<_>>()[..]
    else {
        panic!("one gstack lock while landing: {refs:?}");
    };
    let identity = berth::identity::repo_identity(&lane.clone).unwrap();
    let payload = gstack_payload(Some(&identity), chrono::Duration::hours(1));
    gstack_write_lock(world, &lane.remote_url, ref_name, &payload);
    (*ref_name).clone()
}

/// The heartbeat finds the lane lock taken over, or deleted, or origin gone for longer
/// than the TTL, while the landing process runs: gstack's `release lock heartbeat failed:
/// …` line, the step stopped, the record blocked with `release lock ownership lost during
/// landing: <gstack's reason>`, and a lock berth cannot release said with `warning: could
/// not release <ref>: …`.
#[test]
fn a_lock_lost_mid_landing_is_said_in_gstacks_words() {
    for case in ["taken over", "deleted", "origin gone"] {
        let world = World::new();
        let (lane, id, mut daemon) = mid_landing(&world, "heartbeat_secs = 1\nlock_ttl_secs = 3\n");
        // gstack's ref, not the one every spelling of the local repository shares.
        let ref_name = world
            .lock_refs(&lane.remote_url)
            .into_iter()
            .find(|r| !r.contains("/+repo/"))
            .unwrap();
        let remote = Path::new(&lane.remote_url);
        // (gstack's reason in `lastError`, what the heartbeat line says after its words)
        let (reason, heartbeat) = match case {
            "taken over" => {
                gstack_takes_over(&world, &lane);
                let not_ours = "release lock is no longer owned by this daemon";
                (not_ours, not_ours.to_owned())
            }
            "deleted" => {
                world.run_git(remote, &["update-ref", "-d", &ref_name]);
                let gone = "release lock ref disappeared";
                (gone, gone.to_owned())
            }
            _ => {
                fs::rename(remote, remote.with_extension("moved")).unwrap();
                // berth's error for a refresh that never reached origin.
                (
                    "release lock heartbeat failed",
                    format!("refresh of lane lock {ref_name}"),
                )
            }
        };
        let stopped = world.wait_for(std::time::Duration::from_secs(20), || {
            daemon.try_wait().unwrap().is_some()
        });
        if !stopped {
            let _ = daemon.kill();
        }
        assert!(stopped, "{case}: the landing went on without its lock");
        assert_eq!(daemon.wait().unwrap().code(), Some(1), "{case}");

        let record = world.read_record(&id);
        assert_eq!(record["status"], "blocked", "{case}");
        let last = record["lastError"].as_str().unwrap();
        let lost = format!("release lock ownership lost during landing: {reason}");
        assert!(last.starts_with(&lost), "{case}: {last}");
        let log = daemon_log(&world);
        let mut lines = vec![
            format!("release lock heartbeat failed: {heartbeat}"),
            "PR #6: blocked".to_owned(),
        ];
        match case {
            "taken over" => lines.push(format!(
                "warning: could not release {ref_name}: release lock is no longer owned by this daemon"
            )),
            "origin gone" => lines.push(format!("warning: could not release {ref_name}: ")),
            _ => {}
        }
        for line in lines {
            assert!(log.contains(&line), "{case}: no `{line}` in\n{log}");
        }
        assert!(world.ledger().is_empty(), "{case}: landed");
    }
}

/// `berth run --once` against the stand-in, expecting exit `code`; its log.
fn gh_run_once(gh: &GhLane<'_>, config: &Path, code: i32) -> String {
    let run = gh
        .berth()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .assert()
        .code(code)
        .get_output()
        .clone();
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// The gh forge's A.1/A.2 texts from real `--once` runs against the stand-in: a claim
/// check that finds the label gone, and one repo's failed discovery.
#[test]
fn gh_claim_and_discovery_texts_in_gstacks_words() {
    // The label was taken off the PR after it was queued.
    let world = World::new();
    let gh = world.gh_lane();
    let id = gh.queue_pr_42();
    gh.edit_pr_42(|pr| pr["labels"] = json!([]));
    let log = gh_run_once(&gh, &gh.config(r#"["true"]"#, ""), 1);
    let record = world.read_record(&id);
    assert_eq!(record["status"], "blocked");
    assert_eq!(
        record["lastError"],
        "queued PR marker verification failed: PR #42 no longer carries the gstack-release-queued label"
    );
    assert!(log.contains("PR #42: blocked"), "{log}");

    // Listing the configured repo's queued PRs fails.
    let world = World::new();
    let gh = world.gh_lane();
    fs::write(gh.replies.join("pr-list.acme.widget.exit"), "1").unwrap();
    fs::write(
        gh.replies.join("pr-list.acme.widget.stderr"),
        "HTTP 502: Bad Gateway",
    )
    .unwrap();
    let repo = gh.repo.to_str().unwrap();
    let config = gh.config(r#"["true"]"#, &format!("repos = [{repo:?}]\n"));
    let log = gh_run_once(&gh, &config, 0);
    let line = format!("warning: could not discover queued PRs for {repo}: ");
    assert!(log.contains(&line), "no `{line}` in\n{log}");
    assert!(log.contains("HTTP 502: Bad Gateway"), "{log}");
    assert!(log.contains("release queue empty"), "{log}");
}

/// An origin (over `git daemon`, where hooks run) that refuses every push of the lane
/// lock: the record goes back to the queue with gstack's `release lock unavailable for
/// <base>: lock already held: …`, logged on its own line as gstack logs it, and nothing
/// lands.
#[test]
fn a_lock_origin_refuses_is_unavailable_in_gstacks_words() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    let server = world.git_daemon();
    let lane = world.git_lane("widget", Some(server.url_for("widget.git")));
    let id = lane.queue(6, "main");
    let hook = world.root.join("remotes/widget.git/hooks/pre-receive");
    fs::write(
        &hook,
        "#!/bin/sh\necho 'lock refs are read-only here' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();

    let run = world
        .run_once(&world.git_forge_config(""))
        .success()
        .get_output()
        .clone();

    let record = world.read_record(&id);
    assert_eq!(record["status"], "queued");
    let last = record["lastError"].as_str().unwrap();
    let unavailable = "release lock unavailable for main: lock already held: lane lock refs/gstack/release-locks/";
    assert!(last.starts_with(unavailable), "{last}");
    let log = String::from_utf8_lossy(&run.stderr);
    for line in [unavailable, "PR #6: queued: back in the queue"] {
        assert!(log.contains(line), "no `{line}` in\n{log}");
    }
    assert!(world.ledger().is_empty());
    assert!(world.lock_refs(&lane.remote_url).is_empty());
}

/// Origins whose gstack identity berth's gate refuses: the record is blocked and says why.
#[test]
fn identities_berth_refuses_are_blocked_saying_why() {
    let cases = [
        (
            "../remotes/widget.git",
            "repoIdentity rejected: repoIdentity ../remotes/widget comes from a relative origin",
        ),
        (
            "file:///srv/git/my%20widget.git",
            "repoIdentity rejected: repoIdentity file:/srv/git/my%20widget holds percent-encoding",
        ),
        (
            "file:///srv/git/my widget.git",
            "repoIdentity rejected: repoIdentity file:/srv/git/my%20widget holds percent-encoding",
        ),
    ];
    for (origin, why) in cases {
        let world = World::new();
        let lane = world.git_lane("widget", None);
        let id = lane.queue(4, "main");
        world.run_git(&lane.clone, &["remote", "set-url", "origin", origin]);
        world.run_once(&world.git_forge_config("")).code(1);
        let record = world.read_record(&id);
        assert_eq!(record["status"], "blocked", "{origin}");
        let last = record["lastError"].as_str().unwrap();
        assert!(last.starts_with(why), "{origin}: {last}");
        assert!(world.ledger().is_empty());
    }
}

/// PR `pr` queued on a fresh lane, with the git forge and `commands` (TOML lines for
/// `land_command`/`ship_command`; `None`: the landing script that merges and pushes).
fn queued_lane(w: &World, pr: u64, commands: Option<&str>) -> (Option<String>, std::path::PathBuf) {
    let id = w.git_lane("widget", None).queue(pr, "main");
    let config = match commands {
        Some(toml) => w.config(&format!("forge = \"git\"\n{toml}\n")),
        None => w.git_forge_config(""),
    };
    (Some(id), config)
}

/// One daemon run per Appendix A situation berth can be put in with real repos: each
/// record's `lastError`, and the run's log, begin with gstack's words.
#[test]
fn appendix_a_texts_through_real_daemon_runs() {
    struct Case {
        name: &'static str,
        /// Sets up the world; returns the record id (if any) and the config.
        setup: fn(&World) -> (Option<String>, std::path::PathBuf),
        exit: i32,
        last_error: Option<&'static str>,
        log: &'static str,
    }
    let cases = [
        Case {
            name: "empty queue",
            setup: |w| (None, w.git_forge_config("")),
            exit: 0,
            last_error: None,
            log: "release queue empty",
        },
        Case {
            name: "repo path outside the allowlist",
            setup: |w| {
                let outside = w.root.join("outside");
                fs::create_dir_all(&outside).unwrap();
                w.run_git(&outside, &["init", "-q"]);
                let id = w
                    .record(&outside, 100)
                    .set("repoIdentity", "github.com/acme/widget")
                    .write();
                (Some(id), w.git_forge_config(""))
            },
            exit: 1,
            last_error: Some("repoPath outside daemon allowlist: repoPath "),
            log: "release queue: blocked 1 record(s) for disallowed repoPath; no eligible records to process",
        },
        Case {
            name: "legacy record outside the allowlist",
            setup: |w| {
                let id = w.record(Path::new("/etc"), 101).write();
                (Some(id), w.git_forge_config(""))
            },
            exit: 1,
            last_error: Some(
                "repoPath rejected by daemon allowlist (pre-id derivation): repoPath /etc (realpath /etc) is outside the daemon allowlist",
            ),
            log: "warning: blocking PR #101: disallowed repoPath: repoPath /etc",
        },
        Case {
            name: "unsafe feature branch",
            setup: |w| {
                let lane = w.git_lane("widget", None);
                let id = w
                    .record(&lane.clone, 27)
                    .set("featureBranch", "evil:refs/heads/main")
                    .write();
                (Some(id), w.git_forge_config(""))
            },
            exit: 1,
            last_error: Some(
                "featureBranch rejected: featureBranch \"evil:refs/heads/main\" contains characters outside the safe subset [A-Za-z0-9._/-] (or starts with -)",
            ),
            log: "blocking PR #27: featureBranch rejected",
        },
        Case {
            name: "feature branch deleted on origin (gstack test 65)",
            setup: |w| {
                let lane = w.git_lane("widget", None);
                let id = lane.queue(6, "main");
                w.run_git(&lane.clone, &["push", "-q", "origin", ":feat/pr-6"]);
                (Some(id), w.git_forge_config(""))
            },
            exit: 1,
            last_error: Some(
                "couldn't find remote ref feat/pr-6: PR #6 is closed on origin; its feature branch was deleted from origin unmerged",
            ),
            log: "PR #6: blocked",
        },
        Case {
            name: "land command fails",
            setup: |w| queued_lane(w, 8, Some("land_command = [\"sh\", \"-c\", \"exit 3\"]")),
            exit: 1,
            last_error: Some("land-and-deploy failed (exit 3, timed_out=false); see "),
            log: "PR #8: blocked",
        },
        Case {
            name: "drift repair ship fails",
            // The drift signature in another case: gstack matches it case-insensitively.
            setup: |w| {
                queued_lane(
                    w,
                    9,
                    Some(
                        "land_command = [\"sh\", \"-c\", \"echo 'version drift DETECTED'; exit 1\"]\nship_command = [\"sh\", \"-c\", \"exit 2\"]",
                    ),
                )
            },
            exit: 1,
            last_error: Some("drift repair /ship failed (exit 2, timed_out=false)"),
            log: "PR #9: blocked",
        },
        Case {
            name: "exit 0 but not merged",
            setup: |w| queued_lane(w, 2, Some("land_command = [\"true\"]")),
            exit: 1,
            last_error: Some(
                "land-and-deploy reported success but origin disagrees: PR #2 state is OPEN on origin (sub-agent reported success but PR was not merged); see ",
            ),
            log: "PR #2: blocked",
        },
        Case {
            name: "landed",
            setup: |w| queued_lane(w, 3, None),
            exit: 0,
            last_error: None,
            log: "PR #3: landed",
        },
    ];
    for case in cases {
        let world = World::new();
        let (id, config) = (case.setup)(&world);
        let output = world.run_once(&config).code(case.exit).get_output().clone();
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(log.contains(case.log), "{}: {log}", case.name);
        let Some(id) = id else { continue };
        let record = world.read_record(&id);
        match case.last_error {
            Some(text) => {
                let last = record["lastError"].as_str().unwrap_or_default();
                assert!(last.starts_with(text), "{}: {last}", case.name);
            }
            None => assert!(
                record.get("lastError").is_none(),
                "{}: {record:#}",
                case.name
            ),
        }
    }
}

/// Writes `record` as the queue file of `id`, whole (temp file, then rename), as another
/// process would.
fn write_record_file(world: &World, id: &str, text: &str) {
    let tmp = world.queue.join(format!("{id}.json.tmp.test"));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, world.queue.join(format!("{id}.json"))).unwrap();
}

/// Appendix A.2's signal lines, from a real daemon stopped by a real SIGTERM while its
/// landing process runs: what the revival did with the record (revived, found settled on
/// disk, could not be read) and what became of the lane lock (released, or taken over so
/// the release fails).
#[test]
fn signal_lines_in_gstacks_words() {
    type Meddle = fn(&World, &GitLane<'_>, &str);
    let cases: [(&str, Meddle, &[&str]); 4] = [
        (
            "revived",
            |_, _, _| {},
            &[
                "signal SIGTERM: revived 1 record(s) to queued, 0 skipped (terminal on disk), 0 failed",
                "signal SIGTERM: released 1 lock(s), 0 failed, 0 deferred (budget exhausted)",
            ],
        ),
        (
            "landed on disk meanwhile",
            |world, _, id| {
                let mut record = world.read_record(id);
                record["status"] = "landed".into();
                write_record_file(world, id, &record.to_string());
            },
            &[
                "signal SIGTERM: skipping revive of run-6: already terminal (landed)",
                "signal SIGTERM: revived 0 record(s) to queued, 1 skipped (terminal on disk), 0 failed",
                "signal SIGTERM: released 1 lock(s), 0 failed, 0 deferred (budget exhausted)",
            ],
        ),
        (
            "record unreadable",
            |world, _, id| write_record_file(world, id, "{ not json"),
            &[
                "signal SIGTERM: failed to revive record run-6: ",
                "signal SIGTERM: revived 0 record(s) to queued, 0 skipped (terminal on disk), 1 failed",
            ],
        ),
        (
            "lock taken over",
            |world, lane, _| {
                gstack_takes_over(world, lane);
            },
            &[
                "signal SIGTERM: lock release failed: release lock is no longer owned by this daemon",
                "signal SIGTERM: released 0 lock(s), 1 failed, 0 deferred (budget exhausted)",
            ],
        ),
    ];
    for (name, meddle, lines) in cases {
        let world = World::new();
        let (lane, id, mut daemon) = mid_landing(&world, "");
        meddle(&world, &lane, &id);
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        assert_eq!(daemon.wait().unwrap().code(), Some(143), "{name}");

        let log = daemon_log(&world);
        for line in lines {
            assert!(log.contains(line), "{name}: no `{line}` in\n{log}");
        }
        match name {
            "revived" | "lock taken over" => {
                assert_eq!(world.read_record(&id)["status"], "queued", "{name}")
            }
            "landed on disk meanwhile" => {
                assert_eq!(world.read_record(&id)["status"], "landed", "{name}")
            }
            // Nothing lost, nothing overwritten: the file is as the other process left it.
            _ => assert_eq!(
                fs::read_to_string(world.queue.join(format!("{id}.json"))).unwrap(),
                "{ not json"
            ),
        }
    }
}

/// Appendix A.2's `warning: skipping …` lines, from a real `--once` run: a configured repo
/// and a queued record's repo outside the allowlist are not discovered, a blocked record
/// there is not reconciled; each said once, and nothing is asked about them.
#[test]
fn skipping_discovery_and_reconciliation_in_gstacks_words() {
    let world = World::new();
    let outside = |name: &str| {
        let dir = world.root.join(name);
        fs::create_dir_all(&dir).unwrap();
        world.run_git(&dir, &["init", "-q"]);
        dir.canonicalize().unwrap()
    };
    let (configured, queued, blocked) =
        (outside("configured"), outside("queued"), outside("blocked"));
    world
        .record(&queued, 100)
        .set("repoIdentity", "github.com/acme/widget")
        .write();
    let stuck = world
        .record(&blocked, 41)
        .set("repoIdentity", "github.com/acme/other")
        .set("status", "blocked")
        .set(
            "lastError",
            "land-and-deploy failed (exit 1, timed_out=false); see /l",
        )
        .write();
    let config = world.git_forge_config(&format!("repos = [{:?}]\n", configured.to_str().unwrap()));

    let output = world.run_once(&config).code(1).get_output().clone();
    let log = String::from_utf8_lossy(&output.stderr);

    let outside_allowlist = |dir: &Path| {
        format!(
            "repoPath {0} (realpath {0}) is outside the daemon allowlist (set GSTACK_DAEMON_REPO_ALLOWLIST to extend)",
            dir.display()
        )
    };
    // A configured repo is an allowed root (config `repos`), so it is asked, not skipped.
    assert!(
        !log.contains(&outside_allowlist(&configured)),
        "a configured repo was refused:\n{log}"
    );
    for line in [
        format!(
            "warning: skipping discovery for disallowed repoPath: {}",
            outside_allowlist(&queued)
        ),
        format!(
            "warning: skipping blocked PR #41 reconciliation: {}",
            outside_allowlist(&blocked)
        ),
        "blocking PR #100: disallowed repoPath: ".to_owned(),
    ] {
        assert_eq!(
            log.matches(&line).count(),
            1,
            "no single `{line}` in\n{log}"
        );
    }
    let record = world.read_record(&stuck);
    assert_eq!(record["status"], "blocked");
    assert!(record.get("lastGithubCheckedAt").is_none(), "{record:#}");
}

/// gstack test 65 on the gh forge: the feature branch is deleted on the (real, bare)
/// remote. GitHub then reports the PR closed (and keeps the branch's name), or, in the
/// moment before it does, still open; either way the record is blocked naming the branch
/// in gstack's words, and nothing lands — not even from a tracking ref an earlier fetch
/// left in the repo.
#[test]
fn a_feature_branch_deleted_on_origin_blocks_naming_it_on_github() {
    for github_state in ["CLOSED", "OPEN"] {
        let world = World::new();
        let gh = world.gh_lane();
        let id = gh.queue_pr_42();
        // What a clone that fetched the branch earlier still has.
        world.run_git(
            &gh.repo,
            &["update-ref", "refs/remotes/origin/feat/search", "HEAD"],
        );
        world.run_git(&gh.bare, &["branch", "-q", "-D", "feat/search"]);
        gh.edit_pr_42(|pr| pr["state"] = github_state.into());
        let ran = world.root.join("land-ran");
        let config = gh.config(&format!(r#"["sh", "-c", "touch {}"]"#, ran.display()), "");

        let log = gh_run_once(&gh, &config, 1);

        let record = world.read_record(&id);
        assert_eq!(record["status"], "blocked", "{github_state}");
        let last = record["lastError"].as_str().unwrap();
        let expected = match github_state {
            "CLOSED" => {
                "couldn't find remote ref feat/search: PR #42 is closed on GitHub; its feature branch was deleted from origin unmerged"
            }
            _ => "couldn't find remote ref feat/search: the feature branch is not on origin (",
        };
        assert!(last.starts_with(expected), "{github_state}: {last}");
        assert!(!ran.exists(), "{github_state}: the land command ran");
        assert!(
            gh.lock_refs().is_empty(),
            "{github_state}: lock left behind"
        );
        assert!(log.contains("PR #42: blocked"), "{github_state}: {log}");
    }
}

/// gstack tests 70–71: a blocked record GitHub now reports merged becomes `landed` without
/// its old `lastError`; one still open stays blocked with it, and both record the check.
#[test]
fn reconciling_a_blocked_record_clears_its_last_error_only_when_merged() {
    let world = World::new();
    let gh = world.gh_lane();
    let old_error = "land-and-deploy reported success but GitHub disagrees: PR #41 state is OPEN on GitHub (sub-agent reported success but PR was not merged); see /logs/land.log";
    let merged = world
        .record(&gh.repo, 41)
        .set("featureBranch", "feat/login")
        .set("repoIdentity", "github.com/acme/widget")
        .set("status", "blocked")
        .set("lastError", old_error)
        .write();
    let open = gh.queue_pr_42();
    let mut record = world.read_record(&open);
    record["status"] = "blocked".into();
    record["lastError"] = "land-and-deploy failed (exit 1, timed_out=false); see /l".into();
    fs::write(world.queue.join(format!("{open}.json")), record.to_string()).unwrap();
    let config = gh.config(r#"["true"]"#, "");

    gh.berth()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .assert()
        .success();

    let landed = world.read_record(&merged);
    assert_eq!(landed["status"], "landed");
    assert!(landed.get("lastError").is_none(), "{landed:#}");
    assert_eq!(landed["lastGithubState"], "MERGED");
    assert_eq!(landed["reconciledAt"], landed["lastGithubCheckedAt"]);
    let still = world.read_record(&open);
    assert_eq!(still["status"], "blocked");
    assert_eq!(
        still["lastError"],
        "land-and-deploy failed (exit 1, timed_out=false); see /l"
    );
    assert_eq!(still["lastGithubState"], "OPEN");
    assert!(still.get("reconciledAt").is_none());
    assert!(clock::parse_iso(still["lastGithubCheckedAt"].as_str().unwrap()).is_some());
}

/// A daemon started on an empty queue has listed no lane lock when the first record
/// arrives, and that record's watcher wake runs no fault watch: the claim check's look at
/// origin (is the closed PR's branch still there?) is then berth's first libgit2 network
/// call. A silent origin must still cost at most `remote_timeout_secs`, not hang the
/// landing forever.
#[test]
fn a_silent_origin_bounds_the_first_remote_call_by_remote_timeout() {
    let world = World::new();
    let gh = world.gh_lane();
    gh.edit_pr_42(|pr| pr["state"] = "CLOSED".into());
    // Accepted by the kernel, never answered.
    let silent = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).unwrap();
    fs::write(
        world.home.join(".gitconfig"),
        format!(
            "[url \"git://127.0.0.1:{}/widget.git\"]\n\tinsteadOf = git@github.com:acme/widget.git\n",
            silent.local_addr().unwrap().port()
        ),
    )
    .unwrap();
    let config = gh.config(r#"["true"]"#, "remote_timeout_secs = 1");
    let state = world.berth_state();
    let mut daemon = world.spawn_berth(
        &["run", "--watch", "--config", config.to_str().unwrap()],
        &state,
        &[
            ("GH_STANDIN_DIR", &gh.replies),
            ("GH_STANDIN_LOG", &gh.log),
            ("BERTH_LOG", Path::new("debug")),
        ],
    );
    let log = state.with_extension("log");
    let read_log = || fs::read_to_string(&log).unwrap_or_default();
    let idle = world.wait_for(std::time::Duration::from_secs(20), || {
        read_log().contains("tick done")
    });

    let id = if idle { Some(gh.queue_pr_42()) } else { None };
    let blocked = id.as_ref().is_some_and(|id| {
        world.wait_for(std::time::Duration::from_secs(20), || {
            world.read_record(id)["status"] == "blocked"
        })
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let _ = daemon.wait();
    assert!(
        idle,
        "the daemon never finished its first tick:\n{}",
        read_log()
    );
    assert!(
        blocked,
        "the claim check hung on a silent origin:\n{}",
        read_log()
    );
    let record = world.read_record(&id.unwrap());
    assert!(
        record["lastError"]
            .as_str()
            .unwrap()
            .contains("PR #42 is closed on GitHub"),
        "{record:#}"
    );
    drop(silent);
}
