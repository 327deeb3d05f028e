//! What a halt listing takes from one event file: the few fields it shows, each cut, and
//! nothing else. Whoever writes the halt dir can fill an event with 8 MiB of `[0],[0],…`
//! in a field no listing shows; parsed into a `serde_json::Value` that is ~760 MiB. Here
//! every other field is skipped by the parser without being built, a text field is cut
//! before it is copied, and a field of the wrong type reads as absent (as `Value::as_str`
//! would have it), so one event costs its file's bytes and a few KiB.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A listed field (a message, an id) is cut past this many bytes, ending in `…`.
pub const MAX_FIELD_BYTES: usize = 4096;

/// The fields of one event file a listing shows; absent ones are `None`.
#[derive(Debug, Default)]
pub struct Shown {
    pub event: Option<String>,
    pub run_id: Option<String>,
    pub fault_id: Option<String>,
    pub kind: Option<String>,
    pub severity: Option<String>,
    pub message: Option<String>,
    pub timestamp: Option<String>,
    /// `snapshot.occurrences`.
    pub occurrences: Option<u64>,
}

impl Shown {
    /// The shown fields of `text`; an error only for text that is not JSON.
    pub fn parse(text: &str) -> Result<Shown, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let shown: Shown = loose(&mut de)?;
        de.end()?;
        Ok(shown)
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
    format!("{}…", &text[..end])
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

/// `snapshot`: only its `occurrences`.
#[derive(Default)]
struct Snapshot(Option<u64>);

impl Loose for Snapshot {
    fn on_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Snapshot, A::Error> {
        let mut occurrences = None;
        while let Some(key) = map.next_key::<Text>()? {
            match key.0.as_deref() {
                // A repeated key counts as its last value, as a parsed object keeps it.
                Some("occurrences") => occurrences = map.next_value::<Count>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Snapshot(occurrences))
    }
}

impl<'de> de::Deserialize<'de> for Snapshot {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Snapshot, D::Error> {
        loose(de)
    }
}

impl Loose for Shown {
    fn on_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Shown, A::Error> {
        let mut shown = Shown::default();
        while let Some(key) = map.next_key::<Text>()? {
            let slot = match key.0.as_deref() {
                Some("event") => &mut shown.event,
                Some("runId") => &mut shown.run_id,
                Some("faultId") => &mut shown.fault_id,
                Some("kind") => &mut shown.kind,
                Some("severity") => &mut shown.severity,
                Some("message") => &mut shown.message,
                Some("timestamp") => &mut shown.timestamp,
                Some("snapshot") => {
                    shown.occurrences = map.next_value::<Snapshot>()?.0;
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
}
