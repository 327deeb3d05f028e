//! JSON parsed into serde_json's `Value` with a bound on the heap the parse holds: whoever
//! writes the build-state or faults dir chooses the shape, and a few MiB of `[0],[0],…`
//! cost ~100× their size parsed. The parse counts every block it allocates as it goes
//! (with [`footprint`](super::state_jsonpath::footprint)'s sizes, an upper bound of what
//! glibc hands out) and stops past its limit, so a hostile file is refused having held at
//! most the limit, never parsed whole first and judged after.

use std::cell::Cell;
use std::fmt;
use std::mem::size_of;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::state_jsonpath::footprint::{array_bytes, block, exact_map_bytes};

/// Why text was not parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("parsed, it would hold more than {} MiB; refused (a bound of the fault watch's memory)", .limit >> 20)]
    TooCostly { limit: usize },
    #[error("not valid JSON: {0}")]
    NotJson(serde_json::Error),
}

/// `bytes` parsed as JSON, as `serde_json::from_slice` would (the same values, the same
/// nesting limit), refused once the values built so far hold more than `limit` heap bytes.
pub fn from_slice(bytes: &[u8], limit: usize) -> Result<Value, ParseError> {
    from_slice_counted(bytes, limit).map(|(value, _)| value)
}

/// [`from_slice`], with the heap bytes the value holds (an upper bound: blocks as glibc
/// hands them out, each object's entries and index exactly as made).
pub fn from_slice_counted(bytes: &[u8], limit: usize) -> Result<(Value, usize), ParseError> {
    let tally = Tally {
        held: Cell::new(0),
        limit,
        over: Cell::new(false),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Budgeted(&tally)
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| (value, tally.held.get())));
    parsed.map_err(|e| {
        if tally.over.get() {
            ParseError::TooCostly { limit }
        } else {
            ParseError::NotJson(e)
        }
    })
}

/// The heap the values built so far hold (blocks given up by a growing array or map are
/// released; a value a repeated key replaced is not, which only over-counts).
struct Tally {
    held: Cell<usize>,
    limit: usize,
    over: Cell<bool>,
}

impl Tally {
    fn charge<E: de::Error>(&self, add: usize, release: usize) -> Result<(), E> {
        let held = self.held.get().saturating_add(add).saturating_sub(release);
        self.held.set(held);
        if held > self.limit {
            self.over.set(true);
            return Err(E::custom("over the parse's memory bound"));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Budgeted<'t>(&'t Tally);

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.0.charge(block(s.len()), 0)?;
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.0.charge(block(s.capacity()), 0)?;
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items: Vec<Value> = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            let before = items.capacity();
            items.push(item);
            if items.capacity() != before {
                self.0
                    .charge(array_bytes(items.capacity()), array_bytes(before))?;
            }
        }
        Ok(Value::Array(items))
    }

    /// Members are gathered first and the map made with their exact number: grown one
    /// insert at a time, a one-member object would hold three entries' room.
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut pairs: Vec<(String, Value)> = Vec::new();
        let pair_bytes = |capacity: usize| block(capacity * size_of::<(String, Value)>());
        while let Some(key) = access.next_key::<String>()? {
            self.0.charge(block(key.capacity()), 0)?;
            let value = access.next_value_seed(self)?;
            let before = pairs.capacity();
            pairs.push((key, value));
            if pairs.capacity() != before {
                self.0
                    .charge(pair_bytes(pairs.capacity()), pair_bytes(before))?;
            }
        }
        self.0.charge(exact_map_bytes(pairs.len()), 0)?;
        let mut members = Map::with_capacity(pairs.len());
        let gathered = pairs.capacity();
        members.extend(pairs);
        self.0.charge(0, pair_bytes(gathered))?;
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::state_jsonpath::footprint::heap_bytes;

    #[test]
    fn parses_as_serde_json_does_and_counts_what_it_holds() {
        let text =
            r#"{"a": [1, -2, 3.5, "x\u00e9", null, true, {"b": {}}], "a": "again", "c": []}"#;
        let value = from_slice(text.as_bytes(), 1 << 20).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(text).unwrap());
        assert!(matches!(
            from_slice(b"[1] x", 1 << 20),
            Err(ParseError::NotJson(_))
        ));
        let nested = "[".repeat(200) + "]".repeat(200).as_str();
        assert!(matches!(
            from_slice(nested.as_bytes(), 1 << 20),
            Err(ParseError::NotJson(_))
        ));
        let worst = format!("[{}[0]]", "[0],".repeat(10_000));
        let cost = heap_bytes(&from_slice(worst.as_bytes(), 1 << 30).unwrap());
        assert!(matches!(
            from_slice(worst.as_bytes(), cost - 1),
            Err(ParseError::TooCostly { .. })
        ));
        assert!(from_slice(worst.as_bytes(), cost).is_ok());
    }
}
