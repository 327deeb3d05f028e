//! The queue label and the hidden PR-body marker, byte-compatible with the gstack release
//! daemon (`queuedMarker` / `parseQueuedMarker`).
//!
//! A producer queues a PR by adding [`QUEUE_LABEL`] and an HTML comment holding the queue
//! record as pretty JSON. The label says "land me"; the marker says which run, branch and
//! version the producer meant, so a PR whose branch was swapped after queuing is caught.
//!
//! Parsing follows gstack's `START \s* (JSON) \s* END` rule (first start token, first end
//! token after it, JSON trimmed of whitespace, so CRLF bodies work) with one deliberate
//! difference: a body that carries a *second*, different marker is refused as ambiguous
//! instead of silently trusting the first one.

use serde_json::{Map, Value};

/// The GitHub label a queued PR carries.
pub const QUEUE_LABEL: &str = "gstack-release-queued";
/// Opening token of the marker comment.
pub const MARKER_START: &str = "<!-- gstack-release-queued";
/// Closing token of the marker comment.
pub const MARKER_END: &str = "gstack-release-queued -->";

/// Why a PR body does not carry a usable marker. Each message is meant for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    #[error("the PR body has no `{MARKER_START}` marker")]
    Missing,
    #[error("the PR body opens a `{MARKER_START}` marker but never closes it with `{MARKER_END}`")]
    Unterminated,
    #[error("the marker does not hold valid JSON: {0}")]
    Json(String),
    #[error("the marker JSON is not an object")]
    NotObject,
    #[error("the marker field `{0}` is missing or not a string")]
    Field(&'static str),
    #[error("the PR body carries two different markers; refusing to guess which one is meant")]
    Ambiguous,
}

/// What the marker says about the PR number. gstack writes an integer; anything else that
/// is not `null` is kept so the claim check can refuse it with the value in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerPrNumber {
    /// No `prNumber`, or `null`: nothing to compare.
    Absent,
    Number(u64),
    /// Present but not a non-negative integer (rendered as JSON).
    Invalid(String),
}

/// A valid marker: the four required strings, pulled out once, plus the whole JSON object
/// in its original key order, so [`render_marker`] can write back exactly what was read
/// and unknown fields survive.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    run_id: String,
    feature_branch: String,
    version: String,
    queued_at: String,
    fields: Map<String, Value>,
}

impl Marker {
    /// Validates a marker object: `runId`, `featureBranch`, `version` and `queuedAt` must be
    /// strings (the gstack validity rule); every other field is kept as is.
    pub fn from_object(fields: Map<String, Value>) -> Result<Self, MarkerError> {
        let string = |key: &'static str| -> Result<String, MarkerError> {
            fields
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(MarkerError::Field(key))
        };
        Ok(Self {
            run_id: string("runId")?,
            feature_branch: string("featureBranch")?,
            version: string("version")?,
            queued_at: string("queuedAt")?,
            fields,
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn feature_branch(&self) -> &str {
        &self.feature_branch
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn queued_at(&self) -> &str {
        &self.queued_at
    }

    /// `prNumber` as the claim check needs it (see [`MarkerPrNumber`]).
    pub fn pr_number(&self) -> MarkerPrNumber {
        match self.fields.get("prNumber") {
            None | Some(Value::Null) => MarkerPrNumber::Absent,
            Some(v) => v.as_u64().map_or_else(
                || MarkerPrNumber::Invalid(v.to_string()),
                MarkerPrNumber::Number,
            ),
        }
    }

    /// `baseBranch`, when present as a string (gstack always writes it; older markers may not).
    pub fn base_branch(&self) -> Option<&str> {
        self.optional_str("baseBranch")
    }

    /// `repoIdentity`, when present as a string (absent on legacy markers).
    pub fn repo_identity(&self) -> Option<&str> {
        self.optional_str("repoIdentity")
    }

    /// Every field of the marker in its original order, known or not.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    fn optional_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

/// The marker text gstack writes: start token, newline, 2-space pretty JSON, newline, end
/// token. A string value that itself contains [`MARKER_END`] cannot be read back, exactly as
/// with gstack; producers never write such values.
pub fn render_marker(marker: &Marker) -> String {
    // `{:#}` is serde_json's infallible pretty printer (2 spaces, like `JSON.stringify`).
    let json = Value::Object(marker.fields.clone());
    format!("{MARKER_START}\n{json:#}\n{MARKER_END}")
}

/// Finds and validates the marker in a PR body. The marker may sit anywhere in the body;
/// whitespace (including `\r\n`) around the JSON is ignored. A second marker is tolerated
/// only if its JSON is identical to the first.
pub fn parse_marker(body: &str) -> Result<Marker, MarkerError> {
    let (first, rest) = next_marker(body).ok_or(MarkerError::Missing)?;
    let json = first?;
    if let Some((second, _)) = next_marker(rest) {
        // A repeated identical marker (say, a body pasted twice) is harmless; anything else
        // could be an attempt to make berth and a human reader see different records.
        if !matches!(second, Ok(other) if other == json) {
            return Err(MarkerError::Ambiguous);
        }
    }
    let value: Value = serde_json::from_str(json).map_err(|e| MarkerError::Json(e.to_string()))?;
    match value {
        Value::Object(fields) => Marker::from_object(fields),
        _ => Err(MarkerError::NotObject),
    }
}

/// The trimmed JSON text of the first marker in `text` (or why it is unterminated), and the
/// text after it. `None` when no start token appears at all.
fn next_marker(text: &str) -> Option<(Result<&str, MarkerError>, &str)> {
    let start = text.find(MARKER_START)? + MARKER_START.len();
    let after_start = &text[start..];
    match after_start.find(MARKER_END) {
        Some(end) => Some((
            Ok(after_start[..end].trim()),
            &after_start[end + MARKER_END.len()..],
        )),
        None => Some((Err(MarkerError::Unterminated), "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample_fields() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "runId": "run-1",
            "repoPath": "/home/u/code/widget",
            "repoIdentity": "github.com/acme/widget",
            "baseBranch": "main",
            "featureBranch": "feat/x",
            "prNumber": 42,
            "version": "1.2.3.4",
            "livingPlanPath": "/plans/x.md",
            "worktreePath": "/wt/x",
            "queuedAt": "2025-01-02T03:04:05.678Z",
            "futureField": {"kept": [1, 2]}
        }) else {
            unreachable!("literal is an object")
        };
        map
    }

    fn sample() -> Marker {
        Marker::from_object(sample_fields()).expect("sample is valid")
    }

    #[test]
    fn renders_exactly_the_gstack_format() {
        let text = render_marker(&sample());
        assert!(text.starts_with("<!-- gstack-release-queued\n{\n  \"runId\": \"run-1\",\n"));
        assert!(text.ends_with("\n  }\n}\ngstack-release-queued -->"));
        // Key order is the producer's, unknown fields included.
        let marker = sample();
        let keys: Vec<&str> = marker.fields().keys().map(String::as_str).collect();
        assert_eq!(keys.first(), Some(&"runId"));
        assert_eq!(keys.last(), Some(&"futureField"));
    }

    #[test]
    fn parses_a_marker_in_the_middle_of_a_body() {
        let body = format!(
            "## Summary\n\nShips x.\n\n{}\n\ntrailing",
            render_marker(&sample())
        );
        let m = parse_marker(&body).expect("valid");
        assert_eq!(m, sample());
        assert_eq!(m.run_id(), "run-1");
        assert_eq!(m.feature_branch(), "feat/x");
        assert_eq!(m.version(), "1.2.3.4");
        assert_eq!(m.queued_at(), "2025-01-02T03:04:05.678Z");
        assert_eq!(m.pr_number(), MarkerPrNumber::Number(42));
        assert_eq!(m.base_branch(), Some("main"));
        assert_eq!(m.repo_identity(), Some("github.com/acme/widget"));
        assert_eq!(m.fields()["futureField"], json!({"kept": [1, 2]}));
    }

    #[test]
    fn tolerates_crlf_line_endings() {
        let body = format!(
            "Intro\r\n\r\n{}\r\n",
            render_marker(&sample()).replace('\n', "\r\n")
        );
        assert_eq!(parse_marker(&body), Ok(sample()));
    }

    #[test]
    fn tolerates_a_marker_on_one_line() {
        let body = r#"<!-- gstack-release-queued {"runId":"r","featureBranch":"f","version":"v","queuedAt":"q"} gstack-release-queued -->"#;
        let m = parse_marker(body).expect("valid");
        assert_eq!(m.pr_number(), MarkerPrNumber::Absent);
        assert_eq!(m.base_branch(), None);
    }

    #[test]
    fn missing_and_truncated_markers_are_refused() {
        assert_eq!(parse_marker(""), Err(MarkerError::Missing));
        assert_eq!(parse_marker("plain body"), Err(MarkerError::Missing));
        let full = render_marker(&sample());
        let truncated = &full[..full.len() - 5];
        assert_eq!(parse_marker(truncated), Err(MarkerError::Unterminated));
        // The end token alone, or a bare comment with the start token, is not a marker.
        assert_eq!(parse_marker(MARKER_END), Err(MarkerError::Missing));
        assert_eq!(
            parse_marker("<!-- gstack-release-queued -->"),
            Err(MarkerError::Unterminated)
        );
    }

    #[test]
    fn non_object_and_broken_json_are_refused() {
        for json in ["[1, 2]", "\"runId\"", "42", "null"] {
            let body = format!("{MARKER_START}\n{json}\n{MARKER_END}");
            assert_eq!(parse_marker(&body), Err(MarkerError::NotObject), "{json}");
        }
        let body = format!("{MARKER_START}\n{{\"runId\": \n{MARKER_END}");
        assert!(matches!(parse_marker(&body), Err(MarkerError::Json(_))));
        let body = format!("{MARKER_START}\n{MARKER_END}");
        assert!(matches!(parse_marker(&body), Err(MarkerError::Json(_))));
    }

    #[test]
    fn each_required_field_must_be_a_string() {
        for key in ["runId", "featureBranch", "version", "queuedAt"] {
            let mut fields = sample_fields();
            fields.remove(key);
            assert_eq!(Marker::from_object(fields), Err(MarkerError::Field(key)));
            let mut fields = sample_fields();
            fields.insert(key.to_owned(), json!(7));
            let body = format!(
                "{MARKER_START}\n{}\n{MARKER_END}",
                Value::Object(fields.clone())
            );
            assert_eq!(parse_marker(&body), Err(MarkerError::Field(key)));
        }
    }

    #[test]
    fn non_integer_pr_numbers_are_kept_as_invalid() {
        let mut fields = sample_fields();
        fields.insert("prNumber".into(), json!("42"));
        let m = Marker::from_object(fields).expect("still valid");
        assert_eq!(m.pr_number(), MarkerPrNumber::Invalid("\"42\"".into()));
        let mut fields = sample_fields();
        fields.insert("prNumber".into(), Value::Null);
        let m = Marker::from_object(fields).expect("still valid");
        assert_eq!(m.pr_number(), MarkerPrNumber::Absent);
    }

    #[test]
    fn two_different_markers_are_ambiguous_but_a_repeat_is_fine() {
        let one = render_marker(&sample());
        let mut fields = sample_fields();
        fields.insert("featureBranch".into(), json!("feat/evil"));
        let other = render_marker(&Marker::from_object(fields).expect("valid"));
        assert_eq!(
            parse_marker(&format!("{one}\n\n{other}")),
            Err(MarkerError::Ambiguous)
        );
        assert_eq!(
            parse_marker(&format!("{one}\nquoted: {MARKER_START} ...")),
            Err(MarkerError::Ambiguous)
        );
        assert_eq!(parse_marker(&format!("{one}\n\n{one}")), Ok(sample()));
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!("{MARKER_START}\n{json}\n{MARKER_END}");
        assert!(matches!(parse_marker(&body), Err(MarkerError::Json(_))));
    }

    #[test]
    fn huge_bodies_are_scanned_in_linear_time() {
        let start = std::time::Instant::now();
        let filler = "x".repeat(20 * 1024 * 1024);
        let body = format!("{filler}\n{}\n{filler}", render_marker(&sample()));
        assert_eq!(parse_marker(&body), Ok(sample()));
        let many_starts = MARKER_START.repeat(500_000);
        assert_eq!(parse_marker(&many_starts), Err(MarkerError::Unterminated));
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    fn arb_marker() -> impl Strategy<Value = Marker> {
        let text = any::<String>().prop_filter("cannot carry the end token", |s| {
            !s.contains(MARKER_END) && !s.contains(MARKER_START)
        });
        (
            text.clone(),
            text.clone(),
            text.clone(),
            text.clone(),
            proptest::option::of(any::<u64>()),
            proptest::collection::vec(("[a-zA-Z]{1,12}", text), 0..4),
        )
            .prop_map(|(run, feat, version, queued, pr, extra)| {
                let mut fields = Map::new();
                fields.insert("runId".into(), Value::String(run));
                if let Some(pr) = pr {
                    fields.insert("prNumber".into(), json!(pr));
                }
                fields.insert("featureBranch".into(), Value::String(feat));
                for (k, v) in extra {
                    fields.entry(k).or_insert(Value::String(v));
                }
                fields.insert("version".into(), Value::String(version));
                fields.insert("queuedAt".into(), Value::String(queued));
                Marker::from_object(fields).expect("all required fields are strings")
            })
    }

    proptest! {
        #[test]
        fn render_then_parse_round_trips(
            marker in arb_marker(),
            before in "[^<]{0,200}",
            after in "[^<]{0,200}",
            crlf in any::<bool>(),
        ) {
            let mut rendered = render_marker(&marker);
            if crlf {
                rendered = rendered.replace('\n', "\r\n");
            }
            let body = format!("{before}{rendered}{after}");
            let parsed = parse_marker(&body);
            prop_assert_eq!(parsed.as_ref(), Ok(&marker));
            if !crlf {
                prop_assert_eq!(render_marker(&marker), rendered);
            }
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in ".{0,400}") {
            let _ = parse_marker(&body);
            let _ = parse_marker(&format!("{MARKER_START}{body}{MARKER_END}"));
        }
    }
}
