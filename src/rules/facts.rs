//! The facts store: the exact arguments each logged decision's rule call saw, kept once per
//! distinct value beside the decision log, so `berth rules replay` can ask a candidate rule
//! set the same questions the daemon asked.
//!
//! `<berth_dir>/facts.jsonl` holds one line per distinct value, `{"id": "<32 hex>",
//! "value": …}`; the id is the first 128 bits of the sha256 of the value's JSON text. A
//! decision line names its arguments in `facts`: one id per argument, or, for an argument
//! that is a list (the candidates `order` ranks), a list of ids, one per element. A queue's
//! records are therefore stored once, not once for every tick that ordered them.
//!
//! Bounded: past [`MAX_FILE_BYTES`] the file becomes `facts.1.jsonl` (replacing the one
//! before) and a new one starts, so the store never holds more than twice that. A decision
//! whose facts are in neither file is reported by replay as not replayable, never guessed.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::rotation::Rotated;

pub const FACTS_FILE: &str = "facts.jsonl";
pub const ROTATED_FACTS_FILE: &str = "facts.1.jsonl";

/// The size at which the facts file is rotated.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The store's files in `berth_dir`: `facts.jsonl` and one rotated generation.
fn files(berth_dir: &Path) -> Rotated {
    Rotated::new(berth_dir, "facts", 1)
}

/// The id of a stored value.
pub fn id_of(value: &Value) -> String {
    let text = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&text);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The writer the daemon's decision log holds.
#[derive(Debug)]
pub struct FactsStore {
    files: Rotated,
    max_bytes: u64,
    written: Mutex<Option<Written>>,
}

/// Which ids the current file holds and how big it is (read from the file on first use, so
/// a restarted daemon does not store what its predecessor stored).
#[derive(Debug, Default)]
struct Written {
    ids: HashSet<String>,
    bytes: u64,
}

impl FactsStore {
    pub fn new(berth_dir: &Path) -> FactsStore {
        FactsStore::with_limit(berth_dir, MAX_FILE_BYTES)
    }

    pub fn with_limit(berth_dir: &Path, max_bytes: u64) -> FactsStore {
        FactsStore {
            files: files(berth_dir),
            max_bytes,
            written: Mutex::new(None),
        }
    }

    /// Stores every argument not stored yet and answers the references a decision line
    /// carries: an id per argument, a list of ids for an argument that is a list.
    pub fn put_args(&self, args: &[Value]) -> io::Result<Value> {
        let mut guard = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(read_written(&self.files.current())?);
        }
        let written = guard.as_mut().expect("loaded above");
        let mut lines = String::new();
        let mut refs = Vec::with_capacity(args.len());
        for arg in args {
            refs.push(match arg {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|item| Value::String(stage(written, item, &mut lines)))
                        .collect(),
                ),
                other => Value::String(stage(written, other, &mut lines)),
            });
        }
        if !lines.is_empty() {
            self.append(written, &lines)?;
        }
        Ok(Value::Array(refs))
    }

    fn append(&self, written: &mut Written, lines: &str) -> io::Result<()> {
        let path = self.files.current();
        if written.bytes > 0 && written.bytes + lines.len() as u64 > self.max_bytes {
            self.files.rotate()?;
            // The values staged for this line were counted as stored in the old file: the
            // new file must hold them again, so they are written with it.
            written.ids.clear();
            written.bytes = 0;
            let mut again = String::new();
            for line in lines.lines() {
                if let Some(id) = line_id(line) {
                    written.ids.insert(id.to_owned());
                }
                again.push_str(line);
                again.push('\n');
            }
            return self.write(written, &path, &again);
        }
        self.write(written, &path, lines)
    }

    fn write(&self, written: &mut Written, path: &Path, lines: &str) -> io::Result<()> {
        // Never through a symlink planted in berth's dir; O_APPEND keeps lines whole.
        let mut file = crate::atomic_file::open_append_private(path)?;
        file.write_all(lines.as_bytes())?;
        written.bytes += lines.len() as u64;
        Ok(())
    }
}

/// Adds `value`'s line to `lines` unless it is stored already; its id.
fn stage(written: &mut Written, value: &Value, lines: &mut String) -> String {
    let id = id_of(value);
    if written.ids.insert(id.clone()) {
        let line = serde_json::json!({"id": id, "value": value});
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    id
}

/// The id a line starts with (`{"id":"<32 hex>",…`), without parsing the value.
fn line_id(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("{\"id\":\"")?;
    rest.get(..32)
        .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn read_written(path: &Path) -> io::Result<Written> {
    let mut written = Written::default();
    let file = match crate::atomic_file::open_read_nofollow(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(written),
        Err(e) => return Err(e),
    };
    written.bytes = file.metadata()?.len();
    for line in io::BufReader::new(file).lines() {
        if let Some(id) = line_id(&line?) {
            written.ids.insert(id.to_owned());
        }
    }
    Ok(written)
}

/// The values replay needs, read from both generations of the store.
#[derive(Debug, Default)]
pub struct FactsIndex(HashMap<String, Value>);

impl FactsIndex {
    /// Reads the values whose ids are in `wanted` (only those: the store may be large).
    pub fn load(berth_dir: &Path, wanted: &HashSet<String>) -> io::Result<FactsIndex> {
        let mut values = HashMap::new();
        files(berth_dir).each_line(|line| {
            let Some(id) = line_id(&line).filter(|id| wanted.contains(*id)) else {
                return;
            };
            // A torn last line (a crash mid-append) is skipped: its decisions are then
            // reported as not replayable.
            if let Ok(mut parsed) = serde_json::from_str::<Value>(&line)
                && let Some(value) = parsed.get_mut("value")
            {
                values.insert(id.to_owned(), value.take());
            }
        })?;
        Ok(FactsIndex(values))
    }

    /// Reads the values `refs` (the `facts` of decision-log lines) refer to.
    pub fn load_for<'a>(
        berth_dir: &Path,
        refs: impl Iterator<Item = &'a Value>,
    ) -> io::Result<FactsIndex> {
        let wanted: HashSet<String> = refs
            .flat_map(|refs| {
                FactsIndex::ids_in(refs)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        FactsIndex::load(berth_dir, &wanted)
    }

    /// The ids a decision line's `facts` refers to.
    pub fn ids_in(refs: &Value) -> impl Iterator<Item = &str> {
        let items = refs.as_array().map_or(&[][..], Vec::as_slice);
        items.iter().flat_map(|r| match r {
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
            other => other.as_str().into_iter().collect(),
        })
    }

    /// The arguments `refs` names, or `None` when one of them is not in the store.
    pub fn resolve(&self, refs: &Value) -> Option<Vec<Value>> {
        let value = |id: &Value| id.as_str().and_then(|id| self.0.get(id)).cloned();
        refs.as_array()?
            .iter()
            .map(|r| match r {
                Value::Array(list) => list
                    .iter()
                    .map(value)
                    .collect::<Option<Vec<_>>>()
                    .map(Value::Array),
                other => value(other),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wanted(refs: &[Value]) -> HashSet<String> {
        refs.iter()
            .flat_map(|r| FactsIndex::ids_in(r).map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn each_value_is_stored_once_and_lists_are_stored_by_element() {
        let dir = tempfile::tempdir().unwrap();
        let store = FactsStore::new(dir.path());
        let a = json!({"id": "a", "prNumber": 1});
        let b = json!({"id": "b", "prNumber": 2});
        let first = store.put_args(&[json!([a, b])]).unwrap();
        let second = store.put_args(&[a.clone(), json!({"now": "t"})]).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FACTS_FILE)).unwrap();
        assert_eq!(
            text.lines().count(),
            3,
            "a, b and the ctx, each once:\n{text}"
        );
        // A restarted daemon does not store again what is there.
        let again = FactsStore::new(dir.path())
            .put_args(std::slice::from_ref(&a))
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(FACTS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3);
        let index = FactsIndex::load(
            dir.path(),
            &wanted(&[first.clone(), second.clone(), again.clone()]),
        )
        .unwrap();
        assert_eq!(index.resolve(&first).unwrap(), vec![json!([a, b])]);
        assert_eq!(
            index.resolve(&second).unwrap(),
            vec![a.clone(), json!({"now": "t"})]
        );
        assert_eq!(index.resolve(&again).unwrap(), vec![a]);
        assert!(
            index
                .resolve(&json!(["0123456789abcdef0123456789abcdef"]))
                .is_none()
        );
    }

    #[test]
    fn past_its_limit_the_store_rotates_and_keeps_two_generations() {
        let dir = tempfile::tempdir().unwrap();
        let store = FactsStore::with_limit(dir.path(), 200);
        let refs: Vec<Value> = (0..10)
            .map(|n| {
                store
                    .put_args(&[json!({"n": n, "pad": "x".repeat(40)})])
                    .unwrap()
            })
            .collect();
        for name in [FACTS_FILE, ROTATED_FACTS_FILE] {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len <= 200, "{name} is {len} bytes");
        }
        let index = FactsIndex::load(dir.path(), &wanted(&refs)).unwrap();
        assert!(index.resolve(&refs[9]).is_some(), "the newest is kept");
        assert!(index.resolve(&refs[0]).is_none(), "the oldest rotated away");
        // A value stored before the rotation is stored again when it is asked for again.
        let again = store
            .put_args(&[json!({"n": 0, "pad": "x".repeat(40)})])
            .unwrap();
        let index = FactsIndex::load(dir.path(), &wanted(std::slice::from_ref(&again))).unwrap();
        assert!(index.resolve(&again).is_some());
    }
}
