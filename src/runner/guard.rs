//! A step's process group dies with berth, even when berth is SIGKILLed.
//!
//! `PR_SET_PDEATHSIG` is no answer: it fires when the *thread* that forked exits (tokio's
//! blocking threads come and go), and it reaches only the direct child, not the agent's
//! `git`, `gh` and test processes in its group. So every step gets a guard: a small process
//! forked from berth that never execs and makes only async-signal-safe system calls. It
//! holds the read end of a pipe whose only write end berth keeps (close-on-exec, so no
//! step inherits it). When berth dies for any reason the kernel closes that end, the guard
//! reads EOF, sends SIGTERM to the step's group, SIGKILL after the grace, and exits. When
//! the step ends normally berth writes one byte first: the guard exits without a signal.
//!
//! The guard sits in its own process group and ignores SIGINT, SIGTERM and SIGHUP, so a
//! Ctrl-C in berth's terminal reaches berth (which then stops the step itself), not the
//! guard. Berth dismisses the guard before it reaps the step's leader: until the leader is
//! reaped its pid cannot be reused, so the guard can never signal a stranger's group.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// A live guard over one step's process group.
#[derive(Debug)]
pub(super) struct Guard {
    pid: Pid,
    /// The only write end of the guard's pipe; `None` once dismissed.
    tell: Option<OwnedFd>,
}

impl Guard {
    /// Forks the guard for process group `pgid`: on berth's death it sends SIGTERM, waits
    /// `grace`, then SIGKILL.
    pub(super) fn spawn(pgid: Pid, grace: Duration) -> io::Result<Guard> {
        let (listen, tell) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let listen_fd = listen.as_raw_fd();
        let group = pgid.as_raw();
        let pause = libc::timespec {
            tv_sec: grace.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_nsec: grace.subsec_nanos().into(),
        };
        // SAFETY: the child runs only `guard_main`, which makes async-signal-safe system
        // calls and never returns, so nothing of the (multi-threaded) parent's state that
        // fork leaves inconsistent (locks, allocator) is touched.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => unsafe { guard_main(listen_fd, group, pause) },
            pid => {
                drop(listen);
                Ok(Guard {
                    pid: Pid::from_raw(pid),
                    tell: Some(tell),
                })
            }
        }
    }

    /// Tells the guard the step is over (it exits without signalling anything) and reaps
    /// it. Called before the step's leader is reaped.
    pub(super) fn dismiss(&mut self) {
        let Some(tell) = self.tell.take() else {
            return;
        };
        if let Err(err) = nix::unistd::write(&tell, b"x") {
            // The guard is gone already (it could only have been killed from outside);
            // closing the pipe below cannot make a dead guard signal anything.
            tracing::warn!(guard = %self.pid, "could not dismiss the step's guard: {err}");
        }
        drop(tell);
        let pid = self.pid;
        if let Ok(WaitStatus::StillAlive) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            // It exits as soon as it is scheduled; reap it off this thread.
            std::thread::spawn(move || while let Err(Errno::EINTR) = waitpid(pid, None) {});
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.dismiss();
    }
}

/// The guard's whole life. Only raw system calls: no allocation, no locks, no Rust I/O.
unsafe fn guard_main(listen: libc::c_int, pgid: libc::pid_t, grace: libc::timespec) -> ! {
    unsafe {
        libc::setpgid(0, 0);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
        close_all_but(listen);
        let mut byte = 0u8;
        loop {
            let read = libc::read(listen, (&raw mut byte).cast(), 1);
            if read == 1 {
                // Dismissed: the step ended and berth is alive to reap it.
                libc::_exit(0);
            }
            if read == -1 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            // EOF (berth is gone) or an unreadable pipe: either way nobody supervises the
            // step any more.
            break;
        }
        libc::kill(-pgid, libc::SIGTERM);
        let mut left = grace;
        while libc::nanosleep(&left, &mut left) == -1 && *libc::__errno_location() == libc::EINTR {}
        libc::kill(-pgid, libc::SIGKILL);
        libc::_exit(0)
    }
}

/// Closes every descriptor but `keep`. Other guards' pipe ends must not stay open here: a
/// guard holding another guard's write end would keep that one from ever seeing EOF.
unsafe fn close_all_but(keep: libc::c_int) {
    let keep = keep as libc::c_uint;
    unsafe {
        let below = keep == 0 || libc::syscall(libc::SYS_close_range, 0u32, keep - 1, 0u32) == 0;
        let above = libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0u32) == 0;
        if !(below && above) {
            // Kernels before 5.9 lack close_range.
            for fd in 0..65_536 {
                if fd != keep as libc::c_int {
                    libc::close(fd);
                }
            }
        }
    }
}
