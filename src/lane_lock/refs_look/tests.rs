use super::*;

mod walk;

/// Whether this is the run of the test `name` (below `lane_lock::refs_look::`) in a
/// process of its own, with `flag` set: the test binary again, only that test, where it
/// may use up or lower what a process has, or count what its thread reads without the
/// other tests' inotify events ([`super::settled`]). If not, runs it there and checks it
/// passed.
pub(in crate::lane_lock) fn in_a_process_of_its_own(name: &str, flag: &str) -> bool {
    if std::env::var_os(flag).is_some() {
        return true;
    }
    let name = format!("lane_lock::refs_look::{name}");
    let rerun = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(flag, "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rerun.stdout) + String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{said}");
    assert!(said.contains("1 passed"), "the re-run ran no test: {said}");
    false
}

fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap();
}

#[test]
fn only_nodes_that_are_no_file_nor_directory_block() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    std::fs::create_dir_all(git_dir.join("refs/heads/deep")).unwrap();
    std::fs::write(git_dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(git_dir.join("refs/heads/main"), "junk\n").unwrap();
    fifo(&git_dir.join("refs/heads/deep/x"));
    fifo(&git_dir.join("packed-refs"));
    std::os::unix::fs::symlink(
        git_dir.join("refs/heads/deep/x"),
        git_dir.join("refs/heads/link"),
    )
    .unwrap();
    std::os::unix::fs::symlink(git_dir.join("refs/heads/main"), git_dir.join("refs/ok")).unwrap();
    let mut names: Vec<_> = look(git_dir).unwrap().into_iter().map(|b| b.name).collect();
    names.sort();
    let expected: Vec<PathBuf> = ["packed-refs", "refs/heads/deep/x", "refs/heads/link"]
        .into_iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(names, expected);
    assert!(blocks_at(git_dir, Path::new("refs/heads/deep/x")).is_some());
    assert!(blocks_at(git_dir, Path::new("refs/heads/main")).is_none());
    assert!(blocks_at(git_dir, Path::new("refs/none")).is_none());
}

#[test]
fn past_the_bound_nothing_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let heads = dir.path().join("refs/heads");
    std::fs::create_dir_all(&heads).unwrap();
    for n in 0..=MAX_REFS_ENTRIES {
        std::fs::File::create(heads.join(n.to_string())).unwrap();
    }
    assert!(matches!(look(dir.path()), Err(Refused::TooMany(_))));
}

/// Runs an acquire of the widget lane on `origin` on its own thread: its answer, or
/// `None` when it has not returned within a minute (libgit2 hangs on a FIFO).
fn acquire_within_a_minute(
    origin: &crate::lane_lock::tests::BareOrigin,
) -> Option<Result<crate::lane_lock::Acquire, crate::lane_lock::LockError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = origin.url.clone();
    let client = origin.client();
    std::thread::spawn(move || {
        let lane = crate::lane_lock::tests::widget_main();
        let _ = tx.send(client.acquire(&url, &lane, "me", Path::new("/a")));
    });
    rx.recv_timeout(std::time::Duration::from_secs(60)).ok()
}

/// A FIFO elsewhere under a local origin's `refs/` (a branch, say) is no ref of the
/// lane, but libgit2 would hang on it (a symlink to it, which a listing of the origin's
/// refs follows, hangs the read of a held lane): the lane is held with the node named,
/// and berth leaves it where it is.
#[test]
fn a_fifo_elsewhere_under_refs_holds_the_lane_named() {
    for linked in [false, true] {
        let origin = crate::lane_lock::tests::BareOrigin::new();
        // Held by another: the acquire lists the origin's refs to read the holder.
        let lane = crate::lane_lock::tests::widget_main();
        let held = origin.take(&origin.client(), &lane);
        assert!(matches!(held, Ok(crate::lane_lock::Acquire::Acquired(_))));
        let planted = origin.bare.join("refs/heads/x");
        if linked {
            let outside = origin.dir.path().join("fifo");
            fifo(&outside);
            std::os::unix::fs::symlink(&outside, &planted).unwrap();
        } else {
            fifo(&planted);
        }
        for _ in 0..2 {
            let outcome = acquire_within_a_minute(&origin).expect("the acquire never returned");
            let said = format!("{outcome:?}");
            let kind = if linked { "symlink" } else { "FIFO" };
            assert!(
                outcome.is_err()
                    && said.contains(&*planted.to_string_lossy())
                    && said.contains(kind),
                "{said}"
            );
        }
        assert!(
            std::fs::symlink_metadata(&planted).is_ok(),
            "berth moved a branch"
        );
    }
}

/// A FIFO at the lane's lock ref is a broken ref: the answer names it and when berth
/// moves it out of refs/.
#[test]
fn a_fifo_at_the_lock_ref_holds_the_lane_named_as_a_broken_ref() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    let lock_ref = crate::lane_lock::lock_ref_name(&crate::lane_lock::tests::widget_main());
    let planted = origin.bare.join(lock_ref);
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    fifo(&planted);
    let outcome = acquire_within_a_minute(&origin).expect("the acquire never returned");
    let said = format!("{outcome:?}");
    assert!(
        said.contains(&*planted.to_string_lossy()) && said.contains("moves it out"),
        "{said}"
    );
}

/// libgit2 opens a local origin's `config` (and `objects/info/alternates`) with the
/// same blocking open() as a ref: a FIFO planted there by a writer of the origin hangs
/// the acquire for good, as one under refs/ did.
#[test]
fn a_fifo_at_the_origins_config_or_alternates_does_not_hang_the_acquire() {
    let hung: Vec<&str> = ["config", "objects/info/alternates"]
        .into_iter()
        .filter(|planted| {
            let origin = crate::lane_lock::tests::BareOrigin::new();
            let at = origin.bare.join(planted);
            let _ = std::fs::remove_file(&at);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            fifo(&at);
            acquire_within_a_minute(&origin).is_none()
        })
        .collect();
    assert!(
        hung.is_empty(),
        "the acquire never returned with a FIFO at {hung:?}"
    );
}

/// `git update-ref`, berth's writer of a local origin's lock ref, appends to the ref's
/// reflog whenever `logs/<ref>` exists (core.logAllRefUpdates or not), opening it with
/// a blocking open() while it holds `<ref>.lock`. A FIFO a writer of the origin plants
/// at the lock ref's reflog path hangs every lock write until the writer's alarm kills
/// it: each acquire (and refresh) of the lane would fail, for good. The look before a
/// lock write `lstat`s that path and the dirs above it, so the lane is held named (the
/// FIFO's path, as for one under refs/) and an operator knows what to remove.
#[test]
fn a_fifo_at_the_lock_refs_reflog_holds_the_lane_named() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    let lane = crate::lane_lock::tests::widget_main();
    let planted: Vec<PathBuf> = [
        "refs/gstack/release-locks/+repo/main".to_owned(),
        crate::lane_lock::lock_ref_name(&lane),
    ]
    .into_iter()
    .map(|name| origin.bare.join("logs").join(name))
    .collect();
    for at in &planted {
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        fifo(at);
    }
    let outcome = acquire_within_a_minute(&origin).expect("the acquire never returned");
    let said = format!("{outcome:?}");
    assert!(
        outcome.is_err()
            && planted
                .iter()
                .any(|at| said.contains(&*at.to_string_lossy())),
        "a FIFO at the lock ref's reflog ({}) is not named: {said}",
        planted[0].display()
    );
}

/// `git update-ref` also appends to `logs/HEAD` when the origin's `HEAD` is a symbolic
/// ref to the ref it writes (`split_head_update`; `--no-deref` does not stop it), with
/// the same blocking open() under `<ref>.lock`. A writer of the origin points `HEAD` at
/// the lane's lock ref and plants a FIFO at `logs/HEAD`: the look before a lock write
/// `lstat`s only `logs/<lock ref>` and the dirs above it, so the write hangs until the
/// writer's alarm, after git moved the ref: the acquire answers `Acquired` 8 s later,
/// and SIGALRM (no signal git cleans its lock files on) leaves `HEAD.lock`. From then
/// on every write of the lane fails (`cannot lock ref 'HEAD'`): the release is refused
/// as a `<ref>.lock` "berth removes once it is 10 s old", which it never removes, so
/// the lock holds the lane to its TTL and no takeover writes it after. The FIFO is
/// never named.
#[test]
fn a_fifo_at_heads_reflog_holds_the_lane_named_when_head_names_the_lock_ref() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    let lane = crate::lane_lock::tests::widget_main();
    let head = format!("ref: {}\n", crate::lane_lock::lock_ref_name(&lane));
    std::fs::write(origin.bare.join("HEAD"), head).unwrap();
    let planted = origin.bare.join("logs/HEAD");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    fifo(&planted);
    let outcome = acquire_within_a_minute(&origin).expect("the acquire never returned");
    let said = format!("{outcome:?}");
    assert!(
        outcome.is_err() && said.contains(&*planted.to_string_lossy()),
        "a FIFO at HEAD's reflog, HEAD naming the lock ref ({}), is not named: {said}",
        planted.display()
    );
}

/// berth's writer of a local origin's lock ref is `git update-ref` (and, for a
/// cruft-held lock object, `git unpack-objects`), which reads the origin's objects as
/// git does: it unquotes a C-quoted `info/alternates` line, where libgit2 takes the
/// quotes literally. git opens a pack `.idx` in a pool only it reaches (verifying the
/// new lock commit) with a blocking open(): a FIFO there would hang every lock write
/// until the writer's alarm kills it, for good. The look before a lock write walks the
/// pools git reaches too, so the lane is held named.
#[test]
fn a_fifo_in_a_pool_only_git_reaches_holds_the_lane_named() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    let pool = origin.dir.path().join("pool.git");
    git2::Repository::init_bare(&pool).unwrap();
    let idx = pool.join("objects/pack/pack-1.idx");
    fifo(&idx);
    std::fs::File::create(idx.with_extension("pack")).unwrap();
    let line = format!("\"{}\"\n", pool.join("objects").display());
    std::fs::write(origin.bare.join("objects/info/alternates"), line).unwrap();
    let outcome = acquire_within_a_minute(&origin).expect("the acquire never returned");
    let said = format!("{outcome:?}");
    assert!(
        outcome.is_err() && said.contains(&*idx.to_string_lossy()),
        "a FIFO git opens in the pool it reaches through a quoted alternates line ({}) is not named: {said}",
        idx.display()
    );
}

/// Whether the look before a write of `lock_ref` names a FIFO at `logs/HEAD`, with
/// `HEAD` as `head` plants it in the git dir (which has `refs/heads/`).
fn heads_reflog_looked(lock_ref: &str, head: &dyn Fn(&Path)) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::create_dir_all(dir.path().join("refs/heads")).unwrap();
    fifo(&dir.path().join("logs/HEAD"));
    head(dir.path());
    look_before_write(dir.path(), lock_ref)
        .unwrap()
        .iter()
        .any(|b| b.name == Path::new("logs/HEAD"))
}

/// git appends to `logs/HEAD` on a write of the lock ref when `HEAD` names it as git reads
/// `HEAD`, and a second reading of it by berth missed spellings git takes (a NUL ending
/// the name, a symlink read through). So the look before a write `lstat`s `logs/HEAD`
/// whatever `HEAD` says: a FIFO there holds the lane named even with `HEAD` naming
/// another ref, or unreadable (a node there breaks git's own writes through `HEAD` too).
#[test]
fn a_fifo_at_heads_reflog_holds_the_lane_whatever_head_names() {
    let lock_ref = "refs/gstack/release-locks/x";
    let file = |text: String| move |at: &Path| std::fs::write(at.join("HEAD"), &text).unwrap();
    let link = |target: &'static str| {
        move |at: &Path| std::os::unix::fs::symlink(target, at.join("HEAD")).unwrap()
    };
    assert!(heads_reflog_looked(
        lock_ref,
        &file(format!("ref: {lock_ref}\n"))
    ));
    assert!(heads_reflog_looked(
        lock_ref,
        &file(format!("ref:\t{lock_ref}  \n"))
    ));
    assert!(heads_reflog_looked(lock_ref, &link(lock_ref)));
    assert!(heads_reflog_looked(
        lock_ref,
        &file("ref: refs/heads/main\n".to_owned())
    ));
    assert!(heads_reflog_looked(lock_ref, &link("refs/heads/main")));
    let long = format!("ref: {lock_ref}\n{}", " ".repeat(4096));
    assert!(heads_reflog_looked(lock_ref, &file(long)));
    assert!(heads_reflog_looked(lock_ref, &|_: &Path| {}));
}

/// git reads a loose `HEAD` as a C string: `ref: <name>` ends at the first NUL byte
/// (`parse_loose_ref_contents`), so `ref: <lock ref>\0junk` is a symbolic ref to the lock
/// ref for git, and `git update-ref` appends to `logs/HEAD` on every write of it. A look that
/// read the whole file (the NUL and what follows as part of the name) found `HEAD`
/// naming no lock ref and never `lstat`ed `logs/HEAD`: a FIFO there went unnamed, each
/// write hung to berth's SIGTERM, and a release (git appends to `logs/HEAD` before it
/// deletes the ref) never deleted: the lock held the lane to its TTL, unnamed.
#[test]
fn a_fifo_at_heads_reflog_holds_the_lane_named_when_head_names_the_lock_ref_up_to_a_nul() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    heads_reflog_fifo_is_named(&origin, &origin.url, &origin.bare, "\0junk\n");
}

/// Two spellings of `HEAD` that git reads as a symbolic ref to the lock ref (so
/// `git update-ref` appends to `logs/HEAD` on a write of it) and a reader of `HEAD` other
/// than git easily does not:
/// `ref: <lock ref>` ended by a NUL byte (git reads the file as a C string), and a symlink
/// whose target starts with `refs/` but is no valid ref name (`refs/heads/../../h`): git's
/// `files_read_raw_ref` then falls through to reading the file it points at, which says
/// `ref: <lock ref>`. Either way `logs/HEAD` is looked at (it is before every write).
#[test]
fn heads_reflog_is_looked_at_for_every_head_git_reads_as_naming_the_lock_ref() {
    let lock_ref = "refs/gstack/release-locks/x";
    let looked = |head: &dyn Fn(&Path)| heads_reflog_looked(lock_ref, head);
    let nul =
        |at: &Path| std::fs::write(at.join("HEAD"), format!("ref: {lock_ref}\0junk\n")).unwrap();
    let through_a_file = |at: &Path| {
        std::fs::write(at.join("h"), format!("ref: {lock_ref}\n")).unwrap();
        std::os::unix::fs::symlink("refs/heads/../../h", at.join("HEAD")).unwrap();
    };
    let missed: Vec<&str> = [
        ("a NUL after the name", looked(&nul)),
        ("a symlink git reads through", looked(&through_a_file)),
    ]
    .into_iter()
    .filter_map(|(how, looked)| (!looked).then_some(how))
    .collect();
    assert!(
        missed.is_empty(),
        "logs/HEAD not looked at for HEAD naming the lock ref by {missed:?}"
    );
}

/// The look before a write reads every git dir a reader may take ([`git_dirs_of`]). git
/// (`enter_repo`, `--git-dir`) and libgit2 (`find_repo_traverse`) take `<path>/.git` only
/// when it is a valid repository, and else `<path>` itself. A writer of a bare origin
/// makes an empty `.git` directory in it: a look of that empty directory alone, while
/// libgit2 reads and `git update-ref` writes the origin itself, names none of the nodes
/// it exists to name: here the FIFO at `logs/HEAD` (`HEAD` naming the lock ref). The
/// acquire would hang to berth's SIGTERM and succeed, the release hang and delete
/// nothing, unnamed: the lock would hold the lane to its TTL.
#[test]
fn a_stray_git_dir_in_a_bare_origin_hides_no_fifo_at_heads_reflog() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    std::fs::create_dir(origin.bare.join(".git")).unwrap();
    heads_reflog_fifo_is_named(&origin, &origin.url, &origin.bare, "\n");
}

/// A checkout origin whose `.git` is a symlink to its repository: git and libgit2 `stat`
/// `.git` and read the repository it leads to, so the look follows it too (an `lstat`
/// took it for no directory and looked at the checkout, naming nothing).
#[test]
fn a_symlinked_git_dir_hides_no_fifo_at_heads_reflog() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    let checkout = origin.dir.path().join("checkout");
    std::fs::create_dir(&checkout).unwrap();
    std::os::unix::fs::symlink(&origin.bare, checkout.join(".git")).unwrap();
    let url = checkout.to_str().unwrap();
    heads_reflog_fifo_is_named(&origin, url, &checkout.join(".git"), "\n");
}

/// With `HEAD` of `origin` saying `ref: <the lane's lock ref><rest>` and a FIFO at its
/// `logs/HEAD`, the lane taken through `url` is refused naming the FIFO (as under
/// `named_in`), or taken and released: never held unnamed.
fn heads_reflog_fifo_is_named(
    origin: &crate::lane_lock::tests::BareOrigin,
    url: &str,
    named_in: &Path,
    rest: &str,
) {
    let lane = crate::lane_lock::tests::widget_main();
    let lock_ref = crate::lane_lock::lock_ref_name(&lane);
    std::fs::write(origin.bare.join("HEAD"), format!("ref: {lock_ref}{rest}")).unwrap();
    std::fs::create_dir_all(origin.bare.join("logs")).unwrap();
    fifo(&origin.bare.join("logs/HEAD"));
    let planted = named_in.join("logs/HEAD");
    let client = origin.client();
    let taken = client.acquire(url, &lane, "me", Path::new("/a"));
    let named = |said: &str| said.contains(&*planted.to_string_lossy());
    let held = match taken {
        Ok(crate::lane_lock::Acquire::Acquired(held)) => held,
        other => {
            let said = format!("{other:?}");
            assert!(
                named(&said),
                "the lane is refused without naming {}: {said}",
                planted.display()
            );
            return;
        }
    };
    let released = client.release(&held);
    let said = format!("{released:?}");
    let left = origin.bare.join(&lock_ref).exists();
    assert!(
        !left,
        "acquired through an unnamed FIFO at {}; the release answered {said} and the lock ref is still there: the lane waits its TTL",
        planted.display()
    );
}

/// A `HEAD.lock` left in an origin whose `HEAD` names the lock ref (a git that crashed
/// there, or berth's own writer ended by its alarm or SIGKILL while it hung on
/// `logs/HEAD`) fails every write of the lane: `git update-ref` locks `HEAD` too
/// (`split_head_update`). berth names `HEAD.lock`, the file git named, for the operator
/// to remove (not the lock ref's own `.lock`, which is not there), and does not call the
/// lane "lock already held".
#[test]
fn a_leftover_head_lock_is_named_as_what_holds_the_lane() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    let lane = crate::lane_lock::tests::widget_main();
    let lock_ref = crate::lane_lock::lock_ref_name(&lane);
    std::fs::write(origin.bare.join("HEAD"), format!("ref: {lock_ref}\n")).unwrap();
    let left = origin.bare.join("HEAD.lock");
    std::fs::write(&left, "").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&left)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let client = origin.client();
    let said = format!("{:?}", origin.take(&client, &lane));
    // berth's own words follow git's quoted message: "(<git>): <file>; <what clears it>".
    let named = said
        .rsplit_once("): ")
        .and_then(|(_, rest)| rest.split_once("; "))
        .map(|(file, _)| std::path::PathBuf::from(file));
    assert!(
        named.as_ref().is_some_and(|file| file.exists()),
        "the lane is refused naming {named:?} as the `.lock` in its way, which is not there (HEAD.lock is): {said}"
    );
    assert!(
        !said.contains(crate::gstack_text::LOCK_ALREADY_HELD) && left.exists(),
        "a leftover HEAD.lock is no lock held, and berth removes no HEAD.lock: {said}"
    );
}

/// A local origin that is a linked worktree's checkout (its `.git` a file naming
/// `<main>/.git/worktrees/<name>`, which holds a `commondir`): libgit2 opens the worktree's
/// own git dir, where berth looks, judges leftovers, takes the writers' lock and walks the
/// trail, but `git update-ref` writes the lock ref in the common dir. Such an origin is
/// refused ([`super::refuse_linked`]), named with the repository to point the remote at,
/// before anything is written: no lock ref is left that nobody holds (review 28).
#[test]
fn a_linked_worktree_origin_is_refused_named_and_nothing_written() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    let main = origin.dir.path().join("main");
    let worktree = origin.dir.path().join("wt");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .arg("-C")
            .arg(&main)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    std::fs::create_dir(&main).unwrap();
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "first"]);
    git(&["worktree", "add", "-q", worktree.to_str().unwrap()]);
    let lane = crate::lane_lock::tests::widget_main();
    let client = origin.client();
    let worktree_git_dir = main.join(".git/worktrees/wt");
    for url in [&worktree, &worktree_git_dir] {
        let taken = client.acquire(url.to_str().unwrap(), &lane, "me", Path::new("/a"));
        let said = format!("{:?}", taken.as_ref().map(|_| ()));
        assert!(
            taken.is_err()
                && said.contains(&format!("commondir names {}", main.join(".git").display()))
                && said.contains(&format!(
                    "the origin is a linked worktree of the repository at {} (or that file was planted)",
                    main.display()
                ))
                && said.contains("point the remote at the repository you mean, or remove ")
                && said.contains(&format!("{}commondir", worktree_git_dir.join("").display())),
            "{url:?}: the acquire is refused naming the linked worktree and its repository: {said}"
        );
    }
    let left = git(&["for-each-ref", "--format=%(refname)", "refs/gstack"]);
    assert!(
        left.trim().is_empty(),
        "the refused acquires wrote lock ref(s) in the repository: {left}"
    );
}

/// A `commondir` naming the git dir itself (its absolute path), planted in an ordinary
/// bare origin by any writer of it: git and libgit2 both keep its refs where berth looks
/// (the common dir is the git dir, same device and inode), and berth's writer children
/// take the git dir as their common dir whatever the file says, so the lane is taken as
/// without it: no refusal that points back at the same origin (review 29).
#[test]
fn a_commondir_naming_the_origin_itself_is_harmless_and_the_lane_is_taken() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    std::fs::write(
        origin.bare.join("commondir"),
        format!("{}\n", origin.bare.display()),
    )
    .unwrap();
    let lane = crate::lane_lock::tests::widget_main();
    let taken = origin.take(&origin.client(), &lane);
    assert!(
        matches!(taken, Ok(crate::lane_lock::Acquire::Acquired(_))),
        "a self-naming commondir holds the lane: {taken:?}"
    );
}

/// A `commondir` naming the git dir itself by another spelling (`./`, `../locks.git`) is
/// as harmless as the absolute one above: git resolves it to the git dir (`git rev-parse
/// --git-common-dir` names the origin, `update-ref` writes there), and so does libgit2
/// ([`super::refuse_linked`]: same dev/ino). The writer child judges the directory it
/// names, not the file's bytes, so the lane is taken (review 30). One through a symlink
/// is refused, naming the file: git reads the link again after the child's look, and a
/// file system may answer it otherwise then (review 32).
#[test]
fn a_commondir_naming_the_origin_by_another_spelling_is_let_be() {
    let mut refused = Vec::new();
    for spelling in ["./", "../locks.git", "LINK"] {
        let origin = crate::lane_lock::tests::BareOrigin::new();
        let link = origin.dir.path().join("link.git");
        std::os::unix::fs::symlink(&origin.bare, &link).unwrap();
        let named = match spelling {
            "LINK" => link.display().to_string(),
            other => other.to_owned(),
        };
        std::fs::write(origin.bare.join("commondir"), format!("{named}\n")).unwrap();
        let lane = crate::lane_lock::tests::widget_main();
        let taken = origin.take(&origin.client(), &lane);
        let let_be = matches!(taken, Ok(crate::lane_lock::Acquire::Acquired(_)));
        let named_refusal = format!("{taken:?}").contains(
            "commondir is not a file naming the origin's git dir by a path without symlinks",
        );
        if let_be == (spelling == "LINK") || (spelling == "LINK" && !named_refusal) {
            refused.push(format!("{named:?}: {taken:?}"));
        }
    }
    assert!(
        refused.is_empty(),
        "a commondir naming the origin itself holds the lane, one through a symlink is refused by name: {refused:#?}"
    );
}

/// The same spelling planted while a lane is held (by anyone who can write the origin, or
/// a tool that "repairs" it): the release deletes the lock ref where berth holds it, and no
/// lock is left that nobody holds (review 30).
#[test]
fn a_self_naming_commondir_planted_while_held_leaves_no_lock_on_release() {
    let origin = crate::lane_lock::tests::BareOrigin::new();
    let lane = crate::lane_lock::tests::widget_main();
    let lock_ref = crate::lane_lock::lock_ref_name(&lane);
    let client = origin.client();
    let Ok(crate::lane_lock::Acquire::Acquired(held)) = origin.take(&client, &lane) else {
        panic!("a plain origin's lane is not taken");
    };
    std::fs::write(origin.bare.join("commondir"), "./\n").unwrap();
    let released = client.release(&held);
    let left = origin.bare.join(&lock_ref).exists();
    assert!(
        !left,
        "the release answered {released:?} and the lock ref is still there: nobody holds it"
    );
}
