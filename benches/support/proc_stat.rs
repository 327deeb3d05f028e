//! What another process has cost so far, read from `/proc/<pid>/stat` and `status`: its
//! own threads' CPU time (user + system, not its children's), which a loaded machine does
//! not inflate the way it inflates wall time, and its resident memory. Included by
//! `tick.rs` and `landing.rs`.
#![allow(dead_code)] // each bench reads what it reports

use std::time::Duration;

/// User plus system CPU time of `pid`'s threads so far (children excluded).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').expect(")") + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    Duration::from_millis(ticks * 10)
}

/// `VmRSS` of `pid`, in KiB (0 when it is not reported).
pub fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
