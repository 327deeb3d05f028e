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

/// At most `limit` of the pids `/proc` lists now (except this process's own), and whether
/// that was all of them.
pub fn pids_at_most(limit: usize) -> (Vec<i32>, bool) {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (Vec::new(), false);
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .take(limit.saturating_add(1))
        .collect();
    let all = pids.len() <= limit;
    pids.truncate(limit);
    (pids, all)
}

/// `pid`'s arguments, NUL-separated, at most [`MAX_ENVIRON_BYTES`] of them; `None` when
/// they cannot be read.
pub fn cmdline(pid: i32) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(format!("/proc/{pid}/cmdline")).ok()?;
    let mut cmdline = Vec::new();
    file.take(MAX_ENVIRON_BYTES)
        .read_to_end(&mut cmdline)
        .ok()?;
    Some(cmdline)
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

/// A process's name and state as `/proc/<pid>/stat` shows them (readable for every
/// process `/proc` lists, whoever runs it).
pub struct Stat {
    /// `comm`: the executable's name, at most 15 bytes.
    pub comm: String,
    /// Field 3: `R`, `S`, `D`, `T` (stopped), `t` (stopped by a debugger), `Z`, ...
    pub state: char,
}

impl Stat {
    /// Stopped by a signal or a debugger: it holds whatever it held until continued.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }

    /// A zombie or a dying process, which runs nothing and holds no file.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }

    /// What a log line calls its state.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            'T' => "stopped",
            't' => "stopped by a debugger",
            'Z' | 'X' => "exiting",
            _ => "running",
        }
    }
}

/// `pid`'s name and state, `None` when it is gone (or hidden).
pub fn stat(pid: i32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    Some(Stat {
        comm: stat.get(open + 1..close)?.to_owned(),
        state: stat.get(close + 2..)?.chars().next()?,
    })
}

/// `pid N (name, state)`, as a log line names a process.
pub fn describe(pid: i32) -> String {
    match stat(pid) {
        Some(stat) => format!("pid {pid} ({}, {})", stat.comm, stat.state_name()),
        None => format!("pid {pid} (?, not visible)"),
    }
}

/// The user `pid` runs as (its `/proc` entry's owner: the effective uid, root for a
/// non-dumpable process), `None` when it is gone.
pub fn uid(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|proc| proc.uid())
}
