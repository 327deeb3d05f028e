//! Who holds a file's `flock`, as `/proc/locks` tells, for the message that says why a
//! lane waits: the holder's pid, name and state ("stopped" is the one an operator fixes).

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::proc_scan::{self, stat};

/// The most of `/proc/locks` read (one line per lock on the host).
const PROC_LOCKS_CAP: u64 = 1 << 20;

/// Each `flock` holder of `path` that `/proc/locks` shows, as `pid N (name, state)`, and
/// the operator's fix when one is stopped; what to look at when none is shown.
pub(super) fn describe(path: &Path) -> String {
    let holders = std::fs::metadata(path)
        .ok()
        .map(|meta| holders(&read_proc_locks(), meta.dev(), meta.ino()))
        .unwrap_or_default();
    if holders.is_empty() {
        return format!(
            "by a process /proc/locks does not show (another pid namespace?): `fuser -v {}` names it",
            path.display()
        );
    }
    let named: Vec<String> = holders
        .iter()
        .map(|&pid| proc_scan::describe(pid as i32))
        .collect();
    let stopped: Vec<String> = holders
        .iter()
        .filter(|&&pid| stat(pid as i32).is_some_and(|stat| stat.is_stopped()))
        .map(u32::to_string)
        .collect();
    let fix = if stopped.is_empty() {
        String::new()
    } else {
        format!(
            "; it is stopped: continue it (`kill -CONT {}`) or end it",
            stopped.join(" ")
        )
    };
    format!("by {}{fix}", named.join(", "))
}

fn read_proc_locks() -> String {
    let mut text = String::new();
    if let Ok(file) = std::fs::File::open("/proc/locks") {
        let _ = file.take(PROC_LOCKS_CAP).read_to_string(&mut text);
    }
    text
}

/// The pids holding (not waiting for) a `FLOCK` on the file `dev`/`ino`, from the text of
/// `/proc/locks` (`1: FLOCK  ADVISORY  WRITE 4242 08:01:131 0 EOF`; a waiter's line has
/// `->` after the number).
fn holders(proc_locks: &str, dev: u64, ino: u64) -> Vec<u32> {
    let file = format!(
        "{:02x}:{:02x}:{ino}",
        nix::libc::major(dev),
        nix::libc::minor(dev)
    );
    let mut pids: Vec<u32> = proc_locks
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            (fields.next()? == "FLOCK").then_some(())?;
            let pid = fields.nth(2)?.parse().ok()?;
            (fields.next()? == file).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_read_from_proc_locks_lines() {
        let dev = 0x0801;
        let text = "1: FLOCK  ADVISORY  WRITE 4242 08:01:131 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 4343 08:01:131 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 77 08:01:131 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 99 08:01:132 0 EOF\n";
        assert_eq!(holders(text, dev, 131), [4242]);
    }

    #[test]
    fn a_stopped_holder_is_named_with_the_fix() {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.lock");
        std::fs::write(&path, "").unwrap();
        use std::os::unix::process::CommandExt as _;
        // Its own process group: `flock` forks the `sleep`, which the end kills too.
        let mut holder = std::process::Command::new("flock")
            .arg("-o")
            .arg(&path)
            .args(["sleep", "600"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = holder.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !describe(&path).contains(&format!("pid {pid} ")) {
            assert!(std::time::Instant::now() < deadline, "{}", describe(&path));
            std::thread::yield_now();
        }
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
        while !stat(pid as i32).is_some_and(|stat| stat.is_stopped()) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        let said = describe(&path);
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = holder.kill();
        let _ = holder.wait();
        assert!(
            said.contains(&format!("pid {pid} (flock, stopped)")),
            "{said}"
        );
        assert!(said.contains(&format!("kill -CONT {pid}")), "{said}");
    }
}
