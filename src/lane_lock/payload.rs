//! The lock object's message, byte-compatible with what gstack writes and reads.
//!
//! gstack writes the lock with `git commit-tree <empty tree> -m "gstack release lock" -m
//! "<pretty JSON>"`, which stores `gstack release lock\n\n<json>\n`, and reads it back with
//! `git log -1 --format=%B` + `JSON.parse` of the text after the first blank line. berth
//! writes exactly those bytes and reads with the same rule, tolerating the whitespace a
//! different writer (or `%B`'s extra newline, or CRLF) may add.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock;

/// First line of every lock commit message.
pub const LOCK_SUBJECT: &str = "gstack release lock";

/// Who holds a lane and until when: the JSON body of the lock commit.
///
/// Timestamps stay the strings found on the wire (ISO-8601 with milliseconds and `Z` when
/// written by berth or gstack), so an operator sees exactly what the remote holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockPayload {
    pub owner_id: String,
    pub repo_path: String,
    pub repo_identity: String,
    pub base_branch: String,
    pub created_at: String,
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

/// Reads a lock commit message the way gstack does; `Err` carries a one-line reason for
/// the operator (the caller refuses the lane: an unreadable lock is never taken over).
pub(crate) fn parse_lock_message(message: &str) -> Result<ReadLock, String> {
    let body = body_after_first_blank_line(message)
        .ok_or_else(|| "the commit message has no blank line before a JSON body".to_owned())?;
    if body.trim().is_empty() {
        return Err("the JSON body after the blank line is empty".to_owned());
    }
    let payload: LockPayload =
        serde_json::from_str(body.trim()).map_err(|e| format!("the JSON body is invalid: {e}"))?;
    let expires_at = clock::parse_iso(&payload.expires_at).ok_or_else(|| {
        format!(
            "expiresAt {:?} is not an ISO-8601 timestamp",
            payload.expires_at
        )
    })?;
    Ok(ReadLock {
        payload,
        expires_at,
    })
}

/// Text after the first line that is empty or whitespace-only (so `\r\n\r\n` and a
/// stray space on the separator line count as the blank line too).
fn body_after_first_blank_line(message: &str) -> Option<&str> {
    let mut offset = 0;
    for line in message.split_inclusive('\n') {
        offset += line.len();
        if line.trim().is_empty() {
            return Some(&message[offset..]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> LockPayload {
        LockPayload {
            owner_id: "host-a:1234".into(),
            repo_path: "/home/u/code/widget".into(),
            repo_identity: "github.com/acme/widget".into(),
            base_branch: "main".into(),
            created_at: "2026-05-17T08:00:00.000Z".into(),
            expires_at: "2026-05-17T10:00:00.000Z".into(),
        }
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
        assert_eq!(parse_lock_message(&text).unwrap().payload, payload());
        // `git log --format=%B` adds a newline; another writer may add spaces or CRLF.
        let noisy = format!("{text}\n\n  \n");
        assert_eq!(parse_lock_message(&noisy).unwrap().payload, payload());
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(parse_lock_message(&crlf).unwrap().payload, payload());
        let spaced_separator = text.replacen("\n\n", "\n  \n", 1);
        assert_eq!(
            parse_lock_message(&spaced_separator).unwrap().payload,
            payload()
        );
        let extra = text.replacen("{\n", "{\n  \"pid\": 42,\n", 1);
        assert_eq!(parse_lock_message(&extra).unwrap().payload, payload());
    }

    #[test]
    fn liveness_is_strictly_before_expiry() {
        let read = parse_lock_message(&lock_message(&payload()).unwrap()).unwrap();
        let expiry = clock::parse_iso("2026-05-17T10:00:00.000Z").unwrap();
        assert!(read.is_live_at(expiry - chrono::Duration::milliseconds(1)));
        assert!(!read.is_live_at(expiry));
    }

    #[test]
    fn unreadable_messages_say_why() {
        let cases = [
            ("gstack release lock", "no blank line"),
            ("gstack release lock\n\n", "empty"),
            ("gstack release lock\n\nnot json\n", "invalid"),
            (
                "gstack release lock\n\n{\"ownerId\": \"x\"}\n",
                "missing field",
            ),
        ];
        for (message, why) in cases {
            let err = parse_lock_message(message).unwrap_err();
            assert!(err.contains(why), "{message:?}: {err}");
        }
        let mut bad_time = payload();
        bad_time.expires_at = "tomorrow".into();
        let err = parse_lock_message(&lock_message(&bad_time).unwrap()).unwrap_err();
        assert!(err.contains("\"tomorrow\""), "{err}");
        let mut numeric = serde_json::to_value(payload()).unwrap();
        numeric["expiresAt"] = serde_json::json!(1_790_000_000_000_u64);
        let err = parse_lock_message(&format!("{LOCK_SUBJECT}\n\n{numeric}\n")).unwrap_err();
        assert!(err.contains("invalid"), "{err}");
    }
}
