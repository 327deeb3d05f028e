//! The processes of this host's `/proc` as marked processes are found by: their pids, their
//! environment (read bounded) and their process group. A landing step's mark
//! ([`crate::runner::strays`]) and a forge call's ([`crate::forge::leftover_calls`]) are
//! variables in the environment of what berth started, which its children inherit.

/// A process's environment larger than this is not read (Linux caps argv+env at a few MiB;
/// the environment berth gives a child is far smaller).
pub const MAX_ENVIRON_BYTES: u64 = 1024 * 1024;

/// What a process's environment could be read as.
pub enum Environ {
    /// `NAME=value` entries, NUL-separated.
    Read(Vec<u8>),
    /// It exists but may not be read (another user's, a non-dumpable process).
    Unreadable,
    /// Gone, or not a process.
    Gone,
}

/// The pids `/proc` lists now, except this process's own.
pub fn pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .collect()
}

/// `pid`'s environment, at most [`MAX_ENVIRON_BYTES`] of it.
pub fn environ(pid: i32) -> Environ {
    use std::io::Read as _;
    let file = match std::fs::File::open(format!("/proc/{pid}/environ")) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Environ::Unreadable,
        Err(_) => return Environ::Gone,
    };
    let mut environ = Vec::new();
    match file.take(MAX_ENVIRON_BYTES).read_to_end(&mut environ) {
        Ok(_) => Environ::Read(environ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Environ::Unreadable,
        Err(_) => Environ::Gone,
    }
}

/// The `(name, value)` entries of an environment as [`environ`] read it.
pub fn vars(environ: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    environ.split(|&b| b == 0).filter_map(|var| {
        let eq = var.iter().position(|&b| b == b'=')?;
        Some((&var[..eq], &var[eq + 1..]))
    })
}

/// The process group of `pid`, unless it is a zombie (which runs nothing) or gone.
pub fn running_pgid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // After the name: state, ppid, pgrp.
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(2)?.parse().ok()
}

/// The user `pid` runs as (its `/proc` entry's owner: the effective uid, root for a
/// non-dumpable process), `None` when it is gone.
pub fn uid(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|proc| proc.uid())
}
