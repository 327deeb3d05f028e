use super::*;

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

/// Fan-out directories of regular files settled before a look are not listed again by
/// the next while unchanged, and still cost their entries of the bound; whatever changes
/// one is seen: a FIFO planted in it, another directory (with a FIFO) renamed in its
/// place. A directory changed just before its listing is listed again every time.
#[test]
fn a_directory_listed_once_and_kept_hides_no_node_planted_after() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    let objects = git_dir.join("objects");
    for fan in ["ab", "cd", "ef"] {
        std::fs::create_dir_all(objects.join(fan)).unwrap();
        for n in 0..3 {
            std::fs::write(objects.join(fan).join(format!("{n:038}")), "x").unwrap();
        }
    }
    assert!(look(git_dir).unwrap().is_empty());
    assert!(!settled::kept(&objects.join("ab")), "changed just now");
    std::thread::sleep(settled::SETTLED_AGE + std::time::Duration::from_millis(300));
    assert!(look(git_dir).unwrap().is_empty());
    // On ext4, xfs, btrfs or tmpfs (a temp dir's usual filesystems) the listings are kept;
    // elsewhere none is, and the rest holds all the same.
    let keeps = settled::keeps_on(git_dir);
    for fan in ["ab", "cd", "ef"] {
        assert_eq!(settled::kept(&objects.join(fan)), keeps, "{fan}");
    }

    // 3 fan-out dirs of 3 files: 12 entries, kept or listed.
    let walk_objects = |budget: usize| {
        let mut budget = budget;
        let opened = open_dir(None, &path_cstring(&objects)).unwrap();
        walk(
            git_dir,
            opened,
            Path::new("objects"),
            &mut budget,
            Refused::TooMany,
        )
    };
    assert!(matches!(walk_objects(11), Err(Refused::TooMany(_))));
    assert!(walk_objects(12).unwrap().is_empty());

    fifo(&objects.join("ab/planted"));
    let moved = git_dir.join("cd-away");
    std::fs::rename(objects.join("cd"), &moved).unwrap();
    std::fs::create_dir(objects.join("cd")).unwrap();
    fifo(&objects.join("cd/swapped"));
    let mut names: Vec<_> = look(git_dir).unwrap().into_iter().map(|b| b.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            PathBuf::from("objects/ab/planted"),
            PathBuf::from("objects/cd/swapped")
        ]
    );
    assert_eq!(settled::kept(&objects.join("ef")), keeps);
}

/// Runs `body` on a thread of its own in a private mount namespace (nothing mounted there
/// leaks to the host), its panic raised again here; `false` (said on stderr) unless root.
fn in_a_mount_namespace(body: impl FnOnce() + Send) -> bool {
    use nix::libc;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting needs root");
        return false;
    }
    std::thread::scope(|scope| {
        let ran = scope.spawn(|| {
            // SAFETY: plain system calls; CLONE_NEWNS takes this thread alone.
            unsafe {
                assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
                let none = std::ptr::null();
                let private = libc::MS_REC | libc::MS_PRIVATE;
                assert_eq!(
                    libc::mount(none, c"/".as_ptr(), none, private, none.cast()),
                    0
                );
            }
            body();
        });
        if let Err(panic) = ran.join() {
            std::panic::resume_unwind(panic);
        }
    });
    true
}

fn mount(source: &Path, target: &Path, kind: &CStr, data: Option<&str>) {
    use nix::libc;
    let data = data.map(|d| CString::new(d).unwrap());
    let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
    // SAFETY: NUL-terminated strings that outlive the call.
    let mounted = unsafe {
        libc::mount(
            path_cstring(source).as_ptr(),
            path_cstring(target).as_ptr(),
            kind.as_ptr(),
            0,
            data_ptr.cast(),
        )
    };
    assert_eq!(
        mounted,
        0,
        "mount {source:?} on {target:?}: {}",
        Errno::last()
    );
}

fn unmount(target: &Path) {
    // SAFETY: a NUL-terminated path.
    let done = unsafe { nix::libc::umount2(path_cstring(target).as_ptr(), 0) };
    assert_eq!(done, 0, "umount {target:?}: {}", Errno::last());
}

/// What `lstat` says of a directory: device, inode, change time.
fn dev_ino_ctime(path: &Path) -> (u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
}

/// Review 42. The origin sits on a filesystem (an ext4 image on a loop device) that is
/// unmounted, changed while unmounted (here a FIFO linked into a settled fan-out
/// directory with debugfs, as an offline edit or a restored image would), and mounted
/// again on the same device: the fan-out directory has the same device, inode and change
/// time as when its listing was kept, though it now holds a FIFO. A fresh listing (the
/// code on `main`) finds it; the kept listing is charged instead and the FIFO is missed,
/// so libgit2 would open it. settled.rs says "a mount over it ... is another device and
/// inode, listed anew" and "no writer can set it back": a filesystem mounted again on the
/// same device keeps both, with whatever the device now holds. Root only (skips else).
#[test]
fn a_settled_directory_changed_while_its_filesystem_was_unmounted_is_listed_again() {
    let have = |tool: &str| std::process::Command::new(tool).arg("-V").output().is_ok();
    if !nix::unistd::geteuid().is_root()
        || !["mkfs.ext4", "losetup", "debugfs"].iter().all(|t| have(t))
    {
        eprintln!("skipped: needs root, mkfs.ext4, losetup and debugfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("origin.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let made = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .status()
        .unwrap();
    assert!(made.success(), "mkfs.ext4");
    let attached = std::process::Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(attached.status.success(), "losetup: {attached:?}");
    let device = PathBuf::from(String::from_utf8(attached.stdout).unwrap().trim());
    struct Detach(PathBuf);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = std::process::Command::new("losetup")
                .arg("-d")
                .arg(&self.0)
                .status();
        }
    }
    let _detach = Detach(device.clone());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();

    in_a_mount_namespace(|| {
        mount(&device, &mnt, c"ext4", None);
        let git_dir = mnt.join("origin.git");
        let ab = git_dir.join("objects/ab");
        std::fs::create_dir_all(&ab).unwrap();
        for n in 0..3 {
            std::fs::write(ab.join(format!("{n:038}")), "x").unwrap();
        }
        std::thread::sleep(settled::SETTLED_AGE + std::time::Duration::from_millis(300));
        assert!(look(&git_dir).unwrap().is_empty());
        assert!(settled::kept(&ab), "the listing of objects/ab was not kept");
        let before = dev_ino_ctime(&ab);
        unmount(&mnt);

        let mut debugfs = std::process::Command::new("debugfs")
            .args(["-w", "-f", "-"])
            .arg(&device)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            debugfs.stdin.as_mut().unwrap(),
            b"cd origin.git/objects/ab\nmknod planted p\n",
        )
        .unwrap();
        drop(debugfs.stdin.take());
        assert!(debugfs.wait().unwrap().success(), "debugfs");

        mount(&device, &mnt, c"ext4", None);
        let planted = ab.join("planted");
        let is_fifo = std::fs::symlink_metadata(&planted)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
        assert!(is_fifo, "debugfs planted no FIFO");
        assert_eq!(
            dev_ino_ctime(&ab),
            before,
            "not the same device, inode and ctime"
        );
        let found = look(&git_dir);
        unmount(&mnt);
        let names: Vec<_> = found.unwrap().into_iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            [PathBuf::from("objects/ab/planted")],
            "a FIFO in objects/ab a fresh listing shows was missed: objects/ab has the device, inode and change time of a listing kept before its filesystem was unmounted and changed"
        );
    });
}

/// Review 42. The origin is an overlay mount (a container's view of a repository kept in
/// image layers, say): `objects/ab` is a merged directory, there in the upper and the
/// lower layer. A FIFO linked into the lower layer's `objects/ab` shows in the overlay's
/// listing of it, but the overlay gives the merged directory the upper layer's change
/// time, which does not move: a listing kept by change time would hide the FIFO. So no
/// listing on an overlay is kept, and the FIFO is found. Root only (skips else).
#[test]
fn a_fifo_added_below_a_settled_merged_overlay_directory_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    for name in ["upper/origin.git/objects/ab", "work", "mnt"] {
        std::fs::create_dir_all(at(name)).unwrap();
    }
    let lower_ab = at("lower/origin.git/objects/ab");
    std::fs::create_dir_all(&lower_ab).unwrap();
    for n in 0..3 {
        std::fs::write(lower_ab.join(format!("{n:038}")), "x").unwrap();
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        at("lower").display(),
        at("upper").display(),
        at("work").display()
    );
    in_a_mount_namespace(|| {
        mount(Path::new("overlay"), &at("mnt"), c"overlay", Some(&options));
        let git_dir = at("mnt/origin.git");
        let ab = git_dir.join("objects/ab");
        // The overlay may mark its upper directories on a first look (their change
        // time moves): settle after it.
        assert!(look(&git_dir).unwrap().is_empty());
        std::thread::sleep(settled::SETTLED_AGE + std::time::Duration::from_millis(300));
        assert!(look(&git_dir).unwrap().is_empty());
        assert!(
            !settled::kept(&ab),
            "the listing of a merged overlay directory was kept"
        );
        let (_, _, ctime, ctime_nsec) = dev_ino_ctime(&ab);
        fifo(&lower_ab.join("planted"));
        let (_, _, ctime_after, ctime_nsec_after) = dev_ino_ctime(&ab);
        assert_eq!(
            (ctime, ctime_nsec),
            (ctime_after, ctime_nsec_after),
            "the merged directory's change time moved: this overlay would not hide the FIFO"
        );
        let shown = std::fs::read_dir(&ab)
            .unwrap()
            .any(|e| e.unwrap().file_name() == "planted");
        assert!(shown, "the overlay's listing does not show the FIFO");
        let found = look(&git_dir);
        unmount(&at("mnt"));
        let names: Vec<_> = found.unwrap().into_iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            [PathBuf::from("objects/ab/planted")],
            "a FIFO the overlay's listing of objects/ab shows was missed: the merged directory's change time did not move"
        );
    });
}

/// Review 42. An objects dir one entry past its bound whose only subdirectory is a
/// settled fan-out directory: the code on `main` counts the dir's own entries first and
/// runs out in the fan-out directory, refusing with `objects/ab holds more than ...`
/// whatever order the listing gives; the kept listing is charged where `ab` is met in
/// its parent's listing instead, so the walk runs out on a later entry of `objects` and
/// the refusal names `objects`. The refusal is the same; the path it names changed.
#[test]
fn a_settled_directory_leaves_the_refusal_past_the_bound_naming_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let git_dir = dir.path();
    let objects = git_dir.join("objects");
    let ab = objects.join("ab");
    std::fs::create_dir_all(&ab).unwrap();
    for n in 0..3 {
        std::fs::write(ab.join(format!("{n:038}")), "x").unwrap();
    }
    // Regular files beside `ab` (as `objects/info/packs` might be), until `ab` is not
    // the last the listing gives.
    let mut n = 0;
    loop {
        std::fs::write(objects.join(format!("f{n}")), "x").unwrap();
        n += 1;
        let order: Vec<_> = std::fs::read_dir(&objects)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if n >= 4 && order.last().is_some_and(|last| last != "ab") {
            break;
        }
    }
    std::thread::sleep(settled::SETTLED_AGE + std::time::Duration::from_millis(300));
    assert!(look(git_dir).unwrap().is_empty());
    assert!(settled::kept(&ab), "the listing of objects/ab was not kept");
    let in_objects = std::fs::read_dir(&objects).unwrap().count();
    // One short of every entry: objects' own, and ab's three.
    let mut budget = in_objects + 3 - 1;
    let opened = open_dir(None, &path_cstring(&objects)).unwrap();
    let walked = walk(
        git_dir,
        opened,
        Path::new("objects"),
        &mut budget,
        Refused::TooManyObjects,
    );
    match walked {
        Err(Refused::TooManyObjects(named)) => assert_eq!(
            named, ab,
            "the refusal past the bound names another directory than a fresh listing does"
        ),
        other => panic!("not refused past the bound: {other:?}"),
    }
}

/// A loop device attached to a sparse image of `size` bytes made by `mkfs` (with `args`),
/// detached when dropped; `None` (said on stderr) unless root with the tools.
struct LoopImage {
    device: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopImage {
    fn new(mkfs: &str, args: &[&str], size: u64, tools: &[&str]) -> Option<LoopImage> {
        let have = |tool: &str| {
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok()
        };
        if !nix::unistd::geteuid().is_root()
            || !std::iter::once(&mkfs)
                .chain(tools)
                .chain(&["losetup"])
                .all(|t| have(t))
        {
            eprintln!("skipped: needs root, {mkfs}, {tools:?} and losetup");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("origin.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(size)
            .unwrap();
        let made = std::process::Command::new(mkfs)
            .args(args)
            .arg(&image)
            .output()
            .unwrap();
        assert!(made.status.success(), "{mkfs}: {made:?}");
        let attached = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(attached.status.success(), "losetup: {attached:?}");
        let device = PathBuf::from(String::from_utf8(attached.stdout).unwrap().trim());
        Some(LoopImage { device, _dir: dir })
    }
}

impl Drop for LoopImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.device)
            .status();
    }
}

fn run(tool: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {out:?}");
}

/// Review 43. On btrfs, every subvolume's top directory is inode 256, a snapshot copies
/// its source's change time, and a deleted subvolume's device number (an anonymous
/// device, lowest free first) goes to the next subvolume made: so a directory with the
/// same mount, device, inode and change time as a kept listing can hold anything its
/// snapshot source held. Every step is open to a writer of `objects/` without root
/// (Linux lets the owner create, snapshot and `rmdir` an empty subvolume; the test uses
/// `btrfs subvolume sync` only to wait for the device number to come free, which `sync`
/// and a wait do too):
/// `objects/ab` made a subvolume holding loose objects, and a snapshot of it kept outside
/// the git dir; a file added to `objects/ab` and a FIFO to the snapshot in the same clock
/// tick (tried until both change times are equal); `objects/ab`'s listing kept by a look;
/// then `objects/ab` emptied and removed, and the snapshot snapshotted again as
/// `objects/ab`. It has the first one's key and change time and holds the FIFO: a kept
/// listing would hide it, and libgit2 would open it. So nothing on btrfs is kept, and
/// the FIFO is found. Root only for the loop mount (skips else).
#[test]
fn a_settled_subvolume_replaced_by_a_snapshot_with_its_device_number_is_listed_again() {
    let Some(image) = LoopImage::new("mkfs.btrfs", &["-q", "-f"], 256 << 20, &["btrfs"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    in_a_mount_namespace(|| {
        mount(&image.device, &mnt, c"btrfs", None);
        let git_dir = mnt.join("origin.git");
        let objects = git_dir.join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let ab = objects.join("ab");
        let stash = mnt.join("stash");
        run(
            "btrfs",
            &["subvolume".as_ref(), "create".as_ref(), ab.as_os_str()],
        );
        std::fs::write(ab.join(format!("{:038}", 0)), "x").unwrap();
        run(
            "btrfs",
            &[
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                ab.as_os_str(),
                stash.as_os_str(),
            ],
        );
        let ctime = |path: &Path| {
            let (_, _, secs, nsecs) = dev_ino_ctime(path);
            (secs, nsecs)
        };
        let mut planted = None;
        for n in 1..500 {
            let file = ab.join(format!("{n:038}"));
            let fifo_at = stash.join(format!("p{n}"));
            std::fs::write(&file, "x").unwrap();
            fifo(&fifo_at);
            if ctime(&ab) == ctime(&stash) {
                planted = Some(format!("p{n}"));
                break;
            }
            std::fs::remove_file(&file).unwrap();
            std::fs::remove_file(&fifo_at).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(7));
        }
        let planted = planted.expect("never the same change time in one tick");

        std::thread::sleep(settled::SETTLED_AGE + std::time::Duration::from_millis(300));
        assert!(look(&git_dir).unwrap().is_empty());
        assert!(
            !settled::kept(&ab),
            "the listing of a directory on btrfs was kept"
        );
        let before = dev_ino_ctime(&ab);

        for entry in std::fs::read_dir(&ab).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        std::fs::remove_dir(&ab).unwrap();
        run(
            "btrfs",
            &["subvolume".as_ref(), "sync".as_ref(), mnt.as_os_str()],
        );
        run(
            "btrfs",
            &[
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                stash.as_os_str(),
                ab.as_os_str(),
            ],
        );
        let after = dev_ino_ctime(&ab);
        let found = look(&git_dir);
        unmount(&mnt);
        assert_eq!(
            after, before,
            "not the same device, inode and change time (another took the device number?)"
        );
        let names: Vec<_> = found.unwrap().into_iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            [Path::new("objects/ab").join(&planted)],
            "a FIFO in objects/ab a fresh listing shows was missed: the snapshot put there has the mount, device, inode and change time of the subvolume whose listing was kept"
        );
    });
}
