//! The shipped `rules/` and `policies/` files, compiled into the binary so berth runs with
//! no rules directory at all. A rules root given with `--rules-root` overrides them file by
//! file.
//!
//! Add a line here for every file added under the repository's `rules/` or `policies/`;
//! the test below fails until you do.

/// `(name, contents)`, the name relative to the rules root with `/` separators.
pub const FILES: &[(&str, &str)] = &[
    (
        "rules/discovery.rhai",
        include_str!("../../rules/discovery.rhai"),
    ),
    (
        "rules/discovery.tests.json",
        include_str!("../../rules/discovery.tests.json"),
    ),
    (
        "policies/landing.rhai",
        include_str!("../../policies/landing.rhai"),
    ),
    (
        "policies/landing.tests.json",
        include_str!("../../policies/landing.tests.json"),
    ),
    // The faults' detectors and the learned-patterns rule.
    (
        "rules/detectors/01_iteration_caps.tests.json",
        include_str!("../../rules/detectors/01_iteration_caps.tests.json"),
    ),
    (
        "rules/detectors/03_premature_completion.tests.json",
        include_str!("../../rules/detectors/03_premature_completion.tests.json"),
    ),
    (
        "rules/detectors/04_plan_synthesis_invalid.tests.json",
        include_str!("../../rules/detectors/04_plan_synthesis_invalid.tests.json"),
    ),
    (
        "rules/detectors/05_hand_merged_feature.tests.json",
        include_str!("../../rules/detectors/05_hand_merged_feature.tests.json"),
    ),
    (
        "rules/detectors/06_worktree_leak.tests.json",
        include_str!("../../rules/detectors/06_worktree_leak.tests.json"),
    ),
    (
        "rules/detectors/07_red_spec_trivial.tests.json",
        include_str!("../../rules/detectors/07_red_spec_trivial.tests.json"),
    ),
    (
        "rules/detectors/08_plan_mutator_mismatch.tests.json",
        include_str!("../../rules/detectors/08_plan_mutator_mismatch.tests.json"),
    ),
    (
        "rules/detectors/09_plan_review_stalemate.tests.json",
        include_str!("../../rules/detectors/09_plan_review_stalemate.tests.json"),
    ),
    (
        "rules/detectors/10_feature_verifier_scope.tests.json",
        include_str!("../../rules/detectors/10_feature_verifier_scope.tests.json"),
    ),
    (
        "rules/detectors/queue/02_landed_not_merged.tests.json",
        include_str!("../../rules/detectors/queue/02_landed_not_merged.tests.json"),
    ),
    (
        "rules/learned.tests.json",
        include_str!("../../rules/learned.tests.json"),
    ),
    (
        "rules/learned.rhai",
        include_str!("../../rules/learned.rhai"),
    ),
    (
        "rules/detectors/01_iteration_caps.rhai",
        include_str!("../../rules/detectors/01_iteration_caps.rhai"),
    ),
    (
        "rules/detectors/03_premature_completion.rhai",
        include_str!("../../rules/detectors/03_premature_completion.rhai"),
    ),
    (
        "rules/detectors/04_plan_synthesis_invalid.rhai",
        include_str!("../../rules/detectors/04_plan_synthesis_invalid.rhai"),
    ),
    (
        "rules/detectors/05_hand_merged_feature.rhai",
        include_str!("../../rules/detectors/05_hand_merged_feature.rhai"),
    ),
    (
        "rules/detectors/06_worktree_leak.rhai",
        include_str!("../../rules/detectors/06_worktree_leak.rhai"),
    ),
    (
        "rules/detectors/07_red_spec_trivial.rhai",
        include_str!("../../rules/detectors/07_red_spec_trivial.rhai"),
    ),
    (
        "rules/detectors/08_plan_mutator_mismatch.rhai",
        include_str!("../../rules/detectors/08_plan_mutator_mismatch.rhai"),
    ),
    (
        "rules/detectors/09_plan_review_stalemate.rhai",
        include_str!("../../rules/detectors/09_plan_review_stalemate.rhai"),
    ),
    (
        "rules/detectors/10_feature_verifier_scope.rhai",
        include_str!("../../rules/detectors/10_feature_verifier_scope.rhai"),
    ),
    (
        "rules/detectors/queue/01_stranded_record.rhai",
        include_str!("../../rules/detectors/queue/01_stranded_record.rhai"),
    ),
    (
        "rules/detectors/queue/02_landed_not_merged.rhai",
        include_str!("../../rules/detectors/queue/02_landed_not_merged.rhai"),
    ),
    (
        "rules/detectors/queue/03_lock_past_ttl.rhai",
        include_str!("../../rules/detectors/queue/03_lock_past_ttl.rhai"),
    ),
    (
        "rules/detectors/queue/04_queue_remote_disagree.rhai",
        include_str!("../../rules/detectors/queue/04_queue_remote_disagree.rhai"),
    ),
    (
        "rules/detectors/queue/05_unreadable_record.rhai",
        include_str!("../../rules/detectors/queue/05_unreadable_record.rhai"),
    ),
    (
        "rules/detectors/queue/06_rule_failing.rhai",
        include_str!("../../rules/detectors/queue/06_rule_failing.rhai"),
    ),
    (
        "rules/detectors/queue/06_rule_failing.tests.json",
        include_str!("../../rules/detectors/queue/06_rule_failing.tests.json"),
    ),
    (
        "rules/detectors/queue/07_learned_budget.rhai",
        include_str!("../../rules/detectors/queue/07_learned_budget.rhai"),
    ),
    (
        "rules/detectors/queue/07_learned_budget.tests.json",
        include_str!("../../rules/detectors/queue/07_learned_budget.tests.json"),
    ),
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn every_shipped_rule_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let on_disk =
            super::super::source::SourceSet::load(Some(root)).expect("the repository's rules load");
        let embedded: Vec<&str> = super::FILES.iter().map(|(name, _)| *name).collect();
        for file in on_disk.files() {
            assert!(
                embedded.contains(&file.name.as_str()),
                "{} is shipped but not embedded: add it to src/rules/embedded.rs",
                file.name
            );
        }
    }
}
