//! A record's unknown fields, each kept as the JSON text it was read as.

use std::fmt;

use serde::ser::SerializeMap as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Every field of a record this version of berth does not know, in file order, each as its
/// compact JSON text. A producer's field is carried through every rewrite verbatim, and
/// what the daemon holds for it is that text (at most the record's size), not a parsed tree:
/// 1 MiB of `[0],[0],...` parsed is ~50 MiB, and the queue view keeps every record.
#[derive(Clone, Default)]
pub struct Extra(Vec<(String, Box<RawValue>)>);

impl Extra {
    /// The fields of a parsed map, each turned back into its text.
    pub fn from_map(map: Map<String, Value>) -> Extra {
        let mut extra = Extra::default();
        for (key, value) in map {
            extra.insert(key, &value);
        }
        extra
    }

    /// The field's JSON text.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// The field, if it is a JSON string.
    pub fn get_str(&self, key: &str) -> Option<String> {
        serde_json::from_str(self.get(key)?.get()).ok()
    }

    /// Sets the field, in place if present, else after the others.
    pub fn insert(&mut self, key: String, value: &Value) {
        let raw = serde_json::value::to_raw_value(value)
            .expect("a JSON value always serializes: its map keys are strings");
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = raw,
            None => self.0.push((key, raw)),
        }
    }

    /// Every field and its JSON text, in file order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Extra) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((k, v), (k2, v2))| k == k2 && v.get() == v2.get())
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v.get())))
            .finish()
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Extra, D::Error> {
        Map::deserialize(deserializer).map(Extra::from_map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a rewrite emits is the field's value, in the file's order, whatever the
    /// surrounding format (pretty or compact), and a value set by berth replaces in place.
    #[test]
    fn fields_round_trip_in_order_and_set_in_place() {
        let map = json!({"b": {"x": [1, 2]}, "a": "t", "c": null});
        let Value::Object(map) = map else {
            unreachable!()
        };
        let mut extra = Extra::from_map(map);
        assert_eq!(extra.get_str("a").as_deref(), Some("t"));
        assert_eq!(extra.get_str("b"), None);
        extra.insert("a".into(), &json!(7));
        extra.remove("c");
        let pretty = serde_json::to_string_pretty(&extra).unwrap();
        assert_eq!(pretty, "{\n  \"b\": {\"x\":[1,2]},\n  \"a\": 7\n}");
        let back: Extra = serde_json::from_str(&pretty).unwrap();
        assert_eq!(back, extra);
    }
}
