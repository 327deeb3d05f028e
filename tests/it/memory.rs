//! Measuring a test's own memory (its resident size and peak) in a process of its own.

use std::fs;

/// A field of `/proc/self/status` in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether this is the process the calling test's body runs in: the test binary is run
/// again filtered to `test` (its full path), so that what it measures (RSS, peak) or sets
/// process-wide (libgit2's timeouts) is its own, not shared with the tests beside it. The
/// first process waits for that one and fails with it.
pub fn in_own_process(test: &str) -> bool {
    const CHILD: &str = "BERTH_TEST_OWN_PROCESS";
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Gives back to the system what the allocator merely kept for reuse, so that RSS counts
/// live memory, and restarts the peak (`VmHWM`) from here.
pub fn trim_and_reset_peak() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe { nix::libc::malloc_trim(0) };
    fs::write("/proc/self/clear_refs", "5").unwrap();
}
