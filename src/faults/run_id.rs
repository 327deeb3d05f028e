//! A run id as it names files in the faults dir.

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

#[cfg(test)]
mod tests {
    use super::*;

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
