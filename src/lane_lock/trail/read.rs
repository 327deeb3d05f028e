//! The ref a write left, read through the walked git dir: the loose ref in the directory
//! the walk reached, then the git dir's own `packed-refs`.

use std::ffi::CStr;
use std::io::BufRead as _;
use std::os::fd::{AsRawFd as _, OwnedFd};

use nix::libc;

use super::{DIR_FLAGS, Node, REF_READ_CAP, Trail, fstat, node_at, open_link_target, owned};

/// What a ref's name holds.
pub(super) enum Found {
    Absent,
    /// Its text, trimmed.
    Text(String),
    /// Why it cannot be read as a ref.
    Unreadable(String),
}

/// Opened without following a symlink or blocking on a FIFO planted there.
const FILE_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// The regular file `name` in `dir`; `Err` what is there instead (`Absent`: nothing).
fn open_file(dir: &OwnedFd, name: &CStr) -> Result<OwnedFd, Found> {
    // SAFETY: a directory descriptor, a NUL-terminated name and open flags.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), FILE_FLAGS) };
    let Some(file) = owned(fd) else {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) => Found::Absent,
            _ => Found::Unreadable(format!("a node berth cannot read as a ref ({e})")),
        });
    };
    if fstat(file.as_raw_fd()).is_none_or(|node| node.kind != libc::S_IFREG) {
        return Err(Found::Unreadable(
            "a node that is not a regular file".to_owned(),
        ));
    }
    Ok(file)
}

/// The loose ref `name` in `dir`, at most [`REF_READ_CAP`] bytes.
pub(super) fn read_ref(dir: &OwnedFd, name: &CStr) -> Found {
    let file = match open_file(dir, name) {
        Ok(file) => file,
        Err(found) => return found,
    };
    let mut bytes = [0u8; REF_READ_CAP];
    // SAFETY: `bytes` is a valid buffer of its length.
    let n = unsafe { libc::read(file.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len()) };
    match usize::try_from(n) {
        Ok(n) => Found::Text(String::from_utf8_lossy(&bytes[..n]).trim().to_owned()),
        Err(_) => Found::Unreadable(format!(
            "a ref berth cannot read ({})",
            std::io::Error::last_os_error()
        )),
    }
}

impl Trail {
    /// The ref's line in the git dir's `packed-refs` (the git dir reopened and held to the
    /// node walked): a `git pack-refs --all --prune` (what `git gc` runs, and
    /// `git receive-pack` starts `gc --auto` after a push) between `git update-ref`'s exit
    /// and the read-back moves the ref just written there. Read through the git dir
    /// itself, never by the ref's path, so a write led elsewhere through a swapped
    /// directory is not found here. The whole file is read line by line (no cap: git
    /// writes it, one line per ref, and reads it whole on every ref lookup itself).
    pub(super) fn packed(&self) -> Found {
        // SAFETY: a NUL-terminated path and open flags.
        let dir = owned(unsafe { libc::open(self.git_dir.as_ptr(), DIR_FLAGS) });
        let Some(dir) = dir.filter(|dir| fstat(dir.as_raw_fd()) == Some(self.git_dir_node)) else {
            return Found::Unreadable(format!(
                "{} is no longer the git dir berth walked",
                self.git_dir_path.display()
            ));
        };
        let file = match self.open_packed_refs(&dir) {
            Ok(file) => std::fs::File::from(file),
            Err(found) => return found,
        };
        // Bytes, not text: a ref name may hold any byte from 0x80 (a branch named in
        // Latin-1), and one such line must not make the file unreadable.
        let mut lines = std::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line) {
                Ok(0) => return Found::Absent,
                Ok(_) => {}
                Err(e) => return Found::Unreadable(format!("packed-refs unreadable ({e})")),
            }
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            // `#` the header, `^` a peeled tag's target: neither names a ref.
            if let Some(space) = line.iter().position(|byte| *byte == b' ')
                && !line.starts_with(b"#")
                && !line.starts_with(b"^")
                && &line[space + 1..] == self.ref_name.as_bytes()
            {
                return Found::Text(String::from_utf8_lossy(&line[..space]).into_owned());
            }
        }
    }

    /// The git dir's `packed-refs`: the regular file, or the one a symlink there names
    /// (`git new-workdir` and Google's repo link it to the shared repository's, as they
    /// link `refs`), followed as git follows it but crossing no mount, and on the git
    /// dir's file system.
    fn open_packed_refs(&self, dir: &OwnedFd) -> Result<OwnedFd, Found> {
        let linked = || {
            let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC;
            let file =
                open_link_target(dir.as_raw_fd(), c"packed-refs", flags).map_err(|errno| {
                    // A link to nothing is no packed refs, as git reads it (`git
                    // new-workdir` links `packed-refs` whether or not the shared
                    // repository has one).
                    if errno == libc::ENOENT {
                        return Found::Absent;
                    }
                    Found::Unreadable(format!(
                        "a symlink berth cannot follow as packed-refs ({})",
                        std::io::Error::from_raw_os_error(errno)
                    ))
                })?;
            match fstat(file.as_raw_fd()) {
                Some(node) if node.kind == libc::S_IFREG && node.dev == self.git_dir_node.dev => {
                    Ok(file)
                }
                _ => Err(Found::Unreadable(
                    "a symlink to a node that is not a regular file on the git dir's file system"
                        .to_owned(),
                )),
            }
        };
        match open_file(dir, c"packed-refs") {
            Err(Found::Unreadable(_))
                if node_at(dir.as_raw_fd(), c"packed-refs").is_ok_and(Node::is_link) =>
            {
                linked()
            }
            opened => opened,
        }
    }
}
