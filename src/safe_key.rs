//! `safe_key` and the record id, byte-for-byte as the gstack release daemon computes them.
//!
//! Every file name and lock ref berth derives from producer data goes through here, so a
//! branch or repo name can never smuggle a path separator or a ref component into them.

/// Trims, folds every run of characters outside `[A-Za-z0-9._-]` into one `-`, strips
/// leading and trailing `-`, and answers `record` for what is left empty.
pub fn safe_key(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_unsafe_run = false;
    for ch in raw.trim().chars() {
        if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-') {
            out.push(ch);
            in_unsafe_run = false;
        } else if !in_unsafe_run {
            out.push('-');
            in_unsafe_run = true;
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "record".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `safe_key("<repoKey>-<baseBranch>-pr-<prNumber>")` with `repoKey = safe_key(identity)`.
pub fn record_id(repo_identity: &str, base_branch: &str, pr_number: u64) -> String {
    safe_key(&format!(
        "{}-{}-pr-{}",
        safe_key(repo_identity),
        base_branch,
        pr_number
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folds_runs_and_trims() {
        assert_eq!(
            safe_key("  github.com/acme/widget  "),
            "github.com-acme-widget"
        );
        assert_eq!(safe_key("a//b::c"), "a-b-c");
        assert_eq!(safe_key("--x--"), "x");
        assert_eq!(safe_key("///"), "record");
        assert_eq!(safe_key(""), "record");
        assert_eq!(safe_key("path:/home/u/code/w"), "path-home-u-code-w");
        assert_eq!(safe_key("feat/über"), "feat-ber");
    }

    #[test]
    fn record_id_matches_gstack() {
        assert_eq!(
            record_id("github.com/acme/widget", "main", 42),
            "github.com-acme-widget-main-pr-42"
        );
        assert_eq!(
            record_id("github.com/acme/widget", "release/2.x", 7),
            "github.com-acme-widget-release-2.x-pr-7"
        );
    }

    proptest! {
        #[test]
        fn output_is_always_a_safe_file_name(raw in ".*") {
            let key = safe_key(&raw);
            prop_assert!(!key.is_empty());
            prop_assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
            prop_assert!(!key.starts_with('-') && !key.ends_with('-'));
            prop_assert_eq!(safe_key(&key), key.clone());
        }
    }
}
