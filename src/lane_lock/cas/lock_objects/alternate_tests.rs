//! Origins that borrow objects: berth follows `objects/info/alternates` exactly as git
//! does (git's writer freshens a lock commit's copy wherever it finds one there), and the
//! look before libgit2 reads counts each borrowed objects dir once.

use std::path::{Path, PathBuf};

use crate::lane_lock::refs_look::alternate_objects_dirs;
use crate::lane_lock::tests::BareOrigin;

/// The objects dir of the bare repository `name` beside `origin`'s, made if not there.
fn pool(origin: &BareOrigin, name: &str) -> PathBuf {
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
}

/// Writes `text` as the `info/alternates` of the objects dir `naming`.
fn name_in(naming: &Path, text: &str) {
    std::fs::write(naming.join("info/alternates"), text).unwrap();
}

/// `text` naming each of `pools` on a line of its own, by absolute path.
fn lines(origin: &BareOrigin, pools: &[&str]) -> String {
    pools
        .iter()
        .map(|name| format!("{}\n", pool(origin, name).display()))
        .collect()
}

/// The objects dirs git uses for `origin`, in its order (`git count-objects -v`'s
/// `alternate:` lines, which git prints as it added them).
fn gits_alternates(origin: &BareOrigin) -> Vec<PathBuf> {
    let out = std::process::Command::new("git")
        .args(["count-objects", "-v"])
        .env("GIT_DIR", &origin.bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("alternate: "))
        .map(PathBuf::from)
        .collect()
}

/// Asserts that berth's walk reaches the dirs git uses, in git's order, and that
/// `expected` (pool names) are among them.
fn followed_as_git(origin: &BareOrigin, expected: &[&str]) {
    let berths: Vec<PathBuf> = alternate_objects_dirs(&origin.bare.join("objects"))
        .iter()
        .map(|dir| dir.canonicalize().unwrap())
        .collect();
    let gits = gits_alternates(origin);
    assert_eq!(berths, gits, "berth follows other dirs than git");
    for name in expected {
        let objects = pool(origin, name).canonicalize().unwrap();
        assert!(gits.contains(&objects), "git does not use {name}: {gits:?}");
    }
}

/// git joins every relative line to the objects dir naming it, not only one starting
/// with '.'.
#[test]
fn a_relative_alternate_is_followed_as_git_does() {
    let origin = BareOrigin::new();
    pool(&origin, "pool.git");
    let nested = origin.bare.join("objects/nested.git");
    std::fs::rename(origin.dir.path().join("pool.git"), &nested).unwrap();
    name_in(&origin.bare.join("objects"), "nested.git/objects\n");
    followed_as_git(&origin, &[]);
    assert_eq!(gits_alternates(&origin).len(), 1);
}

/// git reads the alternates files of depths 0 to 5 and uses the dirs the last names:
/// a chain of seven pools is followed to the sixth, not the seventh.
#[test]
fn an_alternates_chain_is_followed_six_deep() {
    let origin = BareOrigin::new();
    let mut naming = origin.bare.join("objects");
    for i in 1..=7 {
        let name = format!("pool{i}.git");
        name_in(&naming, &lines(&origin, &[&name]));
        naming = pool(&origin, &name);
    }
    followed_as_git(&origin, &["pool6.git"]);
    assert_eq!(gits_alternates(&origin).len(), 6);
}

/// The origin borrows from P and Q; P from X, X from Y; Q reaches X too, through R, S,
/// T, U (X is then the sixth, whose own alternates are not read). git reads depth first
/// in file order: P, X, Y, then Q's chain, X skipped as had. A walk that takes Q's chain
/// first marks X had where it is not followed and never reaches Y, where git's writer
/// freshens a lock object's copy.
#[test]
fn a_pool_reached_deep_before_it_is_reached_shallow_is_followed_as_git_does() {
    let origin = BareOrigin::new();
    name_in(
        &origin.bare.join("objects"),
        &lines(&origin, &["p.git", "q.git"]),
    );
    name_in(&pool(&origin, "p.git"), &lines(&origin, &["x.git"]));
    name_in(&pool(&origin, "x.git"), &lines(&origin, &["y.git"]));
    let chain = ["q.git", "r.git", "s.git", "t.git", "u.git", "x.git"];
    for pair in chain.windows(2) {
        name_in(&pool(&origin, pair[0]), &lines(&origin, &[pair[1]]));
    }
    followed_as_git(&origin, &["y.git"]);
}

/// The origin borrows from C and A; A names itself twice (git skips a dir it already
/// has); C borrows from D. The repeats take none of the 64 dirs looked in.
#[test]
fn a_pool_naming_itself_is_followed_once_as_git_does() {
    let origin = BareOrigin::new();
    name_in(
        &origin.bare.join("objects"),
        &lines(&origin, &["c.git", "a.git"]),
    );
    name_in(
        &pool(&origin, "a.git"),
        &lines(&origin, &["a.git", "a.git"]),
    );
    name_in(&pool(&origin, "c.git"), &lines(&origin, &["d.git"]));
    followed_as_git(&origin, &["d.git"]);
}

/// git unquotes a line starting with '"' (`parse_alt_odb_entry`: escapes, octal), takes
/// one with broken quoting literally, and splits at '\n' only: a line ending in '\r'
/// names a dir with that '\r' in its name, which is not there.
#[test]
fn a_quoted_alternate_is_unquoted_and_a_carriage_return_kept_as_git_does() {
    let origin = BareOrigin::new();
    let quoted = pool(&origin, "d q.git").display().to_string();
    let octal = pool(&origin, "fAg.git")
        .display()
        .to_string()
        .replace("fAg", "f\\101g");
    let crlf = pool(&origin, "e.git").display().to_string();
    name_in(
        &origin.bare.join("objects"),
        &format!("\"{quoted}\"\n\"{octal}\"\n{crlf}\r\n\"{crlf}\n"),
    );
    followed_as_git(&origin, &["d q.git", "fAg.git"]);
    assert_eq!(gits_alternates(&origin).len(), 2);
}

mod repeats_in_the_look {
    use crate::lane_lock::Acquire;
    use crate::lane_lock::refs_look::MAX_OBJECTS_ENTRIES;
    use crate::lane_lock::tests::{BareOrigin, widget_main};

    /// The origin borrows from pool A, whose `info/alternates` names A itself twice. git
    /// and libgit2 skip an objects dir they already have, so they see A once: its 2,184
    /// entries, far under the look's bound. A look before any libgit2 read that walked A
    /// every time it is named (31 times, five deep) would count past
    /// `MAX_OBJECTS_ENTRIES` and refuse every lock operation with advice (`git gc`) that
    /// does not mend it.
    #[test]
    fn a_lock_is_taken_when_a_pool_names_itself() {
        let origin = BareOrigin::new();
        let objects = super::pool(&origin, "a.git");
        let fan_out = objects.join("ab");
        std::fs::create_dir_all(&fan_out).unwrap();
        let entries = MAX_OBJECTS_ENTRIES / 30;
        for n in 0..entries {
            std::fs::File::create(fan_out.join(format!("{n:038x}"))).unwrap();
        }
        let line = format!("{}\n", objects.display());
        super::name_in(&objects, &line.repeat(2));
        super::name_in(&origin.bare.join("objects"), &line);
        assert_eq!(super::gits_alternates(&origin).len(), 1);
        let taken = origin.take(&origin.client(), &widget_main());
        assert!(
            matches!(taken, Ok(Acquire::Acquired(_))),
            "a lock on an origin whose one pool holds {entries} entries was not taken: {taken:?}"
        );
    }
}
