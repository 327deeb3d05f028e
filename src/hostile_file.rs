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

/// Opens `path` for reading without blocking or following a final symlink, and checks on
/// the handle that it is a regular file of at most `cap` bytes. The error says which rule
/// the file broke (its kind is `NotFound` only when nothing is there).
pub fn open_regular(path: &Path, cap: u64) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused("is a symbolic link (berth does not follow links here)"),
            _ => e,
        })?;
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
        return Err(refused(&format!("is {what}, not a regular file")));
    }
    if meta.len() > cap {
        return Err(too_large(meta.len(), cap));
    }
    Ok((file, meta))
}

/// The whole content of a regular file of at most `cap` bytes (see [`open_regular`]).
pub fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let (file, meta) = open_regular(path, cap)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64, cap));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_string(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_regular(path, cap)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn refused(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, reason.to_owned())
}

fn too_large(len: u64, cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("file is {len} bytes, over the {cap}-byte limit"),
    )
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
}
