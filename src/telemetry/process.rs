//! What the process itself costs, read when a scrape asks: CPU seconds, resident memory,
//! open descriptors and their limit. A figure the platform does not give is left out.

use nix::sys::resource::{UsageWho, getrusage};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time since start.
    pub cpu_seconds: Option<f64>,
    /// Resident set size now (Linux: `VmRSS`).
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

pub fn sample() -> ProcessStats {
    let cpu_seconds = getrusage(UsageWho::RUSAGE_SELF).ok().map(|usage| {
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        seconds(usage.user_time()) + seconds(usage.system_time())
    });
    ProcessStats {
        cpu_seconds,
        resident_bytes: resident_bytes(),
        open_fds: crate::open_files::open_count(),
        max_fds: crate::open_files::soft_limit(),
    }
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_running_process_has_cpu_memory_and_descriptors() {
        let stats = super::sample();
        assert!(stats.cpu_seconds.is_some_and(|s| s > 0.0));
        assert!(stats.open_fds.is_some_and(|n| n >= 3));
        assert!(stats.max_fds.is_some_and(|n| n >= stats.open_fds.unwrap()));
        if cfg!(target_os = "linux") {
            assert!(stats.resident_bytes.is_some_and(|b| b > 1024 * 1024));
        }
    }
}
