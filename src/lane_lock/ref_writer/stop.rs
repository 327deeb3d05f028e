//! Stopping a `git` child of berth's at its limit, and reading what it said without
//! waiting on whoever else holds its error output.
//!
//! The child leads a process group of its own (the update-ref writer its own session), so
//! it is signalled as a group: a `git` on `PATH` may be a wrapper that runs the real git
//! as its child, which a signal to the wrapper's pid alone leaves running (hung on a FIFO,
//! holding `HEAD.lock` and the error pipe). Its error output is read up to the writer's
//! bound only: a descendant that escaped the group could hold the pipe open for good.

use std::io::{self, Read as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::libc;

/// The child's exit status, or `None` when it outlived `term_at` and was stopped: sent
/// SIGTERM then, and SIGKILL at `kill_at` if still there.
///
/// Woken by the child's exit through a pidfd (the child is unreaped, so its pid cannot
/// name another process), not by a timer: the writer runs for milliseconds and every
/// landing waits for several, so a poll interval would add to each. Where the kernel has
/// no pidfd, the child is looked at every [`super::RETRY`].
pub(super) fn wait_within(
    child: &mut std::process::Child,
    term_at: Instant,
    kill_at: Instant,
) -> io::Result<Option<std::process::ExitStatus>> {
    Ok(wait_looking(child, term_at, kill_at)?.0)
}

/// [`wait_within`], and how many times it looked at the child.
fn wait_looking(
    child: &mut std::process::Child,
    term_at: Instant,
    kill_at: Instant,
) -> io::Result<(Option<std::process::ExitStatus>, u32)> {
    let exited = pidfd_open(child.id());
    let mut termed = false;
    let mut looks = 0;
    loop {
        looks += 1;
        if let Some(status) = child.try_wait()? {
            // A writer that exits well after its SIGTERM finished its write first.
            let stopped = termed && !status.success();
            return Ok(((!stopped).then_some(status), looks));
        }
        let now = Instant::now();
        if now >= kill_at {
            signal_group(child, libc::SIGKILL);
            child.wait()?;
            return Ok((None, looks));
        }
        if now >= term_at && !termed {
            termed = true;
            signal_group(child, libc::SIGTERM);
        }
        let deadline = if termed {
            kill_at
        } else {
            term_at.min(kill_at)
        };
        match &exited {
            Some(pidfd) => wait_readable(pidfd, deadline.saturating_duration_since(now)),
            None => std::thread::sleep(super::RETRY),
        }
    }
}

/// A descriptor that turns readable when process `pid` exits; `None` where the kernel
/// offers none (before Linux 5.3) or refuses one.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just opened `fd` for us, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits until `fd` is readable, at most `wait` (rounded up to a millisecond); a signal
/// or an error just ends the wait early: the caller looks again.
fn wait_readable(fd: &impl AsRawFd, wait: Duration) {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait
        .as_micros()
        .div_ceil(1000)
        .min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, its count, and a timeout.
    unsafe { libc::poll(&raw mut poll, 1, ms) };
}

/// Sends `signal` to `child`'s process group (it leads one: the writer by `setsid`, the
/// unpacker by `process_group(0)`), and to its pid alone when there is no such group.
/// The child is unreaped, so neither its pid nor the group it leads names another's.
fn signal_group(child: &std::process::Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill takes a pid (negated: a process group) and a signal.
    unsafe {
        if libc::kill(-pid, signal) == -1 {
            libc::kill(pid, signal);
        }
    }
}

/// What `stderr` holds (at most `cap` bytes, lossily UTF-8) up to its end or `deadline`,
/// whichever comes first: what the child wrote before it exited is read at once, but a
/// process outside its group that inherited the pipe may keep it open past the child.
pub(super) fn read_within(
    stderr: std::process::ChildStderr,
    cap: u64,
    deadline: Instant,
) -> String {
    let fd = OwnedFd::from(stderr);
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut pipe = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 1024];
    while (bytes.len() as u64) < cap {
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // SAFETY: `pipe` owns this descriptor and outlives the wait.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(pipe.as_raw_fd()) };
                wait_readable(&fd, left);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// A writer that runs a while is looked at when it exits, not on a timer: a landing
    /// waits for several writers, and a timer's interval would add to each wait.
    #[test]
    fn a_writer_is_waited_for_by_its_exit_not_by_polling() {
        let mut child = Command::new("sleep").arg("0.3").spawn().unwrap();
        let far = Instant::now() + Duration::from_secs(30);
        let (status, looks) = wait_looking(&mut child, far, far).unwrap();
        assert!(status.is_some_and(|s| s.success()));
        // Once before the exit, once after; a signal may wake the wait once more.
        assert!(looks <= 3, "looked {looks} times");
    }

    #[test]
    fn a_writer_past_its_limit_is_killed() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        let (status, _) = wait_looking(&mut child, soon, soon).unwrap();
        assert!(status.is_none());
        assert!(child.try_wait().unwrap().is_some(), "the writer was reaped");
    }

    /// A child that exits while a process it started keeps the error pipe open: its output
    /// is read up to the deadline, not to an end that comes only when that process ends.
    #[test]
    fn error_output_held_by_another_process_is_read_to_the_deadline() {
        let mut child = Command::new("sh")
            .args(["-c", "echo said >&2; sleep 60 >/dev/null & echo $!; exit 1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut holder = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut holder)
            .ok();
        assert!(!child.wait().unwrap().success());
        let holder: libc::pid_t = holder.trim().parse().unwrap();
        let stderr = child.stderr.take().unwrap();
        let said = read_within(stderr, 4096, Instant::now() + Duration::from_millis(200));
        // SAFETY: kill with signal 0 only asks whether the process is there.
        let holding = unsafe { libc::kill(holder, 0) } == 0;
        // SAFETY: the holder is the test's own `sleep`.
        unsafe { libc::kill(holder, libc::SIGKILL) };
        assert_eq!(said.trim(), "said");
        assert!(holding, "the read waited for the pipe's last holder to end");
    }
}
