//! A lane's landings reuse one scratch worktree, reset to each landing's head, and a
//! worktree a step left in a state berth cannot prove clean is thrown away instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::World;

/// One line per step, written before it lands: the PR, the directory it runs in, how
/// many paths `git status --ignored` lists, whether the index is locked, and what HEAD
/// is. After landing, the step for PR 1 runs `after_first` in its worktree.
fn tracing_config(world: &World, after_first: &str) -> (PathBuf, PathBuf) {
    let probe = "git status --porcelain --ignored | wc -l; \
                 test -e \"$(git rev-parse --git-dir)/index.lock\" && echo locked || echo unlocked; \
                 git symbolic-ref -q HEAD || echo detached";
    probing_config(world, probe, after_first)
}

/// Like [`tracing_config`], but each line is the PR, the directory the step runs in, and
/// the words `probe` (a shell snippet run in the worktree before the step lands) prints.
fn probing_config(world: &World, probe: &str, after_first: &str) -> (PathBuf, PathBuf) {
    let trace = world.root.join("trace");
    let script = format!(
        "echo \"$3 $(pwd -P) $( ({probe}) | tr '\\n' ' ')\" >> {trace}; \
         {land} \"$1\" \"$2\" {ledger} \"$3\" || exit 1; \
         if [ \"$3\" = 1 ]; then {after_first}; fi",
        trace = trace.display(),
        land = world.land_script().display(),
        ledger = world.root.join("ledger").display(),
    );
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 3600\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
    ));
    (config, trace)
}

/// The trace's lines, split into words, in PR order.
fn trace_lines(trace: &Path) -> Vec<Vec<String>> {
    let mut lines: Vec<Vec<String>> = fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    lines.sort();
    lines
}

/// Lands PRs 1 and 2 of one lane, one after the other, with one `--watch` daemon (kept
/// worktrees live as long as it does), and stops it.
fn land_two(world: &World, config: &Path) {
    let lane = world.git_lane("widget", None);
    let ids = [lane.queue(1, "main"), lane.queue(2, "main")];
    land_all(world, config, &ids);
    assert_eq!(world.ledger(), [1, 2]);
    let scratch_root = world.berth_state().join("worktrees");
    let left: Vec<_> = fs::read_dir(&scratch_root).unwrap().collect();
    assert!(
        left.is_empty(),
        "kept worktrees outlived the daemon: {left:?}"
    );
    let admin = lane.clone.join(".git/worktrees");
    let entries = fs::read_dir(&admin).map_or(0, Iterator::count);
    assert_eq!(entries, 0, "admin entries outlived the daemon");
}

/// Runs one `--watch` daemon until every record of `ids` landed (at most 60 s), stops it,
/// and returns its log; panics if one did not land.
fn land_all(world: &World, config: &Path, ids: &[String]) -> String {
    let mut daemon = world.spawn_watch(config);
    let landed = world.wait_for(Duration::from_secs(60), || {
        ids.iter()
            .all(|id| world.read_record(id)["status"] == "landed")
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    assert!(landed, "not every record landed: {log}");
    log
}

/// [`land_two`] with [`tracing_config`]'s trace (`after_first` run after landing 1).
fn land_two_traced(world: &World, after_first: &str) -> Two {
    let (config, trace) = tracing_config(world, after_first);
    land_two(world, &config);
    Two::read(&trace)
}

/// Two landings' trace lines, split into words, in PR order.
#[derive(Debug)]
struct Two(Vec<Vec<String>>);

impl Two {
    fn read(trace: &Path) -> Two {
        let lines = trace_lines(trace);
        assert_eq!(lines.len(), 2, "{lines:?}");
        Two(lines)
    }

    /// Whether landing 2 ran in landing 1's worktree.
    fn reused(&self) -> bool {
        self.0[0][1] == self.0[1][1]
    }

    /// What landing `n` (1 or 2) saw before it landed: the words after its directory.
    fn seen(&self, n: usize) -> &[String] {
        &self.0[n - 1][2..]
    }
}

/// The record's checkout is on `main`, so both land in a scratch worktree: the second
/// landing runs in the first one's, reset to its own head, clean and detached.
#[test]
fn a_lanes_second_landing_reuses_the_scratch_worktree() {
    let world = World::new();
    let two = land_two_traced(&world, "true");
    assert!(two.reused(), "one worktree made for two landings: {two:?}");
    for n in [1, 2] {
        assert_eq!(two.seen(n), ["0", "unlocked", "detached"], "{two:?}");
    }
}

/// The first step leaves an untracked file, a HEAD detached elsewhere and a stale
/// `index.lock`: none of it reaches the second landing, which runs in a fresh worktree.
#[test]
fn junk_a_step_leaves_does_not_reach_the_next_landing() {
    let world = World::new();
    let junk = "echo junk > junk.txt; git checkout -q --detach HEAD^; \
                : > \"$(git rev-parse --git-dir)/index.lock\"";
    let two = land_two_traced(&world, junk);
    assert!(!two.reused(), "the junked worktree was reused");
    assert_eq!(two.seen(2), ["0", "unlocked", "detached"], "{two:?}");
}

/// A step that only leaves an untracked file gets its worktree thrown away too: berth
/// never deletes files it did not check out.
#[test]
fn an_untracked_file_alone_keeps_a_worktree_from_reuse() {
    let world = World::new();
    let two = land_two_traced(&world, "echo junk > junk.txt");
    assert!(!two.reused(), "the worktree with junk was reused");
    assert_eq!(two.seen(2), ["0", "unlocked", "detached"], "{two:?}");
}

/// A step that changes a tracked file and leaves HEAD elsewhere leaves nothing a hard
/// reset cannot undo: the worktree is reused, and the next landing sees none of it.
#[test]
fn a_tracked_edit_and_a_moved_head_are_reset_and_the_worktree_reused() {
    let world = World::new();
    let two = land_two_traced(
        &world,
        "git checkout -q --detach HEAD^ && echo edit >> README",
    );
    assert!(two.reused(), "the worktree was not reused");
    assert_eq!(two.seen(2), ["0", "unlocked", "detached"], "{two:?}");
}

/// A daemon killed with a worktree kept leaves it behind; the next daemon of the berth
/// dir removes it when it starts.
#[test]
fn a_killed_daemons_kept_worktree_is_removed_by_the_next_start() {
    let world = World::new();
    let (config, _trace) = tracing_config(&world, "true");
    let lane = world.git_lane("widget", None);
    let id = lane.queue(1, "main");
    let args = ["run", "--watch", "--config", config.to_str().unwrap()];
    let scratch_root = world.berth_state().join("worktrees");
    let count = || fs::read_dir(&scratch_root).map_or(0, Iterator::count);
    let mut first = world.spawn_berth(&args, &world.berth_state(), &[]);
    let kept = world.wait_for(Duration::from_secs(60), || {
        world.read_record(&id)["status"] == "landed" && count() == 1
    });
    kill(Pid::from_raw(first.id() as i32), Signal::SIGKILL).unwrap();
    first.wait().unwrap();
    assert!(kept, "no worktree kept after the landing");
    assert_eq!(count(), 1, "SIGKILL removes nothing");
    let mut second = world.spawn_berth(&args, &world.berth_state(), &[]);
    let swept = world.wait_for(Duration::from_secs(30), || count() == 0);
    kill(Pid::from_raw(second.id() as i32), Signal::SIGTERM).unwrap();
    second.wait().unwrap();
    assert!(swept, "the leftover worktree outlived the next start");
}

/// Per-worktree config (`config.worktree`, e.g. a `core.hooksPath`) survives a hard reset;
/// a worktree whose admin dir holds it is thrown away.
#[test]
fn per_worktree_config_a_step_sets_keeps_a_worktree_from_reuse() {
    let world = World::new();
    let two = land_two_traced(
        &world,
        "git config extensions.worktreeConfig true && git config --worktree core.hooksPath /nonexistent",
    );
    assert!(!two.reused(), "the worktree with its own config was reused");
}

/// Landing 1's step points its worktree's `commondir` (in `.git/worktrees/<name>/`) at a
/// repo of its own: the same objects (alternates) and refs (symlinked), but its own config
/// and hooks. Status and history look clean; reused, the worktree would run landing 2's git
/// commands with landing 1's config and hooks. It is thrown away, and its admin entry (which
/// libgit2 will not prune) goes with it.
#[test]
fn a_step_that_points_its_worktrees_commondir_elsewhere_does_not_reach_the_next_landing() {
    let world = World::new();
    let root = world.root.display().to_string();
    let plant = format!(
        "gd=$(git rev-parse --absolute-git-dir); \
         common=$(git rev-parse --path-format=absolute --git-common-dir); \
         evil={root}/evil; mkdir -p $evil/objects/info $evil/hooks; \
         cp $common/config $evil/config; cp $common/HEAD $evil/HEAD; \
         ln -s $common/refs $evil/refs; ln -s $common/packed-refs $evil/packed-refs; \
         echo $common/objects > $evil/objects/info/alternates; \
         printf '#!/bin/sh\\necho hooked >> {root}/hooked\\n' > $evil/hooks/post-checkout; \
         chmod +x $evil/hooks/post-checkout; \
         echo $evil > $gd/commondir"
    );
    let two = land_two_traced(&world, &plant);
    assert!(!two.reused(), "the redirected worktree was reused");
    let hooked = fs::read_to_string(world.root.join("hooked")).unwrap_or_default();
    assert!(
        hooked.is_empty(),
        "landing 1's planted hook ran: {hooked:?}"
    );
}

/// A landing's fetch from a network origin reads the clone's packs through the handle it
/// opened, which keeps each pack it read open until it is dropped. None is open in the
/// daemon while the step runs: a step's `git gc` frees their space, and long steps in many
/// lanes hold no descriptors of berth's. Review 45: the fetch's handle, kept for the reset
/// at the landing's end, held them until the landing ended.
#[test]
fn the_daemon_holds_no_pack_of_the_clone_open_while_a_step_runs() {
    let world = World::new();
    let server = world.git_daemon();
    let lane = world.git_lane("widget", Some(server.url_for("widget.git")));
    let id = lane.queue(1, "main");
    // Every object in packs, as a clone that was ever gc'd holds them.
    world.run_git(&lane.clone, &["repack", "-adq"]);
    let (started, go) = (world.root.join("started"), world.root.join("go"));
    let script = format!(
        "touch {started}; while [ ! -e {go} ]; do sleep 0.05; done; {land}",
        started = started.display(),
        go = go.display(),
        land = world.exec_land(),
    );
    let config = world.step_config("berth.toml", &script);
    let args = ["run", "--watch", "--config", config.to_str().unwrap()];
    let mut daemon = world.spawn_berth(&args, &world.berth_state(), &[]);
    let running = world.wait_for(Duration::from_secs(60), || started.exists());
    let packs_dir = lane.clone.join(".git/objects/pack");
    let held: Vec<PathBuf> = fs::read_dir(format!("/proc/{}/fd", daemon.id()))
        .map(|fds| {
            fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.starts_with(&packs_dir))
                .collect()
        })
        .unwrap_or_default();
    fs::write(&go, "").unwrap();
    let landed = world.wait_for(Duration::from_secs(60), || {
        world.read_record(&id)["status"] == "landed"
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    assert!(running && landed, "the landing did not run and land");
    assert!(
        held.is_empty(),
        "while the step ran the daemon held {} pack file(s) of the clone open: {held:?}",
        held.len()
    );
}

/// A record whose repo is itself a linked worktree of a clone (`git worktree add`): the
/// scratch worktree berth adds for it has its admin entry in the clone's common dir, where
/// the reset looks, so the second landing runs in the first one's worktree. Review 45: the
/// reset looked under the linked worktree's own git dir, found no entry, and threw every
/// scratch worktree of such a repo away.
#[test]
fn a_linked_worktree_repos_second_landing_reuses_the_scratch_worktree() {
    let world = World::new();
    let (config, trace) = tracing_config(&world, "true");
    let lane = world.git_lane("widget", None);
    let linked = world.code.join("widget-linked");
    let linked_arg = linked.to_str().unwrap();
    world.run_git(
        &lane.clone,
        &["worktree", "add", "-q", "--detach", linked_arg, "main"],
    );
    let ids: Vec<String> = (1..=2)
        .map(|pr| {
            let feature = lane.push_feature(&format!("feat/pr-{pr}"), "main");
            world
                .record(&linked, pr)
                .set("featureBranch", feature)
                .set("baseBranch", "main")
                .write()
        })
        .collect();
    let log = land_all(&world, &config, &ids);
    let two = Two::read(&trace);
    assert!(
        two.reused(),
        "one worktree made for two landings of a linked worktree's records: {two:?}\n{log}"
    );
}

/// Landing 1's step marks a tracked file `--assume-unchanged` (or `--skip-worktree`),
/// edited or not: the flag hides an edit from `git status` and from libgit2's status alike.
/// Landing 2 runs without the edit and without the flag, as in a fresh worktree, so its
/// own `git status` tells it the truth.
#[test]
fn a_file_hidden_behind_an_index_flag_does_not_reach_the_next_landing() {
    for flag in ["--assume-unchanged", "--skip-worktree"] {
        for edit in ["echo planted >> README &&", ""] {
            let world = World::new();
            let two = land_two_probed(
                &world,
                "grep -c planted README; git ls-files -v | grep -vc '^H '",
                &format!("{edit} git update-index {flag} README"),
            );
            assert_eq!(
                [two.seen(1), two.seen(2)],
                [["0", "0"], ["0", "0"]],
                "landing 2 saw what `{edit} git update-index {flag}` hid in landing 1 (the \
                 edits, the flagged files): {two:?}"
            );
        }
    }
}

/// [`land_two`] with [`probing_config`].
fn land_two_probed(world: &World, probe: &str, after_first: &str) -> Two {
    let (config, trace) = probing_config(world, probe, after_first);
    land_two(world, &config);
    Two::read(&trace)
}

/// [`land_two_probed`]: landing 2 saw what `probe` printed in landing 1's fresh worktree,
/// whatever `after_first` left in landing 1's.
fn assert_landing_2_sees_a_fresh_worktree(world: &World, probe: &str, after_first: &str) {
    let two = land_two_probed(world, probe, after_first);
    assert_eq!(
        two.seen(2),
        two.seen(1),
        "`{after_first}` in landing 1 reached landing 2 (reused: {}), `{probe}` says: {two:?}",
        two.reused()
    );
}

/// Review 48. Landing 1's step stages a new file and leaves it uncommitted (`git add` whose
/// commit a hook refused; `git checkout <rev> -- <new path>`; `git stash pop`). The reset's
/// checkout runs against the index the step left, which tracks the file, and removes it
/// (as libgit2's hard reset did): the worktree is reused, clean. A reset that read the tree
/// into the index first (review 48 saw the first version do it) took the file for
/// untracked and threw the worktree away.
#[test]
fn a_staged_new_file_is_reset_and_the_worktree_reused() {
    let world = World::new();
    let two = land_two_traced(&world, "echo staged > staged.txt && git add staged.txt");
    assert!(two.reused(), "the worktree was not reused: {two:?}");
    assert_eq!(two.seen(2), ["0", "unlocked", "detached"], "{two:?}");
}

/// Reviews 48, 49. Landing 1's step changes the modes of a tracked file and of the
/// worktree's top directory: takes their write permission, or closes them to group and
/// others. git tracks no permission but the executable bit, so the status is clean and the
/// checkout rewrites nothing; a mode no checkout gives keeps the worktree from reuse, and
/// landing 2 meets the modes of a fresh worktree (it could write README and create files).
#[test]
fn modes_a_step_sets_do_not_reach_the_next_landing() {
    for plant in ["chmod a-w README .", "chmod 0600 README && chmod 0700 ."] {
        let world = World::new();
        assert_landing_2_sees_a_fresh_worktree(&world, "stat -c %a README .", plant);
    }
}

/// Review 48. Landing 1's step replaces README with a hard link to a file outside the
/// worktree, edited. The status sees README changed, and the reset's checkout writes the
/// head's README by opening the path with `O_TRUNC`: through the link, into the file
/// outside. berth writes outside the worktree (and the worktree, reused, keeps the link for
/// landing 2's writes).
#[test]
fn the_reset_does_not_write_through_a_hard_link_to_a_file_outside_the_worktree() {
    let world = World::new();
    let outside = world.root.join("outside.txt");
    let plant = format!(
        "cp README {o} && echo tampered >> {o} && ln -f {o} README",
        o = outside.display()
    );
    let two = land_two_traced(&world, &plant);
    assert_eq!(
        fs::read_to_string(&outside).unwrap(),
        "widget\ntampered\n",
        "berth rewrote a file outside the worktree through a hard link (reused: {}): {two:?}",
        two.reused()
    );
}

/// Review 48. Landing 1's step plants a `.git` file in a tracked directory, pointing at a
/// repository of its own. git and libgit2 skip every path named `.git`, so neither status
/// lists it and the worktree is reused: landing 2 finds `src/.git`, and every git command
/// it runs under `src/` uses the planted repository (its config, its hooks).
#[test]
fn a_dot_git_a_step_plants_in_a_tracked_directory_does_not_reach_the_next_landing() {
    let world = World::new();
    let evil = world.root.join("evil.git");
    let plant = format!(
        "git init -q --bare {evil} && echo 'gitdir: {evil}' > src/.git",
        evil = evil.display()
    );
    let (config, trace) = probing_config(
        &world,
        "test -e src/.git && echo planted || echo none; \
         git -C src rev-parse --absolute-git-dir | grep -c evil",
        &plant,
    );
    let lane = world.git_lane("widget", None);
    fs::create_dir_all(lane.clone.join("src")).unwrap();
    fs::write(lane.clone.join("src/lib.txt"), "lib\n").unwrap();
    world.run_git(&lane.clone, &["add", "src"]);
    world.run_git(&lane.clone, &["commit", "-qm", "src"]);
    world.run_git(&lane.clone, &["push", "-q", "origin", "HEAD:main"]);
    let ids = [lane.queue(1, "main"), lane.queue(2, "main")];
    land_all(&world, &config, &ids);
    let two = Two::read(&trace);
    assert_eq!(
        two.seen(2),
        ["none", "0"],
        "landing 2 found landing 1's src/.git (reused: {}): {two:?}",
        two.reused()
    );
}

/// Review 48. Landing 1's step (the tests' own land script) fetches, merges and checks a
/// branch out: its worktree's `FETCH_HEAD`, `ORIG_HEAD` and HEAD reflog name landing 1's
/// commits and branch. The reset removes them, so landing 2's `git merge FETCH_HEAD`, `git
/// reset --hard ORIG_HEAD` or `git checkout -` fail, as in a fresh worktree, instead of
/// acting on landing 1's commits.
#[test]
fn refs_a_step_leaves_in_its_worktree_do_not_reach_the_next_landing() {
    let world = World::new();
    let probe = "for r in FETCH_HEAD ORIG_HEAD @{{-1}}; do \
                 git rev-parse -q --verify \"$r\" >/dev/null && echo \"$r\" || echo -; done";
    assert_landing_2_sees_a_fresh_worktree(&world, probe, "true");
}

/// Review 49. Landing 1's step leaves a FIFO (`mkfifo`; a socket a server bound is the
/// same): neither git's nor libgit2's status lists anything but files, dirs and symlinks.
/// The walk refuses any other node, so landing 2 runs in a fresh worktree, without it.
#[test]
fn a_fifo_a_step_leaves_does_not_reach_the_next_landing() {
    let world = World::new();
    let two = land_two_probed(
        &world,
        "test -p pipe && echo fifo || echo none",
        "mkfifo pipe",
    );
    assert_eq!(
        two.seen(2),
        ["none"],
        "landing 2 (reused: {}) found landing 1's FIFO: {two:?}",
        two.reused()
    );
}

/// Review 49. Landing 1's step leaves a FIFO where the reset must read or write a file:
/// README (tracked) replaced by one, which the status takes for a deleted README and the
/// reset's checkout opens for writing (blocking until a reader comes); or an untracked
/// `.gitignore`, which libgit2's status opens for reading (blocking until a writer comes).
/// Either would block landing 1's reset at its end for good, and the lane's next landing
/// with it; the walk refuses the FIFO before any status or checkout, and PR 2 lands.
#[test]
fn a_fifo_in_a_files_place_does_not_hang_the_reset() {
    let mut hung = Vec::new();
    for plant in ["rm README && mkfifo README", "mkfifo .gitignore"] {
        let world = World::new();
        let (config, _trace) = tracing_config(&world, plant);
        let lane = world.git_lane("widget", None);
        let ids = [lane.queue(1, "main"), lane.queue(2, "main")];
        let mut daemon = world.spawn_watch(&config);
        let landed = world.wait_for(Duration::from_secs(40), || {
            ids.iter()
                .all(|id| world.read_record(id)["status"] == "landed")
        });
        let statuses: Vec<_> = ids
            .iter()
            .map(|id| world.read_record(id)["status"].clone())
            .collect();
        kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
        let stopped = world.wait_for(Duration::from_secs(20), || {
            daemon.try_wait().unwrap().is_some()
        });
        if !stopped {
            kill(Pid::from_raw(daemon.id() as i32), Signal::SIGKILL).unwrap();
        }
        daemon.wait().unwrap();
        if !(landed && stopped) {
            let log =
                fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
            hung.push(format!(
                "after `{plant}` in landing 1: records {statuses:?} after 40 s, daemon \
                 stopped on SIGTERM within 20 s: {stopped}\n{log}"
            ));
        }
    }
    assert!(hung.is_empty(), "{}", hung.join("\n\n"));
}

/// Review 49. Landing 1's step makes its worktree's HEAD reflog (`logs/HEAD` in the admin
/// dir) a hard link to a file outside. git appends to a reflog in place: a HEAD write would
/// go through the link. The admin check refuses an admin file with more than one link, so
/// berth writes nothing there and the worktree is not reused.
#[test]
fn the_reset_does_not_write_through_a_hard_linked_reflog() {
    let world = World::new();
    let outside = world.root.join("outside.txt");
    let plant = format!(
        "echo precious > {o} && ln -f {o} \"$(git rev-parse --git-dir)/logs/HEAD\"",
        o = outside.display()
    );
    let two = land_two_traced(&world, &plant);
    assert_eq!(
        fs::read_to_string(&outside).unwrap(),
        "precious\n",
        "berth appended to a file outside its dirs through a hard-linked reflog (reused: {}): \
         {two:?}",
        two.reused()
    );
}

/// `python3 <script> N W` run in the worktree: a chain of N nested directories, each named
/// with W `d`s, made relative to the parent's descriptor (no path is ever longer than W).
fn deep_chain(world: &World, depth: usize, width: usize) -> String {
    let script = world.root.join("chain.py");
    fs::write(
        &script,
        "import os, sys\n\
         n, w = int(sys.argv[1]), int(sys.argv[2])\n\
         fd = os.open('.', os.O_RDONLY)\n\
         for _ in range(n):\n    \
             os.mkdir('d' * w, dir_fd=fd)\n    \
             nfd = os.open('d' * w, os.O_RDONLY, dir_fd=fd)\n    \
             os.close(fd)\n    \
             fd = nfd\n",
    )
    .unwrap();
    format!("/usr/bin/python3 {} {depth} {width}", script.display())
}

/// Review 49. Landing 1's step leaves a chain of 30,000 nested empty directories (made in a
/// second or two). The worktree is not reused (deeper than the walk enters), and its removal
/// fails: `remove_dir_all` holds a descriptor per level (EMFILE at ~1,000 levels under the
/// usual soft limit of 1024). Its admin entry goes all the same, so the `main` landing 1's
/// step checked out there is not left "in use": landing 2's `git checkout -B main` runs, and
/// PR 2 lands. (The directory stays under berth's dir, named in the log.)
#[test]
fn a_deep_tree_a_step_leaves_does_not_block_the_next_landing() {
    let world = World::new();
    let (config, _trace) = tracing_config(&world, &deep_chain(&world, 30_000, 1));
    let lane = world.git_lane("widget", None);
    let ids = [lane.queue(1, "main"), lane.queue(2, "main")];
    let mut daemon = world.spawn_watch(&config);
    world.wait_for(Duration::from_secs(60), || {
        ids.iter().all(|id| {
            ["landed", "blocked"].contains(&world.read_record(id)["status"].as_str().unwrap_or(""))
        })
    });
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
    let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    let statuses: Vec<_> = ids
        .iter()
        .map(|id| world.read_record(id)["status"].clone())
        .collect();
    let second = fs::read_dir(world.berth_state().join("logs"))
        .unwrap()
        .filter_map(|d| d.ok())
        .filter(|d| d.file_name().to_string_lossy().ends_with("pr-2"))
        .filter_map(|d| fs::read_to_string(d.path().join("attempt-1-land.log")).ok())
        .collect::<String>();
    let admin_entries = fs::read_dir(lane.clone.join(".git/worktrees")).map_or(0, Iterator::count);
    // The chain is too deep for the temp dir's own removal (a stack overflow): rm's is not.
    std::process::Command::new("rm")
        .arg("-rf")
        .arg(world.berth_state().join("worktrees"))
        .status()
        .unwrap();
    assert!(
        statuses == ["landed", "landed"] && admin_entries == 0,
        "records {statuses:?}; {admin_entries} admin entries outlived the daemon\nPR 2's step:\n{second}\n{log}"
    );
}
