//! Fitting a record write under the cap. A claim leaves room under [`MAX_RECORD_BYTES`]
//! ([`CLAIM_ROOM`]) for what the writes after it add (a verdict's or reclaim's `lastError`,
//! `berthNotBefore`, the merge's GitHub state). `lastError` is berth's own text, never the
//! record writer's, so every write (a claim included) cuts it until the record fits: a
//! record berth claimed is always settled or freed, one it requeued can be claimed again,
//! a blocked one still takes its GitHub checks, and no field the record came with is ever
//! cut.

use std::path::Path;

use super::{MAX_RECORD_BYTES, StoreError};
use crate::record::Record;

/// Bytes a claim leaves free under the record cap: a record that would not leave them once
/// claimed is refused the claim ([`StoreError::TooLarge`]), as one over the cap is.
pub const CLAIM_ROOM: u64 = 4096;

/// What ends a `lastError` berth cut to fit the record under the cap.
pub(super) const CUT_MARK: &str = " [cut to fit the record limit]";

/// The text `record` is written as, at most `MAX_RECORD_BYTES - room` bytes: pretty, as
/// gstack writes records, or compact when pretty would not fit (gstack reads either). A
/// record that fits neither way is refused, since no reader, berth included, would read it
/// back.
pub(super) fn encode(record: &Record, path: &Path, room: u64) -> Result<String, StoreError> {
    let cap = MAX_RECORD_BYTES.saturating_sub(room);
    let fits = |text: &String| text.len() as u64 <= cap;
    let pretty = record.to_pretty_json();
    if fits(&pretty) {
        return Ok(pretty);
    }
    let compact = record.to_compact_json();
    if fits(&compact) {
        return Ok(compact);
    }
    Err(StoreError::TooLarge {
        file: path.to_owned(),
        size: compact.len(),
        cap: MAX_RECORD_BYTES,
        room,
        read: None,
    })
}

/// [`encode`] with the record's `lastError` cut until the record fits (at most the whole
/// of it): a record that does not fit even without it is refused.
pub(super) fn encode_cutting_last_error(
    record: &mut Record,
    path: &Path,
    room: u64,
) -> Result<String, StoreError> {
    let cap = MAX_RECORD_BYTES.saturating_sub(room);
    // One cut fits; the second pass only guards against a miscount of the escapes.
    for _ in 0..2 {
        match encode(record, path, room) {
            Err(StoreError::TooLarge { size, .. }) if record.last_error.is_some() => {
                cut(record, (size as u64).saturating_sub(cap));
            }
            encoded => return encoded,
        }
    }
    record.last_error = None;
    encode(record, path, room)
}

/// Cuts the end of the record's `lastError` so that its JSON, with the mark, is `excess`
/// bytes shorter; one too short for that is dropped.
fn cut(record: &mut Record, excess: u64) {
    let Some(error) = record.last_error.take() else {
        return;
    };
    let written: usize = error.chars().map(json_len).sum();
    let target = usize::try_from(excess)
        .ok()
        .and_then(|excess| written.checked_sub(excess.checked_add(CUT_MARK.len())?));
    let Some(target) = target else {
        return;
    };
    let mut kept = 0;
    let end = error
        .char_indices()
        .find(|&(_, c)| {
            kept += json_len(c);
            kept > target
        })
        .map_or(error.len(), |(at, _)| at);
    if end > 0 && end < error.len() {
        record.last_error = Some(format!("{}{CUT_MARK}", &error[..end]));
    }
}

/// The bytes `c` takes in a JSON string as serde_json writes it.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if c < ' ' => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::forge_state::{GithubState, PrState};
    use crate::record::{Status, sample};
    use crate::store::{Expect, Move, QueueStore};

    const OWNER: &str = "berth:host-a:4242:1733390000";
    const OTHER: &str = "berth:host-b:5151:1733390000";

    /// A record berth claimed, then requeued as the daemon does when the lane is busy
    /// (`End::LaneBusy`: `claimedBy` dropped, `lastError` "release lock unavailable for
    /// main: release lock held by … until …"), can be claimed again: berth's own requeue
    /// does not make a record it could claim one it passes over for good.
    #[test]
    fn a_record_berth_requeued_can_be_claimed_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueStore::new(dir.path());
        let mut value = sample::json(9, "queued");
        let base = serde_json::to_string_pretty(&value).unwrap().len();
        let notes = MAX_RECORD_BYTES as usize - CLAIM_ROOM as usize - base + 64;
        value["notes"] = json!("n".repeat(notes));
        let id = store
            .insert(&Record::from_json(value.clone()).unwrap())
            .unwrap();
        let claim = || {
            store.transition(
                Move::new(&id, Expect::OneOf(&[Status::Queued]), Status::Claiming)
                    .leaving(CLAIM_ROOM),
                |r| r.claimed_by = Some(OWNER.into()),
            )
        };
        let write_with_notes = |notes: usize| {
            let mut value = value.clone();
            value["notes"] = json!("n".repeat(notes));
            std::fs::remove_file(store.path_of(&id)).unwrap();
            store.insert(&Record::from_json(value).unwrap()).unwrap();
        };
        assert!(
            matches!(claim(), Err(StoreError::TooLarge { .. })),
            "64 bytes past the claim's room are refused"
        );
        // The largest record this claim takes (a byte more and it is refused), bisected:
        // each try writes a 1 MiB record.
        let (mut fits, mut refused) = (notes - usize::try_from(CLAIM_ROOM).unwrap(), notes);
        while refused - fits > 1 {
            let mid = fits + (refused - fits) / 2;
            write_with_notes(mid);
            match claim() {
                Ok(_) => fits = mid,
                Err(StoreError::TooLarge { .. }) => refused = mid,
                Err(e) => panic!("a claim failed for another reason: {e}"),
            }
        }
        write_with_notes(fits);
        claim().expect("the largest record the claim takes");
        let reason = crate::gstack_text::lock_unavailable(
            "main",
            crate::gstack_text::lock_held_by(OTHER, "2026-12-05T12:00:00.000Z"),
        );
        store
            .transition(
                Move::new(&id, Expect::Mine(&Status::IN_FLIGHT, OWNER), Status::Queued),
                |r| {
                    r.claimed_by = None;
                    r.last_error = Some(reason.clone());
                },
            )
            .unwrap();
        let again = claim();
        assert!(
            again.is_ok(),
            "a record berth claimed and requeued (lane busy) is refused its next claim for good: {}",
            again.unwrap_err()
        );
    }

    /// A blocked verdict whose `lastError` was cut to fill the cap still takes the GitHub
    /// check written after it: `lastError` is cut further, so the record is not refused (and
    /// due again) on every round.
    #[test]
    fn a_record_filled_to_the_cap_by_its_verdict_still_takes_its_github_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = QueueStore::new(dir.path());
        let mut value = sample::json(9, "queued");
        let base = serde_json::to_string(&value).unwrap().len();
        let notes = MAX_RECORD_BYTES as usize - base - CLAIM_ROOM as usize - 200;
        value["notes"] = json!("n".repeat(notes));
        let id = store.insert(&Record::from_json(value).unwrap()).unwrap();
        let claim =
            Move::new(&id, Expect::OneOf(&[Status::Queued]), Status::Claiming).leaving(CLAIM_ROOM);
        store
            .transition(claim, |r| r.claimed_by = Some(OWNER.into()))
            .unwrap();
        store
            .transition(Move::new(&id, Expect::Any, Status::Blocked), |r| {
                r.claimed_by = None;
                r.last_error = Some("e".repeat(2 * CLAIM_ROOM as usize));
            })
            .unwrap();
        let checked = store.transition(
            Move::new(&id, Expect::OneOf(&[Status::Blocked]), Status::Blocked),
            |r| {
                r.last_github_checked_at = Some(crate::clock::now_iso());
                r.last_github_state = Some(GithubState::Pr(PrState::Open));
            },
        );
        let checked = checked.unwrap_or_else(|e| panic!("the GitHub check is refused: {e}"));
        assert!(checked.last_error.is_some_and(|e| e.ends_with(CUT_MARK)));
        let read = store.load(&id).unwrap().record;
        assert!(read.last_github_checked_at.is_some());
        assert_eq!(
            read.extra.get("notes").map(|n| n.get().len()),
            Some(notes + 2),
            "the record's own field was cut"
        );
    }
}
