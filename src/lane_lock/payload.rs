//! The lock object's message, byte-compatible with what gstack writes and reads.
//!
//! gstack writes the lock with `git commit-tree <empty tree> -m "gstack release lock" -m
//! "<pretty JSON>"`, which stores `gstack release lock\n\n<json>\n`. It reads it back with
//! `git log -1 --format=%B`, takes the text from the first `{` to the last `}`, and
//! `JSON.parse`s it: the payload is valid when `ownerId`, `repoPath`, `baseBranch` and
//! `expiresAt` are strings and `repoIdentity` is a string or absent; `createdAt` is not
//! checked at all (gstack's own tests write payloads without it). berth writes exactly
//! those bytes and reads with exactly that rule, so a lock gstack can read and take over
//! when it expires, berth can too; only then does it look at `expiresAt` (RFC 3339, as
//! both write it).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock;
use crate::gstack_text;

/// First line of every lock commit message.
pub const LOCK_SUBJECT: &str = "gstack release lock";

/// Who holds a lane and until when: the JSON body of the lock commit.
///
/// Timestamps stay the strings found on the wire (ISO-8601 with milliseconds and `Z` when
/// written by berth or gstack), so an operator sees exactly what the remote holds. berth
/// always writes every field; a lock written by another tool may lack `repoIdentity` or
/// `createdAt` (a `createdAt` that is not a string reads as absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockPayload {
    pub owner_id: String,
    pub repo_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_identity: Option<String>,
    pub base_branch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    pub expires_at: String,
}

/// A payload whose `expiresAt` parsed: the only kind a lock decision may be based on.
#[derive(Debug, Clone)]
pub(crate) struct ReadLock {
    pub payload: LockPayload,
    pub expires_at: DateTime<Utc>,
}

impl ReadLock {
    /// Live means `expiresAt` is strictly in the future.
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }
}

/// The full commit message for `payload`: subject, blank line, pretty JSON (2 spaces),
/// newline — the bytes `git commit-tree -m <subject> -m <json>` produces.
pub(crate) fn lock_message(payload: &LockPayload) -> Result<String, serde_json::Error> {
    Ok(format!(
        "{LOCK_SUBJECT}\n\n{}\n",
        serde_json::to_string_pretty(payload)?
    ))
}

/// Why a lock commit cannot be read as a lock: the operator's one-line reason, beginning
/// with gstack's text (`release lock payload unreadable at <sha>` or `release lock expiry
/// unreadable for <ownerId>`). The lane is refused; an unreadable lock is never taken over.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("{}: {problem}", gstack_text::lock_payload_unreadable(.sha))]
    Payload {
        sha: String,
        problem: PayloadProblem,
    },
    #[error(
        "{}: expiresAt {expires_at:?} is not an ISO-8601 timestamp",
        gstack_text::lock_expiry_unreadable(.owner_id)
    )]
    Expiry {
        owner_id: String,
        expires_at: String,
    },
}

/// What is wrong with a lock commit or its message.
#[derive(Debug, thiserror::Error)]
pub enum PayloadProblem {
    #[error("the lock object is not a readable commit: {}", .0.message())]
    NotACommit(git2::Error),
    #[error("the commit message is not UTF-8")]
    NotUtf8,
    #[error("the commit message holds no JSON object")]
    NoObject,
    #[error("the JSON body is invalid: {0}")]
    InvalidJson(serde_json::Error),
    #[error("the JSON body is not an object")]
    NotAnObject,
    #[error("{name} is {found}, not a string")]
    NotText {
        name: &'static str,
        found: &'static str,
    },
    #[error("missing field {0}")]
    Missing(&'static str),
}

/// Reads the lock commit `sha` (its message, or why it could not be had) the way gstack
/// does.
pub(crate) fn read_lock(
    sha: &str,
    message: Result<String, PayloadProblem>,
) -> Result<ReadLock, PayloadError> {
    let unreadable = |problem| PayloadError::Payload {
        sha: sha.to_owned(),
        problem,
    };
    let payload = parse_payload(&message.map_err(unreadable)?).map_err(unreadable)?;
    let Some(expires_at) = clock::parse_iso(&payload.expires_at) else {
        return Err(PayloadError::Expiry {
            owner_id: payload.owner_id,
            expires_at: payload.expires_at,
        });
    };
    Ok(ReadLock {
        payload,
        expires_at,
    })
}

/// gstack's payload rule over a whole commit message.
fn parse_payload(message: &str) -> Result<LockPayload, PayloadProblem> {
    let (Some(open), Some(close)) = (message.find('{'), message.rfind('}')) else {
        return Err(PayloadProblem::NoObject);
    };
    if close < open {
        return Err(PayloadProblem::NoObject);
    }
    // Parsed as a plain value first: like `JSON.parse`, a repeated key keeps its last value.
    let value: Value =
        serde_json::from_str(&message[open..=close]).map_err(PayloadProblem::InvalidJson)?;
    let Value::Object(fields) = value else {
        return Err(PayloadProblem::NotAnObject);
    };
    let required = |name: &'static str| match fields.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(PayloadProblem::NotText {
            name,
            found: crate::record::type_name(other),
        }),
        None => Err(PayloadProblem::Missing(name)),
    };
    Ok(LockPayload {
        owner_id: required("ownerId")?,
        repo_path: required("repoPath")?,
        repo_identity: optional_string(&fields, "repoIdentity")?,
        base_branch: required("baseBranch")?,
        created_at: fields
            .get("createdAt")
            .and_then(Value::as_str)
            .map(str::to_owned),
        expires_at: required("expiresAt")?,
    })
}

/// A field gstack accepts as a string or absent (`null` is neither).
fn optional_string(
    fields: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, PayloadProblem> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(PayloadProblem::NotText {
            name,
            found: crate::record::type_name(other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> LockPayload {
        LockPayload {
            owner_id: "host-a:1234".into(),
            repo_path: "/home/u/code/widget".into(),
            repo_identity: Some("github.com/acme/widget".into()),
            base_branch: "main".into(),
            created_at: Some("2026-05-17T08:00:00.000Z".into()),
            expires_at: "2026-05-17T10:00:00.000Z".into(),
        }
    }

    fn parse(message: &str) -> Result<ReadLock, String> {
        read_lock("0123abcd", Ok(message.to_owned())).map_err(|e| e.to_string())
    }

    #[test]
    fn message_is_subject_blank_line_pretty_json_newline() {
        let text = lock_message(&payload()).unwrap();
        assert_eq!(
            text,
            "gstack release lock\n\n{\n  \"ownerId\": \"host-a:1234\",\n  \"repoPath\": \"/home/u/code/widget\",\n  \"repoIdentity\": \"github.com/acme/widget\",\n  \"baseBranch\": \"main\",\n  \"createdAt\": \"2026-05-17T08:00:00.000Z\",\n  \"expiresAt\": \"2026-05-17T10:00:00.000Z\"\n}\n"
        );
    }

    #[test]
    fn round_trips_and_tolerates_whitespace_crlf_and_unknown_fields() {
        let text = lock_message(&payload()).unwrap();
        assert_eq!(parse(&text).unwrap().payload, payload());
        // `git log --format=%B` adds a newline; another writer may add spaces or CRLF.
        let noisy = format!("{text}\n\n  \n");
        assert_eq!(parse(&noisy).unwrap().payload, payload());
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(parse(&crlf).unwrap().payload, payload());
        let extra = text.replacen("{\n", "{\n  \"pid\": 42,\n", 1);
        assert_eq!(parse(&extra).unwrap().payload, payload());
        // gstack reads from the first `{` to the last `}`: no blank line is needed.
        let one_line = format!(
            "{LOCK_SUBJECT} {}",
            serde_json::to_string(&payload()).unwrap()
        );
        assert_eq!(parse(&one_line).unwrap().payload, payload());
        // A repeated key keeps its last value, as `JSON.parse` does.
        let repeated = text.replacen("{\n", "{\n  \"ownerId\": \"first\",\n", 1);
        assert_eq!(parse(&repeated).unwrap().payload, payload());
    }

    /// gstack's own tests write payloads without `repoIdentity` or `createdAt`, and gstack
    /// takes such locks over when they expire: berth reads them too.
    #[test]
    fn repo_identity_and_created_at_are_optional_as_in_gstack() {
        let minimal = "gstack release lock\n\n{\"ownerId\": \"gstack-host-1-pr-3\", \"repoPath\": \"/repo\", \"baseBranch\": \"main\", \"expiresAt\": \"2026-05-17T10:00:00.000Z\"}\n";
        let read = parse(minimal).unwrap();
        assert_eq!(read.payload.repo_identity, None);
        assert_eq!(read.payload.created_at, None);
        assert_eq!(read.payload.owner_id, "gstack-host-1-pr-3");
        // createdAt is not checked: a number reads as absent.
        let numeric = minimal.replace("\"expiresAt\"", "\"createdAt\": 17, \"expiresAt\"");
        assert_eq!(parse(&numeric).unwrap().payload.created_at, None);
        // What berth writes for such a payload (it never does) leaves the fields out.
        let written = lock_message(&read.payload).unwrap();
        assert!(!written.contains("repoIdentity") && !written.contains("createdAt"));
    }

    #[test]
    fn liveness_is_strictly_before_expiry() {
        let read = parse(&lock_message(&payload()).unwrap()).unwrap();
        let expiry = clock::parse_iso("2026-05-17T10:00:00.000Z").unwrap();
        assert!(read.is_live_at(expiry - chrono::Duration::milliseconds(1)));
        assert!(!read.is_live_at(expiry));
    }

    #[test]
    fn unreadable_messages_say_why_in_gstacks_words() {
        let unreadable = "release lock payload unreadable at 0123abcd: ";
        let cases = [
            ("gstack release lock", "holds no JSON object"),
            ("gstack release lock\n\n", "holds no JSON object"),
            (
                "gstack release lock\n\n} not json {\n",
                "holds no JSON object",
            ),
            ("gstack release lock\n\n{not json}\n", "invalid"),
            (
                "gstack release lock\n\n{\"ownerId\": \"x\"}\n",
                "missing field repoPath",
            ),
            (
                "gstack release lock\n\n{\"ownerId\": \"x\", \"repoPath\": \"/r\", \"repoIdentity\": null, \"baseBranch\": \"main\", \"expiresAt\": \"2026-05-17T10:00:00.000Z\"}",
                "repoIdentity is null, not a string",
            ),
        ];
        for (message, why) in cases {
            let err = parse(message).unwrap_err();
            assert!(err.starts_with(unreadable), "{message:?}: {err}");
            assert!(err.contains(why), "{message:?}: {err}");
        }
        let err = read_lock("0123abcd", Err(PayloadProblem::NotUtf8))
            .unwrap_err()
            .to_string();
        assert_eq!(err, format!("{unreadable}the commit message is not UTF-8"));
        let mut bad_time = payload();
        bad_time.expires_at = "tomorrow".into();
        let err = parse(&lock_message(&bad_time).unwrap()).unwrap_err();
        assert!(
            err.starts_with("release lock expiry unreadable for host-a:1234: "),
            "{err}"
        );
        assert!(err.contains("\"tomorrow\""), "{err}");
        let mut numeric = serde_json::to_value(payload()).unwrap();
        numeric["expiresAt"] = serde_json::json!(1_790_000_000_000_u64);
        let err = parse(&format!("{LOCK_SUBJECT}\n\n{numeric}\n")).unwrap_err();
        assert!(err.contains("expiresAt is a number"), "{err}");
    }
}
