//! A `.lock` file judged a dead writer's ([`super::leftover`]) may be a live one's that
//! does not run: a `git` stopped (SIGSTOP, Ctrl-Z, a suspended laptop) or waiting on a
//! `reference-transaction` hook that hangs, with the `.lock` created and its descriptor
//! already closed, so no open file names it. Continued, that `git` renames whatever
//! `<ref>.lock` then is over the ref by name, berth's fresh one included, and reports a
//! success it did not have. So before a judged `.lock` may be removed, berth looks in
//! `/proc` for processes that could be its writer, and while one is there it removes
//! nothing: the lane waits, and the log names them.
//!
//! A possible writer points at the origin's git dir (its working directory, or for a
//! readable process the `GIT_DIR` of its environment or a `--git-dir` argument; the same
//! directory by device and inode, never by name) and is either stopped or a `git` (any
//! state: one waiting on a hung hook sleeps). A stopped process whose working directory
//! berth may not read (another user's without `CAP_SYS_PTRACE`) cannot be ruled out: it
//! counts too, named by its pid, and holds the lane only while it stays stopped. The
//! scan runs only when a `.lock` was judged dead, never on a normal write, and reads at
//! most [`MAX_PROC_ENTRIES`] `/proc` entries; a host with more is not fully seen, and
//! nothing is removed.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::leftover::Prepared;
use crate::proc_scan::{self, Environ};

/// The most `/proc` entries read for one judgement of a leftover `.lock`.
pub const MAX_PROC_ENTRIES: usize = 65_536;

/// A process that may hold a judged `.lock`.
#[derive(Debug, PartialEq, Eq)]
struct Suspect {
    pid: i32,
    comm: String,
    state: &'static str,
    stopped: bool,
    /// How it points at the origin; `None`: its working directory could not be read.
    via: Option<&'static str>,
}

/// Keeps every judged `.lock` of `prepared` in place while a process may be its writer,
/// and says who.
pub(super) fn spare(prepared: &mut Prepared) {
    if prepared.locks.iter().all(|lock| lock.leftover.is_none()) {
        return;
    }
    let Ok(git_dir) = std::fs::metadata(&prepared.git_dir) else {
        return;
    };
    let (suspects, all_seen) = scan((git_dir.dev(), git_dir.ino()));
    if suspects.is_empty() && all_seen {
        return;
    }
    let who = describe(&suspects, &prepared.git_dir, all_seen);
    for lock in &mut prepared.locks {
        if lock.leftover.take().is_some() {
            tracing::warn!(
                file = %lock.path.display(),
                "a `.lock` old enough to be a dead writer's is not removed: {who}; the lane waits until no such process is left"
            );
        }
    }
}

/// The processes that may write in the git dir `dir` (device, inode), and whether every
/// `/proc` entry was looked at.
fn scan(dir: (u64, u64)) -> (Vec<Suspect>, bool) {
    let (pids, all_seen) = proc_scan::pids_at_most(MAX_PROC_ENTRIES);
    let suspects = pids
        .into_iter()
        .filter_map(|pid| suspect(pid, dir))
        .collect();
    (suspects, all_seen)
}

fn suspect(pid: i32, dir: (u64, u64)) -> Option<Suspect> {
    let stat = proc_scan::stat(pid)?;
    let is_git = stat.comm == "git" || stat.comm.starts_with("git-");
    if stat.is_dead() || !(stat.is_stopped() || is_git) {
        return None;
    }
    let cwd = PathBuf::from(format!("/proc/{pid}/cwd"));
    let via = match std::fs::metadata(&cwd) {
        Ok(meta) if (meta.dev(), meta.ino()) == dir => Some("cwd"),
        Ok(_) => named_git_dir(pid, &cwd, dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && stat.is_stopped() => None,
        Err(_) => return None,
    };
    Some(Suspect {
        pid,
        stopped: stat.is_stopped(),
        state: stat.state_name(),
        comm: stat.comm,
        via,
    })
}

/// `Some(Some(how))` when `pid` names the git dir `dir` by `GIT_DIR` or `--git-dir`
/// (relative to its working directory `cwd`).
fn named_git_dir(pid: i32, cwd: &Path, dir: (u64, u64)) -> Option<Option<&'static str>> {
    let is_dir = |named: &[u8]| {
        let named = Path::new(OsStr::from_bytes(named));
        std::fs::metadata(cwd.join(named)).is_ok_and(|meta| (meta.dev(), meta.ino()) == dir)
    };
    if let Environ::Read(environ) = proc_scan::environ(pid)
        && proc_scan::vars(&environ).any(|(name, value)| name == b"GIT_DIR" && is_dir(value))
    {
        return Some(Some("GIT_DIR"));
    }
    let cmdline = proc_scan::cmdline(pid)?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let named = args.iter().enumerate().any(|(at, arg)| {
        arg.strip_prefix(b"--git-dir=").is_some_and(is_dir)
            || (*arg == b"--git-dir" && args.get(at + 1).is_some_and(|next| is_dir(next)))
    });
    named.then_some(Some("--git-dir"))
}

/// `pid N (git, stopped, cwd <origin>)` for each, the fix for the stopped ones, and what
/// was not seen.
fn describe(suspects: &[Suspect], git_dir: &Path, all_seen: bool) -> String {
    let said: Vec<String> = suspects
        .iter()
        .map(|s| match s.via {
            Some(via) => format!(
                "pid {} ({}, {}, {via} {})",
                s.pid,
                s.comm,
                s.state,
                git_dir.display()
            ),
            None => format!(
                "pid {} ({}, {}, cwd not readable by berth)",
                s.pid, s.comm, s.state
            ),
        })
        .collect();
    let stopped: Vec<String> = suspects
        .iter()
        .filter(|s| s.stopped)
        .map(|s| s.pid.to_string())
        .collect();
    let mut who = if said.is_empty() {
        String::new()
    } else {
        format!("it may be the writer of {}", said.join(", "))
    };
    if !stopped.is_empty() {
        who.push_str(&format!(
            "; continue it (`kill -CONT {}`) or end it",
            stopped.join(" ")
        ));
    }
    if !all_seen {
        who.push_str(&format!(
            "{}more than {MAX_PROC_ENTRIES} processes run, so not every possible writer was looked at",
            if who.is_empty() { "" } else { "; " }
        ));
    }
    who
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_process_in_the_git_dir_is_a_suspect_and_a_running_shell_not() {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        let id = (meta.dev(), meta.ino());
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let running = suspect(pid, id);
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !proc_scan::stat(pid).is_some_and(|stat| stat.is_stopped()) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        let stopped = suspect(pid, id);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(running, None);
        let stopped = stopped.expect("a stopped process in the git dir");
        assert_eq!(stopped.via, Some("cwd"));
        let said = describe(&[stopped], dir.path(), true);
        assert!(
            said.contains(&format!(
                "pid {pid} (sleep, stopped, cwd {})",
                dir.path().display()
            )),
            "{said}"
        );
        assert!(said.contains(&format!("kill -CONT {pid}")), "{said}");
    }
}
