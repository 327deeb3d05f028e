//! What a halt listing takes from one event file: the few fields it shows, each cut, and
//! nothing else; and what filing an event takes from the one it replaces ([`Prior`]). Whoever writes the halt dir can fill an event with 8 MiB of `[0],[0],…`
//! in a field no listing shows; parsed into a `serde_json::Value` that is ~760 MiB. Here
//! every other field is skipped by the parser without being built, a text field is cut
//! before it is copied, and a field of the wrong type reads as absent (as `Value::as_str`
//! would have it), so one event costs its file's bytes and a few KiB.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use sha2::{Digest, Sha256};

use super::RESOLVED_EVENT;

/// A listed field (a message, an id) is cut past this many bytes, ending in `…`.
pub const MAX_FIELD_BYTES: usize = 4096;

/// Which (run, fault) an event or resolved marker is of: the SHA-256 of its whole run id and
/// of its whole fault id. Shown ids are cut, and two runs may share their first 4 KiB.
pub type EventKey = ([u8; 32], [u8; 32]);

/// The fields of one event file a listing shows; absent ones are `None`.
#[derive(Clone, Debug, Default)]
pub struct Shown {
    pub event: Option<String>,
    pub run_id: Option<String>,
    pub fault_id: Option<String>,
    /// The SHA-256 of the whole `runId` and `faultId`, when each is a string.
    run_hash: Option<[u8; 32]>,
    fault_hash: Option<[u8; 32]>,
    pub kind: Option<String>,
    pub severity: Option<String>,
    pub message: Option<String>,
    pub timestamp: Option<String>,
    /// `snapshot.occurrences`.
    pub occurrences: Option<u64>,
}

impl Shown {
    /// The shown fields of `text`; an error only for text that is not JSON. A resolved
    /// marker shows nothing: of it only `event` and its key are kept.
    pub fn parse(text: &str) -> Result<Shown, serde_json::Error> {
        let shown: Shown = loose_whole(text)?;
        if shown.event.as_deref() != Some(RESOLVED_EVENT) {
            return Ok(shown);
        }
        Ok(Shown {
            event: shown.event,
            run_hash: shown.run_hash,
            fault_hash: shown.fault_hash,
            ..Shown::default()
        })
    }

    /// Its (run, fault) key, when both ids are strings.
    pub fn key(&self) -> Option<EventKey> {
        Some((self.run_hash?, self.fault_hash?))
    }
}

/// Text cut to [`MAX_FIELD_BYTES`] (ending in `…`), without copying the rest.
fn cut(text: &str) -> String {
    if text.len() <= MAX_FIELD_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_FIELD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // Built at its exact size: `format!` may reserve twice what it writes, which every
    // field of every listed event would keep.
    let mut shown = String::with_capacity(end + '…'.len_utf8());
    shown.push_str(&text[..end]);
    shown.push('…');
    shown
}

/// Answers `on_map` for an object and `T::default()` for any other JSON value, which it
/// skips unbuilt.
trait Loose: Sized + Default {
    fn on_str(_text: &str) -> Self {
        Self::default()
    }
    fn on_u64(_n: u64) -> Self {
        Self::default()
    }
    fn on_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }
}

struct LooseVisitor<T>(std::marker::PhantomData<T>);

macro_rules! skip_to_default {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $ty) -> Result<T, E> {
            Ok(T::default())
        })*
    };
}

impl<'de, T: Loose> Visitor<'de> for LooseVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        Ok(T::on_str(text))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        Ok(T::on_u64(n))
    }
    skip_to_default!(visit_bool: bool, visit_i64: i64, visit_f64: f64);
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(T::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::on_map(map)
    }
}

fn loose<'de, T: Loose, D: Deserializer<'de>>(de: D) -> Result<T, D::Error> {
    de.deserialize_any(LooseVisitor(std::marker::PhantomData))
}

/// [`loose`] over the whole of `text`: an error only for text that is not JSON (or has
/// more after it).
fn loose_whole<T: Loose>(text: &str) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let read = loose(&mut de)?;
    de.end()?;
    Ok(read)
}

/// [`loose`] for a `T` named only by a type parameter.
struct LooseSeed<T>(std::marker::PhantomData<T>);

impl<T> Default for LooseSeed<T> {
    fn default() -> Self {
        LooseSeed(std::marker::PhantomData)
    }
}

impl<'de, T: Loose> de::DeserializeSeed<'de> for LooseSeed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T, D::Error> {
        loose(de)
    }
}

/// A text field: a string, cut; anything else is absent.
#[derive(Default)]
struct Text(Option<String>);

impl Loose for Text {
    fn on_str(text: &str) -> Text {
        Text(Some(cut(text)))
    }
}

impl<'de> de::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Text, D::Error> {
        loose(de)
    }
}

/// An id: a string, cut, with the SHA-256 of the whole; anything else is absent.
#[derive(Default)]
struct Id(Option<(String, [u8; 32])>);

impl Loose for Id {
    fn on_str(text: &str) -> Id {
        Id(Some((cut(text), Sha256::digest(text).into())))
    }
}

impl Id {
    /// The cut id and the whole one's SHA-256.
    fn split(self) -> (Option<String>, Option<[u8; 32]>) {
        self.0
            .map_or((None, None), |(text, whole)| (Some(text), Some(whole)))
    }
}

impl<'de> de::Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Id, D::Error> {
        loose(de)
    }
}

/// A count: an unsigned integer; anything else is absent.
#[derive(Default)]
struct Count(Option<u64>);

impl Loose for Count {
    fn on_u64(n: u64) -> Count {
        Count(Some(n))
    }
}

impl<'de> de::Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Count, D::Error> {
        loose(de)
    }
}

/// `snapshot`: its `occurrences`, and its `stdoutTail` as `Tail` reads it.
#[derive(Default)]
struct Snapshot<Tail> {
    occurrences: Option<u64>,
    stdout_tail: Tail,
}

impl<Tail: Loose> Loose for Snapshot<Tail> {
    fn on_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Snapshot<Tail>, A::Error> {
        let mut snapshot = Snapshot::<Tail>::default();
        while let Some(key) = map.next_key::<Text>()? {
            match key.0.as_deref() {
                // A repeated key counts as its last value, as a parsed object keeps it.
                Some("occurrences") => snapshot.occurrences = map.next_value::<Count>()?.0,
                Some("stdoutTail") => {
                    snapshot.stdout_tail = map.next_value_seed(LooseSeed::<Tail>::default())?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(snapshot)
    }
}

impl<'de, Tail: Loose> de::Deserialize<'de> for Snapshot<Tail> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Snapshot<Tail>, D::Error> {
        loose(de)
    }
}

/// A field skipped unbuilt, whatever it holds.
#[derive(Default)]
struct Skipped;

impl Loose for Skipped {}

/// A text field kept whole (emit compares it); anything else is absent.
#[derive(Default)]
struct Whole(Option<String>);

impl Loose for Whole {
    fn on_str(text: &str) -> Whole {
        Whole(Some(text.to_owned()))
    }
}

/// What [`super::HaltStore::emit`] takes from the pending file it replaces: whose it is,
/// whether it holds the same capture, and its capture number. Read as [`Shown`] is, so a
/// planted event costs its bytes, not its parse.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prior {
    /// `runId`, whole: another run of the same safe run id may have filed it
    /// ([`super::shared_names`]); `None` if absent or not a string.
    pub run_id: Option<String>,
    /// `snapshot.stdoutTail`, whole; `None` if absent or not a string.
    pub stdout_tail: Option<String>,
    /// `snapshot.occurrences`.
    pub occurrences: Option<u64>,
}

impl Prior {
    /// The fields of `text` emit reads; an error only for text that is not JSON.
    pub fn parse(text: &str) -> Result<Prior, serde_json::Error> {
        loose_whole(text)
    }
}

impl Loose for Prior {
    fn on_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Prior, A::Error> {
        let mut prior = Prior::default();
        while let Some(key) = map.next_key::<Text>()? {
            match key.0.as_deref() {
                Some("snapshot") => {
                    let snapshot = map.next_value::<Snapshot<Whole>>()?;
                    prior.stdout_tail = snapshot.stdout_tail.0;
                    prior.occurrences = snapshot.occurrences;
                }
                Some("runId") => {
                    prior.run_id = map.next_value_seed(LooseSeed::<Whole>::default())?.0
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(prior)
    }
}

/// An event's whole `runId`, which a listing shows cut: what `faults ack` moves the one
/// pending event of a fault by. Read as [`Shown`] is.
#[derive(Default)]
pub struct WholeRunId(pub Option<String>);

impl WholeRunId {
    /// The whole run id of `text`; an error only for text that is not JSON.
    pub fn parse(text: &str) -> Result<WholeRunId, serde_json::Error> {
        loose_whole(text)
    }
}

impl Loose for WholeRunId {
    fn on_map<'de, A: MapAccess<'de>>(map: A) -> Result<WholeRunId, A::Error> {
        Ok(WholeRunId(
            last_of::<Whole, A>(map, "runId")?.and_then(|run| run.0),
        ))
    }
}

/// The last value of `field` in an object (a repeated key counts as its last value, as a
/// parsed object keeps it), read as `T` reads it; every other field skipped unbuilt.
fn last_of<'de, T: Loose, A: MapAccess<'de>>(
    mut map: A,
    field: &str,
) -> Result<Option<T>, A::Error> {
    let mut last = None;
    while let Some(key) = map.next_key::<Text>()? {
        if key.0.as_deref() == Some(field) {
            last = Some(map.next_value_seed(LooseSeed::<T>::default())?);
        } else {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(last)
}

impl Loose for Shown {
    fn on_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Shown, A::Error> {
        let mut shown = Shown::default();
        while let Some(key) = map.next_key::<Text>()? {
            let slot = match key.0.as_deref() {
                Some("event") => &mut shown.event,
                Some("kind") => &mut shown.kind,
                Some("severity") => &mut shown.severity,
                Some("message") => &mut shown.message,
                Some("timestamp") => &mut shown.timestamp,
                Some("runId") => {
                    (shown.run_id, shown.run_hash) = map.next_value::<Id>()?.split();
                    continue;
                }
                Some("faultId") => {
                    (shown.fault_id, shown.fault_hash) = map.next_value::<Id>()?.split();
                    continue;
                }
                Some("snapshot") => {
                    shown.occurrences = map.next_value::<Snapshot<Skipped>>()?.occurrences;
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Text>()?.0;
        }
        Ok(shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shown_fields_are_kept_and_the_wrong_types_read_as_absent() {
        let long = "é".repeat(MAX_FIELD_BYTES);
        let text = serde_json::json!({
            "runId": "r", "faultId": 7, "kind": ["K"], "message": long,
            "snapshot": {"occurrences": 3, "phase": {"x": [[0], [0]]}},
            "x": [[0], [0]], "severity": null,
        })
        .to_string();
        let shown = Shown::parse(&text).unwrap();
        assert_eq!(shown.run_id.as_deref(), Some("r"));
        assert_eq!(
            (shown.fault_id, shown.kind, shown.severity),
            (None, None, None)
        );
        assert_eq!(shown.occurrences, Some(3));
        let message = shown.message.unwrap();
        assert!(message.ends_with('…') && message.len() <= MAX_FIELD_BYTES + 3);
        assert!(
            Shown::parse("{\"snapshot\": 1}")
                .unwrap()
                .occurrences
                .is_none()
        );
        assert!(Shown::parse("{ torn").is_err());
    }

    #[test]
    fn the_prior_keeps_its_whole_run_id_tail_and_count_and_skips_the_rest() {
        let tail = "t".repeat(MAX_FIELD_BYTES * 2);
        let text = serde_json::json!({
            "x": [[0], [0]], "runId": tail,
            "snapshot": {"stdoutTail": tail, "occurrences": 4, "y": [[0]]},
        })
        .to_string();
        let prior = Prior::parse(&text).unwrap();
        assert_eq!(prior.run_id.as_deref(), Some(tail.as_str()));
        assert_eq!(prior.stdout_tail.as_deref(), Some(tail.as_str()));
        assert_eq!(prior.occurrences, Some(4));
        let odd = Prior::parse("{\"snapshot\": {\"stdoutTail\": 1, \"occurrences\": -1}}");
        assert_eq!(odd.unwrap(), Prior::default());
        assert_eq!(Prior::parse("[1]").unwrap(), Prior::default());
        assert!(Prior::parse("{ torn").is_err());
    }
}
