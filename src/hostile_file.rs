//! Reading a file another process can write (a producer's queue record, an investigator's
//! halt file, an orchestrator's state file): whatever is at the path is hostile.
//!
//! One open, then every check on the handle, so nothing is re-resolved between check and
//! use: `O_NONBLOCK` (a FIFO swapped in does not block the open), `O_NOFOLLOW` (a symlink
//! to `/dev/zero` or to another user's file is refused, not followed), `O_CLOEXEC` (std's
//! default); then `fstat` on the handle must say a regular file no larger than the cap,
//! and the read itself stops one byte past the cap, in case the file grows meanwhile.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::libc;

/// Why a hostile file was not read: the system could not read it ([`ReadError::Io`], worth
/// trying again: `EMFILE`, `EIO`, `EACCES`; `NotFound` when nothing is there), or what is
/// there broke one of this module's rules (its type, size or encoding). Each message is a
/// reason fit for an operator, put after the file's name.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error("is a symbolic link (berth does not follow links here)")]
    Symlink,
    /// What is there instead (`a directory`, `a FIFO`, …).
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("file is {len} bytes, over the {cap}-byte limit")]
    TooLarge { len: u64, cap: u64 },
    #[error("not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
}

impl ReadError {
    /// Nothing is at the path.
    pub fn is_not_found(&self) -> bool {
        self.kind() == io::ErrorKind::NotFound
    }

    /// The file broke one of this module's rules (something about what is there), as
    /// opposed to the system failing to read it.
    pub fn is_refused(&self) -> bool {
        !matches!(self, ReadError::Io(_))
    }
}

impl ReadError {
    /// The `io::ErrorKind` this would have as an `io::Error`.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            ReadError::Io(e) => e.kind(),
            ReadError::Symlink | ReadError::NotRegular(_) => io::ErrorKind::InvalidInput,
            ReadError::TooLarge { .. } => io::ErrorKind::FileTooLarge,
            ReadError::NotUtf8 { .. } => io::ErrorKind::InvalidData,
        }
    }
}

/// For callers that answer in `io::Error`: a system error as it was, a refusal with its
/// kind and its reason as the message.
impl From<ReadError> for io::Error {
    fn from(error: ReadError) -> io::Error {
        match error {
            ReadError::Io(e) => e,
            refused => io::Error::new(refused.kind(), refused.to_string()),
        }
    }
}

/// Opens `path` for reading without blocking or following a final symlink, and checks on
/// the handle that it is a regular file of at most `cap` bytes. The error says which rule
/// the file broke.
pub fn open_regular(path: &Path, cap: u64) -> Result<(File, Metadata), ReadError> {
    open_checked(path, cap, libc::O_NOFOLLOW)
}

/// [`read_regular`] for a path that may legitimately be a symlink (a linked worktree's
/// `.git` file): the link is followed, every other check holds on what it leads to.
pub fn read_regular_following(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    read_from(open_checked(path, cap, 0)?, cap)
}

fn open_checked(path: &Path, cap: u64, extra_flags: i32) -> Result<(File, Metadata), ReadError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | extra_flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => ReadError::Symlink,
            _ => ReadError::Io(e),
        })?;
    checked(file, cap)
}

/// [`open_regular`] for `name` in the directory `dir` is open on, never re-resolving the
/// directory's own path ([`crate::private_dir`]).
pub fn open_regular_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &str,
    cap: u64,
) -> Result<(File, Metadata), ReadError> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let fd =
        nix::fcntl::openat(dir, name, flags, nix::sys::stat::Mode::empty()).map_err(
            |e| match e {
                nix::errno::Errno::ELOOP => ReadError::Symlink,
                e => ReadError::Io(e.into()),
            },
        )?;
    checked(File::from(fd), cap)
}

/// The checks on an open handle: a regular file of at most `cap` bytes.
fn checked(file: File, cap: u64) -> Result<(File, Metadata), ReadError> {
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(ReadError::NotRegular(what));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge {
            len: meta.len(),
            cap,
        });
    }
    Ok((file, meta))
}

/// The whole content of a regular file of at most `cap` bytes (see [`open_regular`]).
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    read_from(open_regular(path, cap)?, cap)
}

/// The content of a file [`open_regular`] opened (after its caller looked at the `fstat`).
pub fn read_from(opened: (File, Metadata), cap: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    read_into(opened, cap, &mut bytes)?;
    Ok(bytes)
}

/// [`read_from`] into `bytes` (cleared first): a sweep over thousands of files reuses one
/// buffer instead of faulting in fresh memory for each.
pub fn read_into(
    (file, meta): (File, Metadata),
    cap: u64,
    bytes: &mut Vec<u8>,
) -> Result<(), ReadError> {
    bytes.clear();
    // One byte more than the file, so reading up to EOF never grows the buffer.
    bytes.reserve(meta.len().min(cap) as usize + 1);
    file.take(cap + 1).read_to_end(bytes)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            len: bytes.len() as u64,
            cap,
        });
    }
    Ok(())
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_string(path: &Path, cap: u64) -> Result<String, ReadError> {
    utf8(read_regular(path, cap)?)
}

/// Bytes as text, or an error saying where the first invalid byte is.
pub fn utf8(bytes: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| not_utf8(e.utf8_error()))
}

/// [`utf8`] for borrowed bytes.
pub fn utf8_str(bytes: &[u8]) -> Result<&str, ReadError> {
    std::str::from_utf8(bytes).map_err(not_utf8)
}

fn not_utf8(e: std::str::Utf8Error) -> ReadError {
    ReadError::NotUtf8 {
        offset: e.valid_up_to(),
    }
}

/// Test support: a producer that keeps swapping a FIFO and a regular file at one path.
#[cfg(test)]
pub(crate) mod fifo_race {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Runs `read` `rounds` times while another thread swaps `path` between `regular`'s
    /// bytes and a FIFO by rename, as fast as it can: a reader that checks the type and
    /// then opens the path blocks on the FIFO sooner or later. Panics (instead of
    /// hanging) if the reads do not all finish within `within`; a blocked reader is then
    /// released by opening the FIFO for writing.
    pub fn reads_finish(
        path: &Path,
        regular: &[u8],
        rounds: usize,
        within: Duration,
        read: impl Fn() + Send + 'static,
    ) {
        let dir = path.parent().unwrap();
        let fifo: PathBuf = dir.join(".race-fifo");
        let file: PathBuf = dir.join(".race-file");
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, path, fifo, file) = (
                Arc::clone(&stop),
                path.to_owned(),
                fifo.clone(),
                file.clone(),
            );
            let regular = regular.to_vec();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU);
                    let _ = std::fs::rename(&fifo, &path);
                    let _ = std::fs::write(&file, &regular);
                    let _ = std::fs::rename(&file, &path);
                }
            })
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..rounds {
                read();
            }
            let _ = done_tx.send(());
        });
        let finished = done_rx.recv_timeout(within).is_ok();
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        if !finished {
            let _ = answer_stuck_opens(path);
            panic!("a read of {} blocked on a swapped-in FIFO", path.display());
        }
    }

    /// Answers whatever is stuck opening the FIFO at `path` to read it: a writer's open,
    /// which never blocks (it fails where no reader waits), and whose close is the end of
    /// the file. The writer, if it opened.
    pub fn answer_stuck_opens(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
    }

    /// A FIFO (`included`, beside `bare`) that the config of the bare repository `bare`
    /// includes: no look before libgit2 can see it, and libgit2's open of `bare` hangs on
    /// it until [`answer_stuck_opens`].
    pub fn fifo_included_by_config(bare: &Path) -> PathBuf {
        use std::io::Write as _;
        let included = bare.parent().unwrap().join("included");
        nix::unistd::mkfifo(&included, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(bare.join("config"))
            .unwrap();
        writeln!(config, "[include]\n\tpath = {}", included.display()).unwrap();
        included
    }

    use std::os::unix::fs::OpenOptionsExt;
}

/// Test support: what a read costs, in bytes this thread read through system calls.
#[cfg(test)]
pub(crate) mod read_cost {
    /// `read()`'s answer, and the bytes this thread read while it ran (`rchar` of
    /// `/proc/thread-self/io`, which counts what the calls returned, from any file).
    pub fn bytes_read_by<T>(read: impl FnOnce() -> T) -> (T, u64) {
        let before = rchar();
        let answer = read();
        (answer, rchar() - before)
    }

    fn rchar() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .parse()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn reads_a_regular_file_within_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, b"{}").unwrap();
        assert_eq!(read_regular(&path, 2).unwrap(), b"{}");
        let err = read_regular(&path, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(err.to_string(), "file is 2 bytes, over the 1-byte limit");
        let missing = read_regular(&dir.path().join("gone"), 1).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn fifos_symlinks_devices_and_dirs_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let link = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let started = Instant::now();
        for (path, why) in [
            (fifo.as_path(), "is a FIFO, not a regular file"),
            (link.as_path(), "is a symbolic link"),
            (Path::new("/dev/zero"), "is a device, not a regular file"),
            (dir.path(), "is a directory, not a regular file"),
        ] {
            let err = read_regular(path, 1024).unwrap_err().to_string();
            assert!(err.starts_with(why), "{}: {err}", path.display());
        }
        // No writer ever opens the FIFO: a blocking open would still be waiting.
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// The halt dir is written by investigators: its reader must not block either.
    #[test]
    fn the_halt_dir_reader_never_blocks_on_a_swapped_in_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::faults::halt_store::HaltStore::new(dir.path());
        let pending = dir.path().join("pending-investigations");
        std::fs::create_dir_all(&pending).unwrap();
        let listing = move || {
            store.list();
        };
        fifo_race::reads_finish(
            &pending.join("run-X:all:f.json"),
            b"{}",
            3000,
            Duration::from_secs(20),
            listing,
        );
    }
}
