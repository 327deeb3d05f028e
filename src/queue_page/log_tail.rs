//! `/log/<record id>`: the tail of the newest attempt log of a record in the queue, so a
//! link from the lane shows what the landing is printing. Only records the queue holds are
//! looked up (the id never names a path by itself), the file is opened without following a
//! symlink, and at most [`TAIL_BYTES`] are read and shown, escaped, whatever its size: only
//! the tail is read, so a log of any length costs the same (one attempt's land runs, a
//! drift repair's included, share a log that may pass the 2 MiB a single run keeps).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

use super::escape::{escape, escape_whole};
use super::facts::{PageFacts, newest_attempt_log};
use super::layout::page;
use crate::hostile_file;

/// How much of the log's end the page shows.
pub const TAIL_BYTES: u64 = 64 * 1024;

/// The page for record `id`, or `None` when the queue holds no such record.
pub fn render(facts: &PageFacts, id: &str) -> Option<String> {
    let stored = facts.report.scan.records.iter().find(|s| s.id == id)?;
    let body = match newest_attempt_log(&facts.berth_dir, &stored.id) {
        None => "<p>No attempt log yet.</p>".to_owned(),
        Some(path) => match tail(&path) {
            Ok((text, size)) => format!(
                "<p>{}: the last {} of {size} bytes{}.</p>\n<pre>{}</pre>",
                escape(&path.display().to_string()),
                text.len(),
                match size.saturating_sub(TAIL_BYTES) {
                    0 => String::new(),
                    cut => format!(" (the first {cut} bytes are not shown)"),
                },
                escape_whole(&text)
            ),
            Err(e) => format!(
                "<p>{} cannot be read: {}</p>",
                escape(&path.display().to_string()),
                escape(&e.to_string())
            ),
        },
    };
    let title = format!("PR #{} attempt log", stored.record.pr_number);
    let heading = format!(
        "<h1>{}</h1>\n<p><a href=\"/pr/{}\">story</a></p>\n",
        escape(&title),
        super::escape::path_segment(&stored.id)
    );
    Some(page(&title, &format!("{heading}{body}")))
}

/// The last [`TAIL_BYTES`] of `path` as text (a cut character shows as U+FFFD) and the
/// file's size. The file's size is not capped: no more than the tail is ever read.
fn tail(path: &Path) -> Result<(String, u64), hostile_file::ReadError> {
    let (mut file, meta) = hostile_file::open_regular(path, u64::MAX)?;
    let size = meta.len();
    file.seek(SeekFrom::Start(size.saturating_sub(TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), size))
}
