//! When a pack in an origin's `objects/pack/` holding an object was last written.
//!
//! git and libgit2 freshen an object they are asked to write again by touching the first
//! copy they find, and both look in the packs first: an object both packed and loose (a
//! `git repack -a` without `-d`, a loose copy left from before it was packed) has its
//! pack's time moved and its loose copy's left alone. A pack is found holding the object
//! through its `.idx` (format version 2, or the old version 1): the fan-out table, then a
//! binary search of the sorted object names, each read on its own (at most 1 KiB and 32
//! names of a file of any size).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::SystemTime;

use git2::Oid;

use crate::hostile_file;

/// How many entries of `objects/pack/` are read looking for a pack holding the object
/// (a repository git keeps gc'd has a few packs; each pack has two to four files).
pub(super) const MAX_PACK_DIR_ENTRIES: usize = 4096;

/// Version 2 `.idx` files start with this, then the version.
const IDX_V2_MAGIC: [u8; 4] = [0xff, b't', b'O', b'c'];
const FANOUT_BYTES: u64 = 256 * 4;
const NAME_BYTES: usize = 20;

/// The newest time of a `.pack` in `objects`'s `pack/` whose index holds `oid`; `None`
/// when none is found among the first [`MAX_PACK_DIR_ENTRIES`] entries (or there is no
/// `pack/`). An index or pack that cannot be read counts as not holding it.
pub(super) fn newest_pack_holding(objects: &Path, oid: Oid) -> Option<SystemTime> {
    let dir = objects.join("pack");
    let entries = std::fs::read_dir(&dir).ok()?;
    let mut newest = None;
    for entry in entries.take(MAX_PACK_DIR_ENTRIES).flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".idx")) else {
            continue;
        };
        if !index_holds(&dir.join(&name), oid).unwrap_or(false) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(dir.join(format!("{stem}.pack"))) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        if let Ok(written) = meta.modified() {
            newest = newest.max(Some(written));
        }
    }
    newest
}

/// Whether the pack index at `path` lists `oid`.
fn index_holds(path: &Path, oid: Oid) -> io::Result<bool> {
    let (file, meta) = hostile_file::open_regular(path, u64::MAX)?;
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head, 0)?;
    // Where the fan-out table starts, where the names start, the stride between them and
    // each name's offset in its entry (version 1 entries are an offset, then the name).
    let (fanout_at, stride, name_in_entry) = if head[..4] == IDX_V2_MAGIC {
        if head[4..] != 2u32.to_be_bytes() {
            return Ok(false);
        }
        (8u64, NAME_BYTES as u64, 0u64)
    } else {
        (0, 4 + NAME_BYTES as u64, 4)
    };
    let names_at = fanout_at + FANOUT_BYTES;
    let first = oid.as_bytes()[0];
    let count_below = |byte: u8| -> io::Result<u64> { fanout(&file, fanout_at, byte) };
    let (mut lo, mut hi) = (
        if first == 0 {
            0
        } else {
            count_below(first - 1)?
        },
        count_below(first)?,
    );
    let total = count_below(0xff)?;
    if hi < lo || total.saturating_mul(stride) > meta.len().saturating_sub(names_at) {
        return Ok(false);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let mut name = [0u8; NAME_BYTES];
        file.read_exact_at(&mut name, names_at + mid * stride + name_in_entry)?;
        match name.as_slice().cmp(oid.as_bytes()) {
            std::cmp::Ordering::Equal => return Ok(true),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    Ok(false)
}

/// The fan-out table's entry for `byte`: how many names start with a byte up to it.
fn fanout(file: &File, fanout_at: u64, byte: u8) -> io::Result<u64> {
    let mut entry = [0u8; 4];
    file.read_exact_at(&mut entry, fanout_at + u64::from(byte) * 4)?;
    Ok(u64::from(u32::from_be_bytes(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object git packed is found in its pack (version 2 and version 1 indexes); one
    /// it did not pack is not.
    #[test]
    fn a_packed_object_is_found_through_its_index() {
        for version in ["2", "1"] {
            let dir = tempfile::tempdir().unwrap();
            let repo = git2::Repository::init_bare(dir.path()).unwrap();
            let odb = repo.odb().unwrap();
            let packed: Vec<Oid> = (0..40)
                .map(|n| odb.write(git2::ObjectType::Blob, format!("{n}").as_bytes()))
                .collect::<Result<_, _>>()
                .unwrap();
            let loose = odb.write(git2::ObjectType::Blob, b"loose").unwrap();
            let list: String = packed.iter().map(|oid| format!("{oid}\n")).collect();
            let index_version = format!("--index-version={version}");
            crate::lane_lock::tests::git_fed(
                dir.path(),
                &["pack-objects", "-q", &index_version, "objects/pack/pack"],
                &list,
            );
            let objects = dir.path().join("objects");
            for oid in &packed {
                assert!(
                    newest_pack_holding(&objects, *oid).is_some(),
                    "v{version} {oid}"
                );
            }
            assert!(newest_pack_holding(&objects, loose).is_none(), "v{version}");
        }
    }
}
