//! Lock writes on origins that borrow objects: git's writer freshens a lock object's copy
//! in an alternate, wherever git resolves and follows it, on that file system's clock.

mod review17_relative_alternate {
    use super::super::old_tree::{OldTreeOrigin, borrow, counted_by_git};
    use crate::lane_lock::tests::bare_repo;

    /// The origin borrows from a pool named by a relative `info/alternates` line that does
    /// not start with '.' (git resolves every relative line against the objects dir naming
    /// it). Its own copy of the empty tree is in a cruft pack; the pool has it loose. git's
    /// writer (`unpack-objects`) skips the cruft pack, freshens the pool's copy and writes
    /// none in the origin; berth looks for the pool relative to its own working directory,
    /// finds no copy, and fails every lock write with `OnlyCruft`: the lane is wedged.
    #[test]
    fn a_lock_write_succeeds_when_the_cruft_packed_tree_is_in_a_relative_alternate() {
        let old = OldTreeOrigin::cruft_packed();
        let alt = old.origin.bare.join("objects/pool.git");
        bare_repo(&alt);
        old.tree_in(&alt);
        borrow(&old.origin.bare, &["pool.git/objects".to_owned()]);
        // git itself follows the line: it sees the pool's copy.
        let said = counted_by_git(&old.origin.bare);
        assert!(
            said.contains("alternate:"),
            "git does not follow it: {said}"
        );
        old.assert_a_lock_write_succeeds();
    }
}

mod review17_deep_alternate {
    use super::super::old_tree::{OldTreeOrigin, borrow, objects};

    /// The origin borrows through a chain of six object pools (git follows a chain six
    /// deep: it reads the alternates files of depths 0 to 5, and uses the dirs the last
    /// names), the sixth holding the empty tree loose; the origin's own copy is in a cruft
    /// pack. git's writer freshens the sixth pool's copy and writes none in the origin;
    /// berth stops at the fifth, so every lock write fails with `OnlyCruft`.
    #[test]
    fn a_lock_write_succeeds_when_the_cruft_packed_tree_is_in_the_sixth_alternate() {
        let old = OldTreeOrigin::cruft_packed();
        let mut naming = old.origin.bare.clone();
        for i in 1..=6 {
            let pool = old.pool(&format!("pool{i}.git"));
            borrow(&naming, &[objects(&pool)]);
            naming = pool;
        }
        old.tree_in(&naming);
        old.assert_a_lock_write_succeeds();
    }
}

mod review17_loose_and_pooled {
    use super::super::old_tree::{OldTreeOrigin, borrow, empty_tree, objects, pack_only};
    use crate::lane_lock::tests::{BareOrigin, git_fed};

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
        let old = OldTreeOrigin::loose_in(origin);
        let alt = old.pool("pool.git");
        let pooled = empty_tree(&alt);
        pack_only(&alt, &pooled);
        assert_eq!(pooled, old.tree);
        borrow(&old.origin.bare, &[objects(&alt)]);
        old.assert_a_lock_write_succeeds();
    }
}

mod repeated_alternate {
    use super::super::old_tree::{OldTreeOrigin, borrow, counted_by_git, objects};

    /// The origin borrows from pools C and A; A's `info/alternates` names A itself, twice
    /// (git skips an objects dir it already has); C borrows from D, which holds the empty
    /// tree loose; the origin's own copy is in a cruft pack. git follows C to D (two deep)
    /// and its writer freshens D's copy, so berth's walk, skipping A's repeats as git
    /// does, must reach D too rather than fill its 64 with them and fail every lock
    /// write with `OnlyCruft`.
    #[test]
    fn a_lock_write_succeeds_when_a_pool_names_itself_before_the_pool_holding_the_tree() {
        let old = OldTreeOrigin::cruft_packed();
        let (a, c, d) = (old.pool("a.git"), old.pool("c.git"), old.pool("d.git"));
        old.tree_in(&d);
        borrow(&a, &[objects(&a), objects(&a)]);
        borrow(&c, &[objects(&d)]);
        borrow(&old.origin.bare, &[objects(&c), objects(&a)]);
        // git itself follows the chain to D.
        let said = counted_by_git(&old.origin.bare);
        assert!(
            said.contains(&format!("alternate: {}", objects(&d))),
            "git does not follow it: {said}"
        );
        old.assert_a_lock_write_succeeds();
    }
}
