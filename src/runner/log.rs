//! Per-record, per-attempt log files, and the drift signatures read back from them.
//!
//! The child's stdout and stderr are one pipe that berth drains into the log, keeping the
//! head and the tail of each run ([`super::capped_log`]). Several runs may append to one file (the second `land` of
//! a drift repair, or a revived record); each starts with a header line, and berth
//! remembers the byte offset where a run's output begins so it judges only that run.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use super::Step;

/// The texts gstack's landing tools print when the release they were asked to land no
/// longer matches the queue; a `/ship` re-run repairs that.
pub const DRIFT_SIGNATURES: [&str; 2] = ["VERSION drift detected", "queue moved since last /ship"];

/// How much of a run's output is scanned for drift signatures: the tail, where a failing
/// command prints its verdict, without reading a runaway log whole.
pub const DRIFT_SCAN_CAP: u64 = 4 * 1024 * 1024;

/// A record id that cannot safely name a directory.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "record id {0:?} cannot name a log directory: it must be a single path component (no `/`, not `.` or `..`, no NUL)"
)]
pub struct InvalidRecordId(pub String);

/// `<logs_dir>/<record_id>/attempt-<n>-<step>.log`.
///
/// Record ids come from `safe_key` and are safe already; this re-checks because a path
/// built from producer data must never escape `logs_dir`, whoever called it. An id such
/// as `a..b` is one harmless component (and `safe_key` can produce it), so only ids that
/// are not exactly one normal component are refused.
pub fn attempt_log_path(
    logs_dir: &Path,
    record_id: &str,
    attempt: u32,
    step: Step,
) -> Result<PathBuf, InvalidRecordId> {
    let mut components = Path::new(record_id).components();
    let single_normal = matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    );
    if !single_normal || record_id.contains(['/', '\0']) {
        return Err(InvalidRecordId(record_id.to_owned()));
    }
    Ok(logs_dir
        .join(record_id)
        .join(format!("attempt-{attempt}-{}.log", step.as_str())))
}

/// How many numbers past the first candidate [`claim_attempt`] tries before it gives up:
/// a record with that many attempt logs needs its logs dir cleaned, not another one.
pub const ATTEMPT_SEARCH_LIMIT: u32 = 1000;

/// Why no attempt number could be claimed.
#[derive(Debug, Error)]
pub enum ClaimError {
    #[error(transparent)]
    Id(#[from] InvalidRecordId),
    #[error("cannot create an attempt log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "attempt logs {from} to {last} of record {record} all exist under {dir}; remove old ones to land it again"
    )]
    Exhausted {
        record: String,
        dir: PathBuf,
        from: u32,
        last: u32,
    },
}

/// The first attempt number from `from` on whose land log does not exist yet, claimed by
/// creating that log empty (create-new, never following a link), so every landing attempt
/// of a record has its own log even when an operator's `retry` reset the record's
/// `retries`. The same attempt's later steps append to the claimed files.
pub fn claim_attempt(logs_dir: &Path, record_id: &str, from: u32) -> Result<u32, ClaimError> {
    let last = from.saturating_add(ATTEMPT_SEARCH_LIMIT);
    for attempt in from..=last {
        let path = attempt_log_path(logs_dir, record_id, attempt, Step::Land)?;
        let io_error = |source| ClaimError::Io {
            path: path.clone(),
            source,
        };
        let ship = attempt_log_path(logs_dir, record_id, attempt, Step::Ship)?;
        if ship.symlink_metadata().is_ok() {
            continue;
        }
        // The log pruning removes a record's dir left empty for an hour; one removed between
        // making sure of it and creating the log is made again, once.
        let mut created = Err(io::Error::from(io::ErrorKind::NotFound));
        for _ in 0..2 {
            if let Some(dir) = path.parent() {
                crate::atomic_file::ensure_private_dir(dir).map_err(io_error)?;
            }
            let mode = nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR;
            created =
                crate::atomic_file::create_exclusive(&path, nix::fcntl::OFlag::O_WRONLY, mode);
            if !matches!(&created, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                break;
            }
        }
        match created {
            Ok(_) => return Ok(attempt),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(e)),
        }
    }
    Err(ClaimError::Exhausted {
        record: record_id.to_owned(),
        dir: logs_dir.join(record_id),
        from,
        last,
    })
}

/// True when a run's output carries one of the [`DRIFT_SIGNATURES`], in any case: gstack
/// matches them with a case-insensitive regex, whose folding touches ASCII letters only.
pub fn output_shows_drift(log_excerpt: &str) -> bool {
    let folded = log_excerpt.to_ascii_lowercase();
    DRIFT_SIGNATURES
        .iter()
        .any(|sig| folded.contains(&sig.to_ascii_lowercase()))
}

/// Opens `path` for appending (creating its directory private and the file 0600, and
/// refusing a symlink planted in its place), writes `header` as one line, and returns the
/// file with the offset at which this run's own output begins.
pub(crate) fn open_for_run(path: &Path, header: &str) -> io::Result<(File, u64)> {
    let mut file = crate::atomic_file::open_append_private(path)?;
    let meta = file.metadata()?;
    // Keep the header on a line of its own even if the previous run died mid-line.
    let separator = if meta.len() > 0 { "\n" } else { "" };
    file.write_all(format!("{separator}{header}\n").as_bytes())?;
    let output_start = file.metadata()?.len();
    Ok((file, output_start))
}

/// Appends one closing line for a run.
pub(crate) fn append_line(file: &mut File, line: &str) -> io::Result<()> {
    file.write_all(format!("\n{line}\n").as_bytes())
}

/// This run's output from `output_start` on, at most the last `cap` bytes of it, decoded
/// lossily (commands print whatever bytes they like).
pub(crate) fn read_run_output(path: &Path, output_start: u64, cap: u64) -> io::Result<String> {
    // The step's processes can reach the log: never block on a FIFO or follow a link.
    let mut file = crate::atomic_file::open_read_nofollow(path)?;
    let len = file.metadata()?.len();
    let start = output_start.max(len.saturating_sub(cap));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    // A straggler may still be appending: read no more than the cap either way.
    file.take(cap).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// After a failed step the daemon reads the attempt log by name (drift scan), so the
    /// open must not block. The step's own processes run in the logs' reach (same user):
    /// one that replaces its log with a FIFO hangs the blocking thread, the landing, and
    /// the daemon's shutdown, forever.
    #[test]
    fn a_log_swapped_for_a_fifo_does_not_hang_the_drift_scan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempt.log");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_run_output(&path, 0, 1024).is_err());
        });
        let refused = rx
            .recv_timeout(std::time::Duration::from_secs(3))
            .expect("read_run_output still blocked on the FIFO after 3s");
        assert!(refused, "a FIFO is not an attempt log: expected an error");
    }

    #[test]
    fn drift_signatures_match_in_any_case_as_in_gstack() {
        for shows in [
            "error: VERSION drift detected (1.2.3 != 1.2.4)",
            "version DRIFT Detected",
            "Queue Moved Since Last /SHIP",
        ] {
            assert!(output_shows_drift(shows), "{shows:?}");
        }
        for clean in ["VERSION drift", "queue moved since /ship", ""] {
            assert!(!output_shows_drift(clean), "{clean:?}");
        }
    }

    #[test]
    fn log_path_is_per_record_attempt_and_step() {
        let p = attempt_log_path(Path::new("/logs"), "gh-acme-main-pr-7", 2, Step::Ship).unwrap();
        assert_eq!(p, Path::new("/logs/gh-acme-main-pr-7/attempt-2-ship.log"));
        assert!(attempt_log_path(Path::new("/l"), "x..y", 1, Step::Land).is_ok());
    }

    #[test]
    fn record_ids_that_could_escape_are_refused() {
        for bad in ["", ".", "..", "../x", "a/b", "/abs", "a/", "nul\0byte"] {
            let err = attempt_log_path(Path::new("/logs"), bad, 1, Step::Land).unwrap_err();
            assert_eq!(err, InvalidRecordId(bad.to_owned()));
        }
    }

    #[test]
    fn drift_signatures_are_recognised() {
        assert!(output_shows_drift(
            "x\nerror: VERSION drift detected (1.2.3 != 1.2.4)\n"
        ));
        assert!(output_shows_drift(
            "queue moved since last /ship; re-run /ship"
        ));
        assert!(
            output_shows_drift("version drift detected"),
            "any case, as gstack"
        );
        assert!(!output_shows_drift("queue moved"));
        assert!(!output_shows_drift(""));
    }

    #[test]
    fn runs_append_with_headers_and_offsets_and_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec").join("attempt-1-land.log");
        let (mut f, start1) = open_for_run(&path, "== one").unwrap();
        f.write_all(b"VERSION drift detected, no newline").unwrap();
        drop(f);
        let (mut f, start2) = open_for_run(&path, "== two").unwrap();
        f.write_all(b"clean\n").unwrap();
        append_line(&mut f, "== two ended").unwrap();
        drop(f);

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("== one\nVERSION drift detected, no newline\n== two\nclean\n"));
        assert!(output_shows_drift(
            &read_run_output(&path, start1, DRIFT_SCAN_CAP).unwrap()
        ));
        let second = read_run_output(&path, start2, DRIFT_SCAN_CAP).unwrap();
        assert_eq!(second, "clean\n\n== two ended\n");
        assert!(!output_shows_drift(&second));
        // Only the tail is read when the run's output is larger than the cap.
        assert_eq!(read_run_output(&path, start2, 6).unwrap(), "ended\n");

        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("rec").join("attempt-1-land.log");
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        symlink(&victim, &path).unwrap();
        assert!(open_for_run(&path, "== header").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
