//! A step's process group dies with berth, even when berth is SIGKILLed, and stops when
//! its lease runs out, even when berth is stopped or suspended.
//!
//! `PR_SET_PDEATHSIG` is no answer: it fires when the *thread* that forked exits (tokio's
//! blocking threads come and go), and it reaches only the direct child, not the agent's
//! `git`, `gh` and test processes in its group. So every step gets a guard: a small process
//! forked from berth that never execs and makes only async-signal-safe system calls. It
//! holds the read end of a pipe whose only write end berth keeps (close-on-exec, so no
//! step inherits it). When berth dies for any reason the kernel closes that end, the guard
//! reads EOF, sends SIGTERM to the step's group, SIGKILL after the grace, and exits. When
//! the step ends (its group killed by berth) berth writes [`STOP`] first: the guard signals
//! no group, only what carries the step's mark, and exits.
//!
//! The guard also holds the landing's lease deadline ([`super::lease`]) in a `timerfd` on
//! `CLOCK_BOOTTIME`, which fires on time across a suspend. When it fires the guard stops
//! the group (SIGTERM, SIGKILL after the lease's grace) and exits with [`LEASE_EXIT`]; a
//! running berth extends the deadline down the pipe after each heartbeat. Messages are
//! [`MESSAGE_LEN`] bytes, written whole (a pipe write under `PIPE_BUF` is atomic).
//!
//! A child that left the step's group (`setsid`, a `git gc` git detached) is out of the
//! group's reach; it still carries the step's landing mark, so whenever the guard stops the
//! group (berth died, the lease ran out) or is told the step is over ([`STOP`]: it ended,
//! or berth dropped it) it SIGKILLs every process carrying that step's mark (record, owner
//! and step number: never the next step's, [`super::marked`]), and holds the daemon's
//! instance lock until they are gone. It does so at once on [`STOP`], on its own: berth may
//! be paused or dropping the step while it drains the output such a process holds open,
//! and from the step's end until that process is dead nothing else fences it.
//!
//! The guard sits in its own process group and ignores SIGINT, SIGTERM and SIGHUP, so a
//! Ctrl-C in berth's terminal reaches berth (which then stops the step itself), not the
//! guard. Berth sends [`STOP`] before it reaps the step's leader: until the leader is
//! reaped its pid cannot be reused, so the guard can never signal a stranger's group.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::marked::{Mark, kill_marked};
use crate::boot_clock::BootTime;

/// One message on the guard's pipe: a tag byte and a big-endian `i64`.
const MESSAGE_LEN: usize = 9;
/// "The step is over (ended or dropped) and its group killed": end its marked processes,
/// signal nothing else (the leader may be reaped by now, its group id free for another),
/// and exit.
const STOP: u8 = b's';
/// "The lease now ends at `CLOCK_BOOTTIME` nanoseconds N".
const EXTEND: u8 = b'd';
/// "The step runs as process group N".
const GROUP: u8 = b'g';
/// After its SIGKILL, how long the guard waits for the group to be gone; and how often it
/// looks (during the SIGTERM grace too).
const GROUP_GONE_WAIT: Duration = Duration::from_secs(1);
const GROUP_GONE_POLL: Duration = Duration::from_millis(10);
/// The guard's process name (`comm`): without "berth" in it, so the commands an operator
/// aims at the daemon by name (`pkill -STOP berth`, `pkill berth`, `killall berth`) leave
/// the guard to stop the step at its lease or at the daemon's death.
const GUARD_NAME: &std::ffi::CStr = c"lease-guard";
/// The guard's exit status when it stopped the group because the lease ran out.
pub(super) const LEASE_EXIT: i32 = 3;

/// When the guard stops the group on its own: never (only when berth dies), or at a
/// lease deadline with its own SIGTERM-to-SIGKILL grace.
#[derive(Debug, Clone, Copy)]
pub(super) struct LeaseEnd {
    pub deadline: BootTime,
    pub grace: Duration,
}

/// A live guard over one step's process group.
#[derive(Debug)]
pub(super) struct Guard {
    pid: Pid,
    /// The only write end of the guard's pipe; `None` once stopped.
    tell: Option<OwnedFd>,
}

impl Guard {
    /// Forks the guard of a step about to start, marked `mark`: on berth's death it sends
    /// the step's group ([`Guard::watch_group`]) SIGTERM, waits `grace`, then SIGKILL; at
    /// `lease`'s deadline, the same with the lease's grace. Either way it then kills
    /// whatever carries the step's `mark` ([`kill_marked`]), and only that while it has
    /// not been told the group yet.
    ///
    /// Forked before the step is spawned, so no instant of the step is unguarded: a berth
    /// stopped or killed right after the spawn still has its step stopped.
    pub(super) fn spawn(
        grace: Duration,
        lease: Option<LeaseEnd>,
        mark: &Mark,
    ) -> io::Result<Guard> {
        let (listen, tell) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let timer = boot_timer()?;
        let (deadline, lease_grace) = match lease {
            Some(lease) => (lease.deadline.as_nanos(), timespec(lease.grace)),
            None => (i64::MAX, timespec(grace)),
        };
        let kills = Kills {
            grace: timespec(grace),
            lease_grace,
            berth: nix::unistd::getpid().as_raw(),
            berth_group: nix::unistd::getpgrp().as_raw(),
            mark,
        };
        // The instance lock stays open (and so held) while the fork runs.
        let forked = crate::instance::with_held_fd(|instance_lock| {
            let fds = GuardFds {
                listen: listen.as_raw_fd(),
                timer: timer.as_raw_fd(),
                instance_lock: instance_lock.unwrap_or(-1),
            };
            // SAFETY: the child runs only `guard_main`, which makes async-signal-safe
            // system calls and never returns, so nothing of the (multi-threaded) parent's
            // state that fork leaves inconsistent (locks, allocator) is touched.
            match unsafe { libc::fork() } {
                0 => unsafe { guard_main(fds, &kills, deadline) },
                pid => pid,
            }
        });
        match forked {
            -1 => Err(io::Error::last_os_error()),
            pid => {
                drop(listen);
                drop(timer);
                Ok(Guard {
                    pid: Pid::from_raw(pid),
                    tell: Some(tell),
                })
            }
        }
    }

    /// Tells the guard the step's process group. An error means the guard is gone: nothing
    /// fences the step, and the caller must stop it.
    pub(super) fn watch_group(&self, pgid: Pid) -> io::Result<()> {
        let tell = self
            .tell
            .as_ref()
            .ok_or_else(|| io::Error::other("the guard was already stopped"))?;
        send(tell, GROUP, pgid.as_raw().into())
    }

    /// Moves the lease deadline. An error means the guard is gone: nothing fences the
    /// step any more, and the caller must stop it.
    pub(super) fn extend(&self, deadline: BootTime) -> io::Result<()> {
        let tell = self
            .tell
            .as_ref()
            .ok_or_else(|| io::Error::other("the guard was already stopped"))?;
        send(tell, EXTEND, deadline.as_nanos())
    }

    /// Tells the guard the step is over (ended or dropped) and its group killed: it kills
    /// what still carries the step's mark (what left the group), exits, and is reaped.
    /// Called before the step's leader is reaped; later calls do nothing.
    pub(super) fn stop(&mut self) {
        let Some(tell) = self.tell.take() else {
            return;
        };
        if let Err(err) = send(&tell, STOP, 0) {
            // The guard is gone already (killed from outside, or it stopped the group at
            // the lease's end); closing the pipe below cannot make it signal anything.
            tracing::debug!(guard = %self.pid, "could not stop the step's guard: {err}");
        }
        drop(tell);
        let pid = self.pid;
        if let Ok(WaitStatus::StillAlive) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            // It exits once the marked processes are gone (at most `GROUP_GONE_WAIT`);
            // reap it off this thread.
            std::thread::spawn(move || while let Err(Errno::EINTR) = waitpid(pid, None) {});
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn send(tell: &OwnedFd, tag: u8, value: i64) -> io::Result<()> {
    let mut message = [0u8; MESSAGE_LEN];
    message[0] = tag;
    message[1..].copy_from_slice(&value.to_be_bytes());
    let written = nix::unistd::write(tell, &message)?;
    if written == MESSAGE_LEN {
        Ok(())
    } else {
        Err(io::Error::other("short write to the guard's pipe"))
    }
}

/// A `timerfd` on `CLOCK_BOOTTIME`, made before the fork so a failure is berth's to report.
fn boot_timer() -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the descriptor is owned from here on.
    let fd = unsafe {
        libc::timerfd_create(libc::CLOCK_BOOTTIME, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK)
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos().into(),
    }
}

#[derive(Clone, Copy)]
struct GuardFds {
    listen: libc::c_int,
    timer: libc::c_int,
    /// The daemon's instance lock (-1: none), kept open until the group is dead.
    instance_lock: libc::c_int,
}

struct Kills<'m> {
    /// After berth's death.
    grace: libc::timespec,
    /// At the lease's end.
    lease_grace: libc::timespec,
    /// Never killed by the mark: berth and its process group.
    berth: libc::pid_t,
    berth_group: libc::pid_t,
    /// The step's landing mark.
    mark: &'m Mark,
}

/// The guard's whole life. Only raw system calls: no allocation, no locks, no Rust I/O.
unsafe fn guard_main(fds: GuardFds, kills: &Kills<'_>, mut deadline: i64) -> ! {
    unsafe {
        libc::setpgid(0, 0);
        // Its own name ([`GUARD_NAME`]), so `ps` tells the two apart.
        libc::prctl(libc::PR_SET_NAME, GUARD_NAME.as_ptr());
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(signal, libc::SIG_IGN);
        }
        close_all_but(&mut [fds.listen, fds.timer, fds.instance_lock]);
        arm(fds.timer, deadline);
        let mut message = [0u8; MESSAGE_LEN];
        let mut have = 0usize;
        // Not known until berth has spawned the step and said so: 0.
        let mut group: libc::pid_t = 0;
        loop {
            if lease_over(deadline) {
                stop_group(kills, group, kills.lease_grace, LEASE_EXIT);
            }
            let mut polled = [
                libc::pollfd {
                    fd: fds.listen,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: fds.timer,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if libc::poll(polled.as_mut_ptr(), 2, -1) == -1 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            if polled[1].revents != 0 {
                let mut expirations = 0u64;
                libc::read(fds.timer, (&raw mut expirations).cast(), 8);
            }
            if polled[0].revents == 0 {
                continue;
            }
            let read = libc::read(
                fds.listen,
                message.as_mut_ptr().add(have).cast(),
                MESSAGE_LEN - have,
            );
            if read == -1 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if read <= 0 {
                // EOF (berth is gone) or an unreadable pipe: either way nobody supervises
                // the step any more.
                break;
            }
            have += read as usize;
            if have < MESSAGE_LEN {
                continue;
            }
            have = 0;
            match message[0] {
                STOP => {
                    end_marked(kills, false);
                    libc::_exit(0)
                }
                EXTEND => {
                    deadline = value_of(&message);
                    arm(fds.timer, deadline);
                }
                GROUP => match libc::pid_t::try_from(value_of(&message)) {
                    Ok(pgid) if pgid > 1 => group = pgid,
                    _ => break,
                },
                _ => break,
            }
        }
        stop_group(kills, group, kills.grace, 0)
    }
}

/// Whether `CLOCK_BOOTTIME` has reached `deadline` (nanoseconds); an unreadable clock
/// cannot be trusted with a lease, so it has.
unsafe fn lease_over(deadline: i64) -> bool {
    unsafe { boot_nanos() >= deadline }
}

/// Sets the timer to fire at `deadline` (absolute `CLOCK_BOOTTIME` nanoseconds); never,
/// for `i64::MAX`.
unsafe fn arm(timer: libc::c_int, deadline: i64) {
    if deadline == i64::MAX {
        return;
    }
    let value = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (deadline / 1_000_000_000).max(0),
            // A zero `it_value` would disarm the timer; a deadline at boot is long past.
            tv_nsec: (deadline % 1_000_000_000).max(1),
        },
    };
    unsafe {
        libc::timerfd_settime(
            timer,
            libc::TFD_TIMER_ABSTIME,
            &raw const value,
            std::ptr::null_mut(),
        );
    }
}

/// SIGTERM to the group, SIGKILL once `grace` is up, then the same SIGKILL to whatever
/// still carries the step's mark (what left the group), then exit with `status` once the
/// group and the marked processes are gone (or after [`GROUP_GONE_WAIT`] each): the exit
/// releases the daemon's instance lock, and with it the proof that the daemon's landings
/// are over. A group gone before its grace is up is not signalled again (its id may
/// already be another group's).
///
/// A group not known yet (0: berth stopped or died between spawning the step and saying
/// its group) is not signalled; the step's processes carry its mark from their `exec` on,
/// so the mark is looked for during the whole [`GROUP_GONE_WAIT`], to meet one that
/// `exec`s late.
unsafe fn stop_group(
    kills: &Kills<'_>,
    group: libc::pid_t,
    grace: libc::timespec,
    status: i32,
) -> ! {
    unsafe {
        if group == 0 {
            end_marked(kills, true);
            libc::_exit(status)
        }
        libc::kill(-group, libc::SIGTERM);
        let gone = wait_gone(group, grace);
        if !gone {
            libc::kill(-group, libc::SIGKILL);
        }
        end_marked(kills, false);
        if !gone {
            // Killed processes cannot run another instruction, but they exit (and drop
            // their files and locks) only once scheduled. Zombies count as members until
            // reaped, and nobody may reap them (a dead berth's orphans under an init that
            // does not), hence the bound.
            wait_gone(group, timespec(GROUP_GONE_WAIT));
        }
        libc::_exit(status)
    }
}

/// Kills what carries the step's mark until nothing does (or, `whole_wait`, all along),
/// for at most [`GROUP_GONE_WAIT`].
unsafe fn end_marked(kills: &Kills<'_>, whole_wait: bool) {
    unsafe {
        let deadline = boot_nanos().saturating_add(GROUP_GONE_WAIT.as_nanos() as i64);
        while (kill_marked(kills.mark, kills.berth, kills.berth_group) > 0 || whole_wait)
            && boot_nanos() < deadline
        {
            nap(timespec(GROUP_GONE_POLL));
        }
    }
}

/// The big-endian `i64` of a message.
fn value_of(message: &[u8; MESSAGE_LEN]) -> i64 {
    let mut value = [0u8; 8];
    value.copy_from_slice(&message[1..]);
    i64::from_be_bytes(value)
}

/// Waits up to `limit` for process group `group` to have no member; whether it has none.
unsafe fn wait_gone(group: libc::pid_t, limit: libc::timespec) -> bool {
    unsafe {
        let deadline = boot_nanos().saturating_add(
            limit
                .tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(limit.tv_nsec),
        );
        loop {
            if libc::kill(-group, 0) == -1 && *libc::__errno_location() == libc::ESRCH {
                return true;
            }
            if boot_nanos() >= deadline {
                return false;
            }
            nap(timespec(GROUP_GONE_POLL));
        }
    }
}

/// `CLOCK_BOOTTIME` in nanoseconds; `i64::MAX` (every deadline passed) if unreadable.
unsafe fn boot_nanos() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe {
        if libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut now) != 0 {
            return i64::MAX;
        }
    }
    now.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec)
}

/// Sleeps `time`, through interruptions.
unsafe fn nap(time: libc::timespec) {
    let mut left = time;
    unsafe {
        while libc::nanosleep(&left, &mut left) == -1 && *libc::__errno_location() == libc::EINTR {}
    }
}

/// Closes every descriptor but those in `keep` (negative entries are ignored). Other
/// guards' pipe ends must not stay open here: a guard holding another guard's write end
/// would keep that one from ever seeing EOF.
unsafe fn close_all_but(keep: &mut [libc::c_int]) {
    keep.sort_unstable();
    let mut first: libc::c_uint = 0;
    let mut closed = true;
    unsafe {
        for &fd in keep.iter().filter(|fd| **fd >= 0) {
            let fd = fd as libc::c_uint;
            if fd > first {
                closed &= libc::syscall(libc::SYS_close_range, first, fd - 1, 0u32) == 0;
            }
            first = fd + 1;
        }
        closed &= libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0u32) == 0;
        if !closed {
            // Kernels before 5.9 lack close_range.
            for fd in 0..65_536 {
                if !keep.contains(&fd) {
                    libc::close(fd);
                }
            }
        }
    }
}
