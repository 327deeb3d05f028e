//! Lock writes on origins that borrow objects: git's writer freshens a lock object's copy
//! in an alternate, wherever git resolves and follows it, on that file system's clock.

mod review17_relative_alternate {
    use crate::lane_lock::Acquire;
    use crate::lane_lock::tests::{BareOrigin, git_fed, widget_main};

    /// The origin borrows from a pool named by a relative `info/alternates` line that does
    /// not start with '.' (git resolves every relative line against the objects dir naming
    /// it). Its own copy of the empty tree is in a cruft pack; the pool has it loose. git's
    /// writer (`unpack-objects`) skips the cruft pack, freshens the pool's copy and writes
    /// none in the origin; berth looks for the pool relative to its own working directory,
    /// finds no copy, and fails every lock write with `OnlyCruft`: the lane is wedged.
    #[test]
    fn a_lock_write_succeeds_when_the_cruft_packed_tree_is_in_a_relative_alternate() {
        let origin = BareOrigin::new();
        let tree = git_fed(
            &origin.bare,
            &["hash-object", "-w", "-t", "tree", "--stdin"],
            "",
        );
        let loose = origin
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]);
        std::fs::File::options()
            .write(true)
            .open(&loose)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400))
            .unwrap();
        git_fed(&origin.bare, &["repack", "-q", "--cruft", "-d"], "");
        assert!(!loose.exists(), "the cruft repack left {tree} loose");
        let alt = origin.bare.join("objects/pool.git");
        let out = std::process::Command::new("git")
            .args(["init", "--bare", "-q"])
            .arg(&alt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let pooled = git_fed(&alt, &["hash-object", "-w", "-t", "tree", "--stdin"], "");
        assert_eq!(pooled, tree);
        std::fs::write(
            origin.bare.join("objects/info/alternates"),
            "pool.git/objects\n",
        )
        .unwrap();
        // git itself follows the line: it sees the pool's copy.
        let out = std::process::Command::new("git")
            .args(["count-objects", "-v"])
            .env("GIT_DIR", &origin.bare)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("alternate:"),
            "git does not follow it: {said}"
        );
        let client = origin.client();
        let tries: Vec<_> = (0..3)
            .map(|_| origin.take(&client, &widget_main()))
            .collect();
        assert!(
            tries
                .iter()
                .any(|taken| matches!(taken, Ok(Acquire::Acquired(_)))),
            "3 lock writes all failed (left loose in origin: {}): {:?}",
            loose.exists(),
            tries.last()
        );
    }
}

mod review17_deep_alternate {
    use crate::lane_lock::Acquire;
    use crate::lane_lock::tests::{BareOrigin, git_fed, widget_main};

    /// The origin borrows through a chain of six object pools (git follows a chain six
    /// deep: it reads the alternates files of depths 0 to 5, and uses the dirs the last
    /// names), the sixth holding the empty tree loose; the origin's own copy is in a cruft
    /// pack. git's writer freshens the sixth pool's copy and writes none in the origin;
    /// berth stops at the fifth, so every lock write fails with `OnlyCruft`.
    #[test]
    fn a_lock_write_succeeds_when_the_cruft_packed_tree_is_in_the_sixth_alternate() {
        let origin = BareOrigin::new();
        let tree = git_fed(
            &origin.bare,
            &["hash-object", "-w", "-t", "tree", "--stdin"],
            "",
        );
        let loose = origin
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]);
        std::fs::File::options()
            .write(true)
            .open(&loose)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400))
            .unwrap();
        git_fed(&origin.bare, &["repack", "-q", "--cruft", "-d"], "");
        assert!(!loose.exists(), "the cruft repack left {tree} loose");
        let mut naming = origin.bare.join("objects");
        let mut last = naming.clone();
        for i in 1..=6 {
            let pool = origin.dir.path().join(format!("pool{i}.git"));
            let out = std::process::Command::new("git")
                .args(["init", "--bare", "-q"])
                .arg(&pool)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            std::fs::write(
                naming.join("info/alternates"),
                format!("{}\n", pool.join("objects").display()),
            )
            .unwrap();
            naming = pool.join("objects");
            last = pool;
        }
        let pooled = git_fed(&last, &["hash-object", "-w", "-t", "tree", "--stdin"], "");
        assert_eq!(pooled, tree);
        let client = origin.client();
        let tries: Vec<_> = (0..3)
            .map(|_| origin.take(&client, &widget_main()))
            .collect();
        assert!(
            tries
                .iter()
                .any(|taken| matches!(taken, Ok(Acquire::Acquired(_)))),
            "3 lock writes all failed (left loose in origin: {}): {:?}",
            loose.exists(),
            tries.last()
        );
    }
}

mod review17_loose_and_pooled {
    use crate::lane_lock::Acquire;
    use crate::lane_lock::tests::{BareOrigin, git_fed, widget_main};

    /// A group-shared origin (`core.sharedRepository`: git's writer, `unpack-objects`)
    /// borrows from a pool that holds the empty tree in an ordinary (not cruft) pack, and
    /// the origin still has the month-old loose copy a released lock left. git's writer
    /// looks in every pack first, the pool's too, freshens the pool's pack and stops,
    /// leaving the origin's loose copy alone: the tree stays on (the pool's copy is fresh),
    /// yet the check, which looks only at the origin's own packs, fails every lock write.
    #[test]
    fn a_lock_write_succeeds_when_git_freshened_the_pools_pack_over_an_old_loose_copy() {
        let origin = BareOrigin::new();
        git_fed(
            &origin.bare,
            &["config", "core.sharedRepository", "group"],
            "",
        );
        let alt = origin.dir.path().join("pool.git");
        let out = std::process::Command::new("git")
            .args(["init", "--bare", "-q"])
            .arg(&alt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let pooled = git_fed(&alt, &["hash-object", "-w", "-t", "tree", "--stdin"], "");
        git_fed(
            &alt,
            &["pack-objects", "-q", "objects/pack/pack"],
            &format!("{pooled}\n"),
        );
        std::fs::remove_dir_all(alt.join("objects").join(&pooled[..2])).unwrap();
        let tree = git_fed(
            &origin.bare,
            &["hash-object", "-w", "-t", "tree", "--stdin"],
            "",
        );
        assert_eq!(pooled, tree);
        let loose = origin
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]);
        std::fs::File::options()
            .write(true)
            .open(&loose)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400))
            .unwrap();
        std::fs::write(
            origin.bare.join("objects/info/alternates"),
            format!("{}\n", alt.join("objects").display()),
        )
        .unwrap();
        let client = origin.client();
        let tries: Vec<_> = (0..3)
            .map(|_| origin.take(&client, &widget_main()))
            .collect();
        assert!(
            tries
                .iter()
                .any(|taken| matches!(taken, Ok(Acquire::Acquired(_)))),
            "3 lock writes all failed: {:?}",
            tries.last()
        );
    }
}

mod repeated_alternate {
    use crate::lane_lock::Acquire;
    use crate::lane_lock::tests::{BareOrigin, git_fed, widget_main};

    /// The origin borrows from pools C and A; A's `info/alternates` names A itself, twice
    /// (git skips an objects dir it already has); C borrows from D, which holds the empty
    /// tree loose; the origin's own copy is in a cruft pack. git follows C to D (two deep)
    /// and its writer freshens D's copy, so berth's walk, skipping A's repeats as git
    /// does, must reach D too rather than fill its 64 with them and fail every lock
    /// write with `OnlyCruft`.
    #[test]
    fn a_lock_write_succeeds_when_a_pool_names_itself_before_the_pool_holding_the_tree() {
        let origin = BareOrigin::new();
        let tree = git_fed(
            &origin.bare,
            &["hash-object", "-w", "-t", "tree", "--stdin"],
            "",
        );
        let loose = origin
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]);
        std::fs::File::options()
            .write(true)
            .open(&loose)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400))
            .unwrap();
        git_fed(&origin.bare, &["repack", "-q", "--cruft", "-d"], "");
        assert!(!loose.exists(), "the cruft repack left {tree} loose");
        let pool = |name: &str| {
            let at = origin.dir.path().join(name);
            let out = std::process::Command::new("git")
                .args(["init", "--bare", "-q"])
                .arg(&at)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            at
        };
        let (a, c, d) = (pool("a.git"), pool("c.git"), pool("d.git"));
        let pooled = git_fed(&d, &["hash-object", "-w", "-t", "tree", "--stdin"], "");
        assert_eq!(pooled, tree);
        let objects = |at: &std::path::Path| at.join("objects").display().to_string();
        std::fs::write(
            a.join("objects/info/alternates"),
            format!("{}\n{}\n", objects(&a), objects(&a)),
        )
        .unwrap();
        std::fs::write(
            c.join("objects/info/alternates"),
            format!("{}\n", objects(&d)),
        )
        .unwrap();
        std::fs::write(
            origin.bare.join("objects/info/alternates"),
            format!("{}\n{}\n", objects(&c), objects(&a)),
        )
        .unwrap();
        // git itself follows the chain to D.
        let out = std::process::Command::new("git")
            .args(["count-objects", "-v"])
            .env("GIT_DIR", &origin.bare)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("alternate: {}", objects(&d))),
            "git does not follow it: {said}"
        );
        let client = origin.client();
        let tries: Vec<_> = (0..3)
            .map(|_| origin.take(&client, &widget_main()))
            .collect();
        assert!(
            tries
                .iter()
                .any(|taken| matches!(taken, Ok(Acquire::Acquired(_)))),
            "3 lock writes all failed (left loose in origin: {}): {:?}",
            loose.exists(),
            tries.last()
        );
    }
}

mod review19_seen_deep_first {
    use crate::lane_lock::Acquire;
    use crate::lane_lock::tests::{BareOrigin, git_fed, widget_main};

    /// The origin borrows from pools P and Q. P borrows from X, X from Y, which holds the
    /// empty tree loose; Q reaches X too, through R, S, T, U (X is then the sixth, whose
    /// own alternates git does not read). The origin's own copy is in a cruft pack. git
    /// reads alternates depth first in file order: P, X, Y, then Q's chain (X again,
    /// skipped), so its writer freshens Y's copy. berth's walk takes Q's chain first,
    /// marks X had at the sixth depth, where it is not followed, then skips X under P:
    /// Y is never looked in and every lock write fails with `OnlyCruft`.
    #[test]
    fn a_lock_write_succeeds_when_a_pool_is_reached_deep_before_it_is_reached_shallow() {
        let origin = BareOrigin::new();
        let tree = git_fed(
            &origin.bare,
            &["hash-object", "-w", "-t", "tree", "--stdin"],
            "",
        );
        let loose = origin
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]);
        std::fs::File::options()
            .write(true)
            .open(&loose)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400))
            .unwrap();
        git_fed(&origin.bare, &["repack", "-q", "--cruft", "-d"], "");
        assert!(!loose.exists(), "the cruft repack left {tree} loose");
        let objects = |name: &str| {
            let at = origin.dir.path().join(name);
            if !at.exists() {
                let out = std::process::Command::new("git")
                    .args(["init", "--bare", "-q"])
                    .arg(&at)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
            }
            at.join("objects")
        };
        let names = |naming: &std::path::Path, named: &[&str]| {
            let lines: String = named
                .iter()
                .map(|n| format!("{}\n", objects(n).display()))
                .collect();
            std::fs::write(naming.join("info/alternates"), lines).unwrap();
        };
        let pooled = git_fed(
            &objects("y.git").with_file_name(""),
            &["hash-object", "-w", "-t", "tree", "--stdin"],
            "",
        );
        assert_eq!(pooled, tree);
        names(&origin.bare.join("objects"), &["p.git", "q.git"]);
        names(&objects("p.git"), &["x.git"]);
        names(&objects("x.git"), &["y.git"]);
        let chain = ["q.git", "r.git", "s.git", "t.git", "u.git", "x.git"];
        for pair in chain.windows(2) {
            names(&objects(pair[0]), &[pair[1]]);
        }
        // git itself follows P to X to Y.
        let out = std::process::Command::new("git")
            .args(["count-objects", "-v"])
            .env("GIT_DIR", &origin.bare)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("alternate: {}", objects("y.git").display())),
            "git does not follow it: {said}"
        );
        let client = origin.client();
        let tries: Vec<_> = (0..3)
            .map(|_| origin.take(&client, &widget_main()))
            .collect();
        assert!(
            tries
                .iter()
                .any(|taken| matches!(taken, Ok(Acquire::Acquired(_)))),
            "3 lock writes all failed (left loose in origin: {}): {:?}",
            loose.exists(),
            tries.last()
        );
    }
}

mod review19_repeats_counted_in_the_look {
    use crate::lane_lock::Acquire;
    use crate::lane_lock::refs_look::MAX_OBJECTS_ENTRIES;
    use crate::lane_lock::tests::{BareOrigin, widget_main};

    /// The origin borrows from pool A, whose `info/alternates` names A itself twice (the
    /// configuration the alternates-walk dedupe of 46863d8 was made for). git and libgit2
    /// skip an objects dir they already have, so they see A once: its 2,200 entries,
    /// far under the look's bound. berth's look before any libgit2 read (refs_look's
    /// store walk) follows every line five deep without that dedupe and walks A 31 times,
    /// counting past `MAX_OBJECTS_ENTRIES`: every lock operation is refused with
    /// "pack the origin's loose objects", which nothing in the origin mends.
    #[test]
    fn a_lock_is_taken_when_a_pool_names_itself() {
        let origin = BareOrigin::new();
        let a = origin.dir.path().join("a.git");
        let out = std::process::Command::new("git")
            .args(["init", "--bare", "-q"])
            .arg(&a)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let objects = a.join("objects");
        let fan_out = objects.join("ab");
        std::fs::create_dir_all(&fan_out).unwrap();
        let entries = MAX_OBJECTS_ENTRIES / 30;
        for n in 0..entries {
            std::fs::File::create(fan_out.join(format!("{n:038x}"))).unwrap();
        }
        let line = format!("{}\n", objects.display());
        std::fs::write(objects.join("info/alternates"), line.repeat(2)).unwrap();
        std::fs::write(origin.bare.join("objects/info/alternates"), &line).unwrap();
        // git itself sees the pool once.
        let out = std::process::Command::new("git")
            .args(["count-objects", "-v"])
            .env("GIT_DIR", &origin.bare)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            said.matches("alternate: ").count(),
            1,
            "git sees the pool other than once: {said}"
        );
        let taken = origin.take(&origin.client(), &widget_main());
        assert!(
            matches!(taken, Ok(Acquire::Acquired(_))),
            "a lock on an origin whose one pool holds {entries} entries was not taken: {taken:?}"
        );
    }
}

mod review19_quoted_alternate {
    use crate::lane_lock::Acquire;
    use crate::lane_lock::tests::{BareOrigin, git_fed, widget_main};

    /// The origin borrows from pool D through a C-quoted `info/alternates` line (git
    /// unquotes a line that starts with '"', as `parse_alt_odb_entry` does); D holds the
    /// empty tree loose, the origin's own copy is in a cruft pack. git's writer follows
    /// the line and freshens D's copy; berth takes the quotes as part of the path, never
    /// looks in D, and fails every lock write with `OnlyCruft`.
    #[test]
    fn a_lock_write_succeeds_when_the_pool_holding_the_tree_is_named_quoted() {
        let origin = BareOrigin::new();
        let tree = git_fed(
            &origin.bare,
            &["hash-object", "-w", "-t", "tree", "--stdin"],
            "",
        );
        let loose = origin
            .bare
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]);
        std::fs::File::options()
            .write(true)
            .open(&loose)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86400))
            .unwrap();
        git_fed(&origin.bare, &["repack", "-q", "--cruft", "-d"], "");
        assert!(!loose.exists(), "the cruft repack left {tree} loose");
        let d = origin.dir.path().join("d.git");
        let out = std::process::Command::new("git")
            .args(["init", "--bare", "-q"])
            .arg(&d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let pooled = git_fed(&d, &["hash-object", "-w", "-t", "tree", "--stdin"], "");
        assert_eq!(pooled, tree);
        let objects = d.join("objects").display().to_string();
        std::fs::write(
            origin.bare.join("objects/info/alternates"),
            format!("\"{objects}\"\n"),
        )
        .unwrap();
        // git itself follows the quoted line to D.
        let out = std::process::Command::new("git")
            .args(["count-objects", "-v"])
            .env("GIT_DIR", &origin.bare)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("alternate: {objects}")),
            "git does not follow it: {said}"
        );
        let client = origin.client();
        let tries: Vec<_> = (0..3)
            .map(|_| origin.take(&client, &widget_main()))
            .collect();
        assert!(
            tries
                .iter()
                .any(|taken| matches!(taken, Ok(Acquire::Acquired(_)))),
            "3 lock writes all failed (left loose in origin: {}): {:?}",
            loose.exists(),
            tries.last()
        );
    }
}
