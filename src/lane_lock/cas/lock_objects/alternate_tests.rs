//! Origins that borrow objects: berth follows `objects/info/alternates` exactly as git
//! does (git's writer freshens a lock commit's copy wherever it finds one there), and the
//! look before libgit2 reads counts each borrowed objects dir once.

use std::path::PathBuf;

use super::old_tree::{borrow, counted_by_git, objects};
use crate::lane_lock::refs_look::alternate_objects_dirs;
use crate::lane_lock::tests::{BareOrigin, bare_repo};

/// The bare repository `name` beside `origin`'s, made if not there.
fn pool(origin: &BareOrigin, name: &str) -> PathBuf {
    let at = origin.dir.path().join(name);
    if !at.exists() {
        bare_repo(&at);
    }
    at
}

/// Makes the repository `at` borrow from the pools `names` (beside `origin`), in order.
fn borrows(origin: &BareOrigin, at: &std::path::Path, names: &[&str]) {
    let lines: Vec<String> = names
        .iter()
        .map(|name| objects(&pool(origin, name)))
        .collect();
    borrow(at, &lines);
}

/// The objects dirs git uses for `origin`, in its order (`git count-objects -v`'s
/// `alternate:` lines, which git prints as it added them).
fn gits_alternates(origin: &BareOrigin) -> Vec<PathBuf> {
    counted_by_git(&origin.bare)
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
        let used = pool(origin, name).join("objects").canonicalize().unwrap();
        assert!(gits.contains(&used), "git does not use {name}: {gits:?}");
    }
}

/// git joins every relative line to the objects dir naming it, not only one starting
/// with '.'.
#[test]
fn a_relative_alternate_is_followed_as_git_does() {
    let origin = BareOrigin::new();
    bare_repo(&origin.bare.join("objects/nested.git"));
    borrow(&origin.bare, &["nested.git/objects".to_owned()]);
    followed_as_git(&origin, &[]);
    assert_eq!(gits_alternates(&origin).len(), 1);
}

/// git reads the alternates files of depths 0 to 5 and uses the dirs the last names:
/// a chain of seven pools is followed to the sixth, not the seventh.
#[test]
fn an_alternates_chain_is_followed_six_deep() {
    let origin = BareOrigin::new();
    let mut naming = origin.bare.clone();
    for i in 1..=7 {
        let name = format!("pool{i}.git");
        borrows(&origin, &naming, &[&name]);
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
    borrows(&origin, &origin.bare, &["p.git", "q.git"]);
    borrows(&origin, &pool(&origin, "p.git"), &["x.git"]);
    borrows(&origin, &pool(&origin, "x.git"), &["y.git"]);
    let chain = ["q.git", "r.git", "s.git", "t.git", "u.git", "x.git"];
    for pair in chain.windows(2) {
        borrows(&origin, &pool(&origin, pair[0]), &[pair[1]]);
    }
    followed_as_git(&origin, &["y.git"]);
}

/// The origin borrows from C and A; A names itself twice (git skips a dir it already
/// has); C borrows from D. The repeats take none of the 64 dirs looked in.
#[test]
fn a_pool_naming_itself_is_followed_once_as_git_does() {
    let origin = BareOrigin::new();
    borrows(&origin, &origin.bare, &["c.git", "a.git"]);
    borrows(&origin, &pool(&origin, "a.git"), &["a.git", "a.git"]);
    borrows(&origin, &pool(&origin, "c.git"), &["d.git"]);
    followed_as_git(&origin, &["d.git"]);
}

/// git unquotes a line starting with '"' (`parse_alt_odb_entry`: escapes, octal), takes
/// one with broken quoting literally, and splits at '\n' only: a line ending in '\r'
/// names a dir with that '\r' in its name, which is not there.
#[test]
fn a_quoted_alternate_is_unquoted_and_a_carriage_return_kept_as_git_does() {
    let origin = BareOrigin::new();
    let quoted = objects(&pool(&origin, "d q.git"));
    let octal = objects(&pool(&origin, "fAg.git")).replace("fAg", "f\\101g");
    let crlf = objects(&pool(&origin, "e.git"));
    borrow(
        &origin.bare,
        &[
            format!("\"{quoted}\""),
            format!("\"{octal}\""),
            format!("{crlf}\r"),
            format!("\"{crlf}"),
        ],
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
        let a = super::pool(&origin, "a.git");
        let fan_out = a.join("objects/ab");
        std::fs::create_dir_all(&fan_out).unwrap();
        let entries = MAX_OBJECTS_ENTRIES / 30;
        for n in 0..entries {
            std::fs::File::create(fan_out.join(format!("{n:038x}"))).unwrap();
        }
        let line = super::objects(&a);
        super::borrow(&a, &[line.clone(), line.clone()]);
        super::borrow(&origin.bare, &[line]);
        assert_eq!(super::gits_alternates(&origin).len(), 1);
        let taken = origin.take(&origin.client(), &widget_main());
        assert!(
            matches!(taken, Ok(Acquire::Acquired(_))),
            "a lock on an origin whose one pool holds {entries} entries was not taken: {taken:?}"
        );
    }
}
