//! What a parsed document keeps on the heap, estimated from its shape: a cache of parsed
//! states is bounded by what its entries cost in memory, which a file's size does not tell
//! (`[0],[0],…` costs ~100× its bytes once parsed, plain text about 1×).

use std::mem::size_of;

use serde_json::Value;

/// What the allocator adds to every block (its header and rounding), roughly.
const BLOCK_OVERHEAD: usize = 16;
/// What an object member costs besides its key's text and its value: the map's entry
/// (hash, key, value) and its index slot, with the slack of a growing table.
const MEMBER_OVERHEAD: usize = 2 * (size_of::<u64>() + size_of::<String>()) + size_of::<usize>();

/// The heap bytes under `value` (not `value` itself, which its parent holds). Walks with an
/// explicit stack: a document is nested as deep as serde_json allows, which this must not
/// turn into recursion.
pub(super) fn heap_bytes(value: &Value) -> usize {
    let mut total = 0usize;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        total = total.saturating_add(match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(s) => block(s.capacity()),
            Value::Array(items) => {
                pending.extend(items.iter());
                block(items.capacity() * size_of::<Value>())
            }
            Value::Object(members) => {
                pending.extend(members.values());
                let keys: usize = members.keys().map(|k| block(k.capacity())).sum();
                block(members.len() * (size_of::<Value>() + MEMBER_OVERHEAD)) + keys
            }
        });
    }
    total
}

fn block(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        bytes + BLOCK_OVERHEAD
    }
}
