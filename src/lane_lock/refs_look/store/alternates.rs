//! Reading an `objects/info/alternates` file without blocking, and its lines as git or
//! libgit2 (1.9) take them: they split, unquote and resolve them differently, and berth
//! must follow the dirs each of them follows (git's writer freshens there; libgit2 opens
//! there).

use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat};

use super::Refused;

/// The most bytes of an `objects/info/alternates` file read.
pub(super) const MAX_ALTERNATES_BYTES: u64 = 64 * 1024;

/// The most bytes of `info/alternates` files, all together, one look before libgit2
/// reads: libgit2 reads every file its alternates reach, so the look must too, and
/// without a total a chain of pools sharing one 64 KiB file costs 64 KiB (and a `stat`
/// a line) per pool, up to the entries budget (2 GiB). A byte total bounds both what is
/// read and the lines stat'ed, whatever the files' shape (a bound on dirs alone still lets
/// each of them be 64 KiB); an origin borrows from a pool or a few, one short line each.
pub(in crate::lane_lock) const MAX_ALTERNATES_LOOK_BYTES: u64 = 1024 * 1024;

/// Whose reading of an `info/alternates` file.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reader {
    /// libgit2's `load_alternates`: lines split at any '\r' or '\n', none unquoted; a line
    /// starting with '.' is joined to the naming objects dir, any other taken as it
    /// stands (relative to the process's directory).
    Libgit2,
    /// git's `link_alt_odb_entries`: entries split at '\n' only, one starting with '"'
    /// C-unquoted (`parse_alt_odb_entry`), every relative one joined to the naming
    /// objects dir (by its real path: [`super::follow`] passes that).
    Git,
}

/// The objects dirs `objects/info/alternates` names, in file order, as `reader` resolves
/// them, read without blocking (a node there that is no regular file was found by the
/// look; it is not opened). What is read is taken from `budget`, the bytes left to read
/// of all the alternates files together; `Err` past it.
pub(super) fn named(
    objects: &Path,
    reader: Reader,
    budget: &mut u64,
) -> Result<Vec<PathBuf>, Refused> {
    let path = objects.join("info/alternates");
    let unreadable = |e| Refused::Unreadable(path.clone(), e);
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let fd = match openat(nix::fcntl::AT_FDCWD, path.as_path(), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(e)),
    };
    let stat = fstat(&fd).map_err(unreadable)?;
    if stat.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
        return Ok(Vec::new());
    }
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_ALTERNATES_BYTES.min(*budget) + 1)
        .read_to_end(&mut text)
        .map_err(|e| unreadable(Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))))?;
    let read = text.len() as u64;
    if read > MAX_ALTERNATES_BYTES {
        return Err(Refused::TooBig(path, MAX_ALTERNATES_BYTES));
    }
    *budget = budget
        .checked_sub(read)
        .ok_or(Refused::TooManyAlternates(path))?;
    Ok(entries(&text, reader)
        .into_iter()
        .map(|entry| {
            let alt = Path::new(std::ffi::OsStr::from_bytes(&entry));
            match reader {
                Reader::Libgit2 if entry[0] != b'.' => alt.to_owned(),
                Reader::Libgit2 | Reader::Git => objects.join(alt),
            }
        })
        .collect())
}

/// The non-empty, non-comment entries of an alternates file's `text`, as `reader` parses
/// them. Both read the file as a C string: nothing past a NUL.
fn entries(text: &[u8], reader: Reader) -> Vec<Vec<u8>> {
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    match reader {
        Reader::Libgit2 => text
            .split(|b| matches!(b, b'\r' | b'\n'))
            .filter(|line| !line.is_empty() && line[0] != b'#')
            .map(<[u8]>::to_vec)
            .collect(),
        Reader::Git => git_entries(text),
    }
}

/// git's `parse_alt_odb_entry` over the whole file: a '#' entry runs to the next '\n'
/// and names nothing; one starting with '"' is unquoted where its quoting is whole (the
/// quoted string may span a '\n', and the one byte after its closing quote, whatever it
/// is, is skipped as the separator), else taken literally to the next '\n', as any other.
fn git_entries(mut text: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    while !text.is_empty() {
        let line_end = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
        let (entry, end) = match text[0] {
            b'#' => (Vec::new(), line_end),
            b'"' => unquote_c_style(text).unwrap_or_else(|| (text[..line_end].to_vec(), line_end)),
            _ => (text[..line_end].to_vec(), line_end),
        };
        text = text.get(end + 1..).unwrap_or_default();
        if !entry.is_empty() {
            found.push(entry);
        }
    }
    found
}

/// git's `unquote_c_style`: the bytes of the C-quoted string `quoted` starts with (its
/// first byte is '"') and the index just past its closing quote; `None` where the quoting
/// is broken (no closing quote, an unknown escape, a short octal one).
fn unquote_c_style(quoted: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut at = 1;
    let mut next = || {
        let byte = quoted.get(at).copied();
        at += 1;
        byte
    };
    loop {
        match next()? {
            b'"' => break,
            b'\\' => {}
            byte => {
                out.push(byte);
                continue;
            }
        }
        let escaped = match next()? {
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            verbatim @ (b'\\' | b'"') => verbatim,
            first @ b'0'..=b'3' => {
                let octal = |digit: u8| (b'0'..=b'7').contains(&digit).then(|| digit - b'0');
                let (second, third) = (octal(next()?)?, octal(next()?)?);
                ((first - b'0') << 6) | (second << 3) | third
            }
            _ => return None,
        };
        out.push(escaped);
    }
    Some((out, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(text: &str) -> Vec<String> {
        entries(text.as_bytes(), Reader::Git)
            .into_iter()
            .map(|entry| String::from_utf8(entry).unwrap())
            .collect()
    }

    /// git unquotes an entry starting with '"' (escapes, octal, a quoted '\n'), takes one
    /// with broken quoting literally, splits at '\n' only (a '\r' is part of the path)
    /// and stops at a NUL; libgit2 unquotes nothing and splits at '\r' too.
    #[test]
    fn alternates_entries_are_split_and_unquoted_as_git_and_libgit2_do() {
        assert_eq!(
            git("\"/a b/\\\"q\\\"\\101\\n\\\\\"\n# note\n\n/plain\r\n"),
            ["/a b/\"q\"A\n\\", "/plain\r"]
        );
        assert_eq!(git("\"/spans\nlines\"\n/next"), ["/spans\nlines", "/next"]);
        // The byte after the closing quote is skipped whatever it is.
        assert_eq!(git("\"/x\"yz\n"), ["/x", "z"]);
        // A quoted string runs to its closing quote, across a '\n' too.
        assert_eq!(git("\"/a\n\"/b\n"), ["/a\n", "b"]);
        assert_eq!(
            git("\"/bad\\q\"\n/after\0/gone\n"),
            ["\"/bad\\q\"", "/after"]
        );
        assert_eq!(git("/x\n\"/unclosed\n"), ["/x", "\"/unclosed"]);
        let libgit2: Vec<_> = entries(b"\"/q\"\r/r\n#c\n./s\0/t", Reader::Libgit2);
        assert_eq!(
            libgit2,
            [b"\"/q\"".to_vec(), b"/r".to_vec(), b"./s".to_vec()]
        );
    }
}
