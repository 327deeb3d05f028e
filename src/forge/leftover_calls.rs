//! The forge calls a killed daemon left running. A stopping daemon ends its own
//! ([`super::in_flight`]); a SIGKILLed one cannot, and its `gh` would run on until gh ends
//! by itself. So each call a daemon starts carries its mark in its environment (which gh's
//! own children inherit): the instance lock of the daemon's berth dir and the daemon's owner
//! stamp. Only one daemon holds an instance lock at a time, so a starting daemon that took
//! it knows every call marked with that lock and another stamp is a dead predecessor's, and
//! kills it with its process group before its first tick ([`end_leftover_calls`]).
//!
//! A parent-death signal is not used: Linux sends it when the forking *thread* ends, and the
//! blocking threads that run forge calls come and go while the daemon lives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::proc_scan;

/// The environment variable naming the instance lock of the daemon that made the call.
pub const INSTANCE_ENV: &str = "BERTH_FORGE_INSTANCE";
/// The environment variable naming that daemon's owner stamp.
pub const OWNER_ENV: &str = "BERTH_FORGE_OWNER";
/// How long [`end_leftover_calls`] waits for the killed to go.
pub const LEFTOVER_KILL_WAIT: Duration = Duration::from_secs(2);

/// The mark a daemon's forge calls carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallMark {
    instance: PathBuf,
    owner: String,
}

impl CallMark {
    /// The mark of the daemon holding the instance lock at `instance` (its path as
    /// [`crate::instance::held_here`] names it), with owner stamp `owner`.
    pub fn new(instance: &Path, owner: &str) -> CallMark {
        CallMark {
            instance: instance.to_owned(),
            owner: owner.to_owned(),
        }
    }

    /// The mark of this process, when it holds an instance lock (a daemon).
    pub fn this_daemon() -> Option<CallMark> {
        let (instance, _) = crate::instance::held_here()?;
        Some(CallMark::new(&instance, &crate::ownership::this_process()))
    }

    pub(super) fn apply(&self, command: &mut Command) {
        command
            .env(INSTANCE_ENV, &self.instance)
            .env(OWNER_ENV, &self.owner);
    }

    /// Whether an environment carries another daemon's mark on this mark's instance lock.
    fn left_by_another(&self, environ: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt as _;
        let mut same_instance = false;
        let mut other_owner = false;
        for (name, value) in proc_scan::vars(environ) {
            if name == INSTANCE_ENV.as_bytes() {
                same_instance = value == self.instance.as_os_str().as_bytes();
            } else if name == OWNER_ENV.as_bytes() {
                other_owner = value != self.owner.as_bytes();
            }
        }
        same_instance && other_owner
    }

    /// The running processes of forge calls another daemon on this instance lock started,
    /// run as this process's user: anyone can put a mark in an environment, so a daemon
    /// running as root never kills another user's process by one.
    fn leftovers(&self) -> Vec<(i32, i32)> {
        let me = nix::unistd::geteuid().as_raw();
        proc_scan::pids()
            .into_iter()
            .filter(|&pid| proc_scan::uid(pid) == Some(me))
            .filter(|&pid| match proc_scan::environ(pid) {
                proc_scan::Environ::Read(environ) => self.left_by_another(&environ),
                _ => false,
            })
            .filter_map(|pid| Some((pid, proc_scan::running_pgid(pid)?)))
            .collect()
    }
}

/// Kills (SIGKILL, with their process groups) the forge calls a dead daemon on `mine`'s
/// instance lock left running, and waits up to [`LEFTOVER_KILL_WAIT`] for them to go. Only
/// the holder of that instance lock may call it. Returns how many it killed and how many
/// still ran after the wait (stuck in the kernel; they run no more code).
pub fn end_leftover_calls(mine: &CallMark) -> (usize, usize) {
    let found = mine.leftovers();
    if found.is_empty() {
        return (0, 0);
    }
    let own_group = nix::unistd::getpgrp().as_raw();
    for &(pid, pgid) in &found {
        if pgid > 1 && pgid != own_group {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + LEFTOVER_KILL_WAIT;
    loop {
        let left = mine.leftovers().len();
        if left == 0 || Instant::now() >= deadline {
            return (found.len(), left);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_daemons_calls_on_the_same_instance_lock_are_leftovers() {
        let mine = CallMark::new(Path::new("/b/daemon.lock"), "host:1:2:/b/daemon.lock");
        let environ = |instance: &str, owner: &str| {
            format!("A=1\0{INSTANCE_ENV}={instance}\0{OWNER_ENV}={owner}\0").into_bytes()
        };
        assert!(mine.left_by_another(&environ("/b/daemon.lock", "host:9:9:/b/daemon.lock")));
        assert!(!mine.left_by_another(&environ("/b/daemon.lock", "host:1:2:/b/daemon.lock")));
        assert!(!mine.left_by_another(&environ("/c/daemon.lock", "host:9:9:/c/daemon.lock")));
        assert!(!mine.left_by_another(b"A=1\0"));
    }

    /// Anyone can put a mark in an environment: a daemon run as root kills the marked
    /// calls of its own user and leaves another user's marked process alone.
    #[test]
    fn only_this_users_marked_processes_are_killed() {
        use std::os::unix::process::CommandExt as _;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let instance = dir.path().join("daemon.lock");
        let mine = CallMark::new(&instance, "host:1:2");
        let dead = CallMark::new(&instance, "host:9:9");
        let spawn = |uid: u32| {
            let mut command = Command::new("sleep");
            command.arg("300").uid(uid).process_group(0);
            dead.apply(&mut command);
            command.spawn().unwrap()
        };
        let mut others = spawn(65534);
        let mut own = spawn(0);
        let marked = |pid: u32| matches!(proc_scan::environ(pid as i32), proc_scan::Environ::Read(e) if mine.left_by_another(&e));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(marked(others.id()) && marked(own.id())) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (killed, left) = end_leftover_calls(&mine);
        let others_runs = others.try_wait().unwrap().is_none();
        let _ = others.kill();
        let _ = others.wait();
        let own_status = own.wait().unwrap();
        assert_eq!((killed, left), (1, 0));
        assert!(others_runs, "another user's marked process was killed");
        assert!(!own_status.success(), "the own marked call was not killed");
    }
}
