//! A run id as it names files in the faults dir, and how such a name is kept within the
//! longest name a file system takes.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// The longest file name (`NAME_MAX`) of Linux and macOS file systems, in bytes. Names in
/// the faults dir start with a run id from data, which can be longer.
pub const NAME_MAX: usize = 255;
/// `~` and 16 hex digits of the full stem's sha256: what ends a shortened stem.
const HASH_BYTES: usize = 17;

/// gstack's `safeRunId`: every UTF-16 unit outside `[A-Za-z0-9._-]` becomes `_` (a
/// character outside the BMP becomes `__`, as JavaScript's `replace` makes it).
pub fn safe_run_id(run_id: &str) -> String {
    run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_string()
            } else {
                "_".repeat(c.len_utf16())
            }
        })
        .collect()
}

/// The run id as it starts a file name here: gstack's [`safe_run_id`], except that a
/// leading `.` becomes `_`. A dot-file is hidden from every listing (gstack's loaders,
/// `berth faults list`, `ls`), so an event filed under it would be raised and never seen.
/// gstack's own run ids (slugs, `--run-id`s) never start with a dot, so every name gstack
/// writes is unchanged.
pub fn file_run_id(run_id: &str) -> String {
    let safe = safe_run_id(run_id);
    match safe.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => safe,
    }
}

/// `stem` as it starts a file name whose other bytes (what follows it, and whatever a later
/// rename may add) take `others` bytes: as it is when the whole fits in [`NAME_MAX`] (every
/// name gstack writes that a file system takes is unchanged), else its first bytes (cut at
/// a character boundary) and `~<16 hex of sha256(stem)>`, so that two long stems that
/// share a start still name two files.
pub fn fit_stem(stem: &str, others: usize) -> Cow<'_, str> {
    let room = NAME_MAX.saturating_sub(others);
    if stem.len() <= room {
        return Cow::Borrowed(stem);
    }
    let mut keep = room.saturating_sub(HASH_BYTES);
    while !stem.is_char_boundary(keep) {
        keep -= 1;
    }
    let digest = Sha256::digest(stem.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Cow::Owned(format!("{}~{hex}", &stem[..keep]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_stems_are_cut_to_fit_and_stay_distinct() {
        assert_eq!(fit_stem("run-X", 5), "run-X");
        let exact = "r".repeat(NAME_MAX - 5);
        assert_eq!(fit_stem(&exact, 5), exact.as_str());
        let long = "r".repeat(300);
        let cut = fit_stem(&long, 5);
        assert_eq!(cut.len(), NAME_MAX - 5);
        assert!(cut.starts_with("rrrr") && cut.contains('~'));
        let other = format!("{}s", "r".repeat(299));
        assert_ne!(fit_stem(&other, 5), cut);
        // A multi-byte character is never split.
        let wide = "é".repeat(200);
        let cut = fit_stem(&wide, 6);
        assert!(cut.len() <= NAME_MAX - 6);
        assert!(cut.ends_with(|c: char| c.is_ascii_hexdigit()));
    }

    #[test]
    fn safe_run_ids_are_gstacks() {
        assert_eq!(safe_run_id("build-a.b_c"), "build-a.b_c");
        assert_eq!(file_run_id("build-a.b_c"), "build-a.b_c");
        assert_eq!(file_run_id(".hidden.x"), "_hidden.x");
        assert_eq!(file_run_id("/x"), "_x");
        assert_eq!(safe_run_id("run/1 x"), "run_1_x");
        assert_eq!(safe_run_id("é😀"), "___");
    }
}
