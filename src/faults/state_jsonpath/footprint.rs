//! What a parsed document keeps on the heap, as an upper bound computed from its shape: a
//! cache of parsed states is bounded by what its entries cost in memory, which a file's
//! size does not tell (`[0],[0],…` costs ~100× its bytes once parsed, plain text about 1×).
//!
//! Every block is counted as glibc's allocator hands it out (its header, rounding and
//! minimum size, [`block`]), with the real sizes of serde_json's types: a `Value` slot per
//! array item up to the array's capacity, and for an object (an `IndexMap` with
//! `preserve_order`) its entries vector and its hash index as large as inserting its
//! members one by one (serde_json's way) can have grown them ([`map_bytes`]). The fault
//! watch's own parser counts as it builds, with the exact sizes of what it makes
//! ([`exact_map_bytes`]).

use std::mem::size_of;

use serde_json::Value;

/// One object member in an `IndexMap`'s entries: its hash, its key and its value.
const ENTRY: usize = size_of::<(usize, String, Value)>();
/// The width of hashbrown's control groups (SSE2), which pads every table.
const GROUP_WIDTH: usize = 16;

/// The heap bytes under `value` (not `value` itself, which its parent holds). Walks with an
/// explicit stack: a document is nested as deep as serde_json allows, which this must not
/// turn into recursion.
pub(crate) fn heap_bytes(value: &Value) -> usize {
    let mut total = 0usize;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        total = total.saturating_add(match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(s) => block(s.capacity()),
            Value::Array(items) => {
                pending.extend(items.iter());
                array_bytes(items.capacity())
            }
            Value::Object(members) => {
                pending.extend(members.values());
                let keys: usize = members.keys().map(|k| block(k.capacity())).sum();
                map_bytes(members.len()).saturating_add(keys)
            }
        });
    }
    total
}

/// The block of a `Vec<Value>` of `capacity` slots.
pub(crate) fn array_bytes(capacity: usize) -> usize {
    block(capacity.saturating_mul(size_of::<Value>()))
}

/// What an object of `len` members holds besides its keys' text and its values' heap, at
/// most: the entries vector and hash index a map grown by one insert at a time can have
/// for `len` members (the entries are never more than the index's capacity).
pub(crate) fn map_bytes(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let buckets = buckets_for(len);
    let capacity = if buckets < 8 {
        buckets - 1
    } else {
        buckets / 8 * 7
    };
    block(capacity.max(len).saturating_mul(ENTRY)).saturating_add(table_bytes(buckets, 8))
}

/// What a map made `with_capacity(capacity)` holds besides its keys' text and its values'
/// heap (as [`super::super::parse_budget`] makes every object): exactly that many entries
/// and the index hashbrown picks for them.
pub(crate) fn exact_map_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    block(capacity.saturating_mul(ENTRY)).saturating_add(table_bytes(buckets_for(capacity), 8))
}

/// The buckets hashbrown (0.17) picks for a table of `items` `usize`s: at least 4, then
/// 8 and 16 below 15 items, then 1/8 kept empty, a power of two.
pub(crate) fn buckets_for(items: usize) -> usize {
    match items {
        0..=3 => 4,
        4..=7 => 8,
        8..=14 => 16,
        _ => (items.saturating_mul(8) / 7)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX),
    }
}

/// The block of a hashbrown table of `buckets` buckets of `size`-byte elements: the
/// elements, padded to the group width, then one control byte per bucket and a group more.
pub(crate) fn table_bytes(buckets: usize, size: usize) -> usize {
    let elements =
        buckets.saturating_mul(size).saturating_add(GROUP_WIDTH - 1) & !(GROUP_WIDTH - 1);
    block(elements.saturating_add(buckets).saturating_add(GROUP_WIDTH))
}

/// The heap a request of `bytes` really takes from glibc's malloc on a 64-bit host: an
/// 8-byte header, rounded up to 16, at least 32 (nothing for an empty request, which Rust
/// never makes).
pub(crate) fn block(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes.saturating_add(8 + 15) & !15).max(32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_blocks_and_tables_are_counted_as_allocated() {
        assert_eq!(block(1), 32);
        assert_eq!(block(24), 32);
        assert_eq!(block(25), 48);
        assert_eq!(table_bytes(4, 8), block(32 + 4 + 16));
        assert_eq!(buckets_for(3), 4);
        assert_eq!(buckets_for(7), 8);
        assert_eq!(buckets_for(28), 32);
        assert_eq!(buckets_for(29), 64);
        // `{"a":{}}`: a one-member map holds three entries and a four-bucket index.
        let one: Value = serde_json::from_str(r#"{"a":{}}"#).unwrap();
        assert_eq!(
            heap_bytes(&one),
            block(3 * ENTRY) + table_bytes(4, 8) + block(1)
        );
    }
}
