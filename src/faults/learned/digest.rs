//! What a pattern file says of its patterns, as one digest: every entry as parsed, less the
//! fields a hit-count rewrite changes (`hitCount`, `lastHit`). berth's own rewrite and
//! gstack's `persistHitCounts` change only those, on every hit; a file whose digest equals
//! the current set's keeps that set (its compiled matchers, its place in the budget's
//! round, its last answers) instead of compiling it all again.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The fields a hit-count rewrite changes: left out of the digest.
const HIT_FIELDS: [&str; 2] = ["hitCount", "lastHit"];

/// The digest of a file's entries (see the module).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatternsDigest([u8; 32]);

impl PatternsDigest {
    /// The digest of `value`, the file as parsed (an array of entries, or anything else).
    pub fn of(value: &Value) -> PatternsDigest {
        let mut hasher = Sha256::new();
        match value {
            Value::Array(entries) => {
                hasher.update(b"[");
                for entry in entries {
                    feed_entry(&mut hasher, entry);
                }
            }
            other => feed(&mut hasher, other),
        }
        PatternsDigest(hasher.finalize().into())
    }
}

/// One entry, each field but the hit fields, in its order, length-prefixed so no two
/// different entries feed the same bytes.
fn feed_entry(hasher: &mut Sha256, entry: &Value) {
    let Value::Object(fields) = entry else {
        hasher.update(b"v");
        feed(hasher, entry);
        return;
    };
    hasher.update(b"o");
    for (key, value) in fields
        .iter()
        .filter(|(k, _)| !HIT_FIELDS.contains(&k.as_str()))
    {
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        feed(hasher, value);
    }
    hasher.update(b"}");
}

fn feed(hasher: &mut Sha256, value: &Value) {
    let text = value.to_string();
    hasher.update((text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_hit_fields_leave_the_digest_unchanged() {
        let entry = |extra: Value| {
            let mut entry = json!({"category": "A", "pattern": "x", "note": 1});
            for (k, v) in extra.as_object().unwrap() {
                entry[k] = v.clone();
            }
            PatternsDigest::of(&json!([entry]))
        };
        let base = entry(json!({}));
        assert_eq!(
            base,
            entry(json!({"hitCount": 3, "lastHit": "2026-01-01T00:00:00Z"}))
        );
        assert_ne!(base, entry(json!({"pattern": "y"})));
        assert_ne!(base, entry(json!({"note": 2})));
        assert_ne!(base, PatternsDigest::of(&json!([])));
        assert_ne!(
            PatternsDigest::of(&json!([{"a": "bc"}])),
            PatternsDigest::of(&json!([{"ab": "c"}]))
        );
    }
}
