//! Whether a process of this pid namespace still runs, as far as this process can tell.
//!
//! `/proc` is not a faithful witness: it may hide other users' processes (`hidepid=2`,
//! systemd's `ProtectProc=invisible`), belong to another pid namespace, or refuse a read.
//! Nothing `/proc` says is believed unless it shows this process under its own pid and in
//! no other pid namespace (`NStgid` of `/proc/self/status`): a `/proc` of an ancestor
//! namespace (`unshare -p` without `--mount-proc`) numbers processes differently, and its
//! entry for a pid is another process. A pid is proven gone only when, besides, its entry
//! is absent and `kill(pid, 0)` answers `ESRCH` (the kernel's own word, which no mount
//! option hides). Anything else that fails to show the process is [`Seen::Unknown`],
//! never gone.

use std::io;

use nix::errno::Errno;
use nix::unistd::Pid;

/// What berth can tell about a pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// It runs, started at `start_ticks` (clock ticks since boot, `/proc/<pid>/stat`
    /// field 22), which tells it apart from a later process given the same pid.
    Running { start_ticks: u64 },
    /// Proven: no process has this pid in this pid namespace.
    Gone,
    /// It may run: something hides it, and why.
    Unknown(String),
}

/// Looks `pid` up in `/proc`, and asks the kernel when `/proc` does not show it.
pub fn probe(pid: u32) -> Seen {
    // Pid 0 and negative values make `kill` address process groups: never a process.
    let Ok(raw) = i32::try_from(pid) else {
        return Seen::Unknown(format!("{pid} is not a pid"));
    };
    if raw == 0 {
        return Seen::Unknown("0 is not a pid".into());
    }
    if !proc_is_this_namespace() {
        return Seen::Unknown("/proc is not this pid namespace's, or hides this process".into());
    }
    let absent = match start_ticks(pid) {
        Ok(start_ticks) => return Seen::Running { start_ticks },
        Err(e) => {
            // A process exiting while its `stat` is read answers ESRCH.
            e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(Errno::ESRCH as i32)
        }
    };
    if !absent {
        return Seen::Unknown(format!("/proc/{pid}/stat cannot be read"));
    }
    match nix::sys::signal::kill(Pid::from_raw(raw), None) {
        Err(Errno::ESRCH) => Seen::Gone,
        Ok(()) => Seen::Unknown(format!("pid {pid} runs but /proc does not show it")),
        Err(Errno::EPERM) => {
            Seen::Unknown(format!("pid {pid} runs as another user and /proc hides it"))
        }
        Err(e) => Seen::Unknown(format!("pid {pid} cannot be asked about: {e}")),
    }
}

/// Field 22 of `/proc/<pid>/stat`: the process start time in clock ticks since boot.
pub fn start_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat");
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let after_name = stat
        .rfind(')')
        .and_then(|end| stat.get(end + 2..))
        .ok_or_else(malformed)?;
    after_name
        .split(' ')
        .nth(19)
        .and_then(|ticks| ticks.parse().ok())
        .ok_or_else(malformed)
}

/// Whether `/proc` is mounted for this process's pid namespace and shows it: its
/// `NStgid` (the pid in the `/proc`'s namespace, then in each nested one) is exactly this
/// process's pid.
pub(crate) fn proc_is_this_namespace() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|status| only_pid_is(&status, std::process::id()))
}

/// Whether the `NStgid:` line of a `/proc/<pid>/status` lists `pid` and nothing else.
fn only_pid_is(status: &str, pid: u32) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("NStgid:"))
        .is_some_and(|ids| ids.split_whitespace().eq([pid.to_string().as_str()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_reaped_child_is_gone() {
        let me = std::process::id();
        assert_eq!(
            probe(me),
            Seen::Running {
                start_ticks: start_ticks(me).unwrap()
            }
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(probe(pid), Seen::Gone);
    }

    #[test]
    fn a_proc_of_another_namespace_is_not_believed() {
        assert!(only_pid_is("Name:\tberth\nNStgid:\t42\n", 42));
        // This process seen from an ancestor namespace's /proc: pid 9042 there, 42 here.
        assert!(!only_pid_is("Name:\tberth\nNStgid:\t9042\t42\n", 42));
        assert!(!only_pid_is("Name:\tberth\nNStgid:\t7\n", 42));
        assert!(!only_pid_is("Name:\tberth\n", 42));
        assert!(proc_is_this_namespace());
    }

    #[test]
    fn group_addresses_are_never_probed() {
        assert!(matches!(probe(0), Seen::Unknown(_)));
        assert!(matches!(probe(u32::MAX), Seen::Unknown(_)));
    }
}
