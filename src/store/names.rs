//! Record file names and ids: record `<id>` is the queue-dir file `<id>.json`, both ways.

use super::StoreError;

/// The longest file name the file systems berth runs on allow (`NAME_MAX`).
const MAX_FILE_NAME: usize = 255;

/// The longest id the store can lock: `.<id>.lock` must be a valid file name.
pub const MAX_ID_LEN: usize = MAX_FILE_NAME - ".".len() - ".lock".len();

/// The ending of every record file: record `<id>` is the file `<id>.json`.
const RECORD_SUFFIX: &str = ".json";

/// Whether a queue-dir file name is a record's: `*.json`, not hidden (berth's own lock and
/// temp files start with a dot).
pub fn is_record_name(name: &str) -> bool {
    id_of(name).is_some()
}

/// The id a record file name stands for: the name less one `.json` (so `a.json.json` is
/// record `a.json`, whose writes go back to that very file); `None` for a name that is no
/// record's.
pub fn id_of(name: &str) -> Option<&str> {
    name.strip_suffix(RECORD_SUFFIX)
        .filter(|_| !name.starts_with('.'))
}

/// The file name of record `id`, the one [`id_of`] reads back as `id`.
pub fn file_name_of(id: &str) -> String {
    format!("{id}{RECORD_SUFFIX}")
}

pub(super) fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || crate::safe_key::safe_key(id) != id {
        return Err(StoreError::BadId(id.to_owned()));
    }
    if id.len() > MAX_ID_LEN {
        return Err(StoreError::IdTooLong {
            id: id.to_owned(),
            reason: format!(
                "the id is {} characters; berth locks a record with `.<id>.lock`, which allows at most {MAX_ID_LEN}, so it can neither claim nor change it: rename the file to a shorter id or remove it",
                id.len()
            ),
        });
    }
    Ok(())
}
