//! An alternate's path as git resolves it (`strbuf_realpath`, which `link_alt_odb_entry`
//! calls): one component at a time from `/` (or the current directory), `.` dropped, `..`
//! taking the last component off what is already resolved, each symlink met replaced by
//! its target. git tells alternates apart by this path (`alt_odb_usable`), not by device
//! and inode, and never hands the kernel the entry as written: a relative line longer
//! than `PATH_MAX` whose `..` climb to `/` still resolves to a short path.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// How many symlinks git's `strbuf_realpath` follows in one path before it fails
/// (`MAXSYMLINKS`, checked as `num_symlinks++ > MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 32;

/// `path` as git's `strbuf_realpath` (without `REALPATH_MANY_MISSING`) resolves it: only
/// its last component may be missing; `None` where git fails (a missing or unreadable
/// earlier component, a symlink loop). Each step `lstat`s only the path resolved so far,
/// which holds no symlink and no `..`.
pub(super) fn of(path: &Path) -> Option<PathBuf> {
    let mut resolved = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().ok()?
    };
    let mut remaining = components(path.as_os_str().as_bytes());
    let mut links = 0;
    while let Some(next) = remaining.pop_front() {
        match next.as_slice() {
            b"." => continue,
            b".." => {
                resolved.pop();
                continue;
            }
            _ => resolved.push(OsStr::from_bytes(&next)),
        }
        let meta = match std::fs::symlink_metadata(&resolved) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound && remaining.is_empty() => break,
            Err(_) => return None,
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS + 1 {
            return None;
        }
        let target = std::fs::read_link(&resolved).ok()?;
        if target.is_absolute() {
            resolved = PathBuf::from("/");
        } else {
            resolved.pop();
        }
        let mut ahead = components(target.as_os_str().as_bytes());
        ahead.extend(remaining);
        remaining = ahead;
    }
    Some(resolved)
}

/// The non-empty components of `path`, split at '/' as git's `get_next_component` does.
fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|part| !part.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `..` climbs what is resolved (a symlink's target, not its name), a relative
    /// symlink resolves beside itself, only the last component may be missing, and a
    /// path far longer than `PATH_MAX` resolves where its climb ends.
    #[test]
    fn a_path_resolves_component_by_component_as_git_does() {
        let dir = tempfile::tempdir().unwrap();
        let base = of(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        std::os::unix::fs::symlink(base.join("a/b"), base.join("abs")).unwrap();
        std::os::unix::fs::symlink("a/b", base.join("rel")).unwrap();
        assert_eq!(of(&base.join("abs/../b")), Some(base.join("a/b")));
        assert_eq!(of(&base.join("rel/./")), Some(base.join("a/b")));
        assert_eq!(of(&base.join("a//missing")), Some(base.join("a/missing")));
        assert_eq!(of(&base.join("missing/b")), None);
        std::os::unix::fs::symlink("loop", base.join("loop")).unwrap();
        assert_eq!(of(&base.join("loop")), None);
        let climb = "../".repeat(2000);
        let long = base.join(format!("{climb}{}", base.join("a").display()));
        assert!(long.as_os_str().len() > 4096);
        assert_eq!(of(&long), Some(base.join("a")));
    }
}
