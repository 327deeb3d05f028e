//! One `gh` child supervised to its end: both pipes drained on threads against one
//! deadline, stdout capped, and the whole process group killed on a timeout, an oversized
//! answer or the daemon's stop.

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{KILL_GRACE, POLL, STDERR_KEEP, STDOUT_LIMIT};
use crate::forge::in_flight::InFlight;

/// How a supervised child ended.
pub(super) enum Outcome {
    Exited {
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    TimedOut,
    /// The daemon is stopping ([`InFlight::stop`]).
    Stopped,
    TooLarge,
    /// Waiting for the child or reading its stdout failed (not expected for a child we own).
    Lost(std::io::Error),
}

enum Stream {
    Stdout(std::io::Result<Vec<u8>>),
    StdoutOverflow,
    Stderr(Vec<u8>),
}

/// Waits for the child and both of its pipes, against one deadline. Readers run on threads
/// so a chatty stderr cannot block stdout. On timeout or oversized stdout the whole process
/// group is killed. The call is "done" only when the child has exited *and* its pipes are
/// closed: a grandchild holding stdout open is still part of the call.
pub(super) fn supervise(child: &mut Child, timeout: Duration, in_flight: &InFlight) -> Outcome {
    let deadline = Instant::now() + timeout;
    let (tx, rx) = mpsc::channel();
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return kill_group(
            child,
            Outcome::Lost(std::io::Error::other("child started without pipes")),
        );
    };
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            // One byte past the limit tells "exactly at" from "over"; on overflow we stop
            // reading, and gh gets EPIPE instead of filling our memory.
            let msg = match (&mut out)
                .take(STDOUT_LIMIT as u64 + 1)
                .read_to_end(&mut buf)
            {
                Ok(_) if buf.len() > STDOUT_LIMIT => Stream::StdoutOverflow,
                Ok(_) => Stream::Stdout(Ok(buf)),
                Err(e) => Stream::Stdout(Err(e)),
            };
            let _ = tx.send(msg);
        });
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut err).take(STDERR_KEEP as u64).read_to_end(&mut buf);
            let _ = std::io::copy(&mut err, &mut std::io::sink());
            let _ = tx.send(Stream::Stderr(buf));
        });
    }
    drop(tx);

    let mut status = None;
    let mut stdout = None;
    let mut stderr = None;
    loop {
        if status.is_none() {
            match child.try_wait() {
                Ok(s) => status = s,
                Err(e) => return kill_group(child, Outcome::Lost(e)),
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now()).min(POLL);
        match rx.recv_timeout(wait) {
            Ok(Stream::StdoutOverflow) => return kill_group(child, Outcome::TooLarge),
            Ok(Stream::Stdout(Ok(buf))) => stdout = Some(buf),
            Ok(Stream::Stdout(Err(e))) => return kill_group(child, Outcome::Lost(e)),
            Ok(Stream::Stderr(buf)) => stderr = Some(buf),
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let (Some(status), Some(out), Some(err)) = (status, stdout.as_mut(), stderr.as_mut()) {
            return Outcome::Exited {
                status,
                stdout: std::mem::take(out),
                stderr: std::mem::take(err),
            };
        }
        if Instant::now() >= deadline {
            return kill_group(child, Outcome::TimedOut);
        }
        if in_flight.stopping() {
            return kill_group(child, Outcome::Stopped);
        }
    }
}

/// SIGTERM to the group, a short grace, then SIGKILL to the group (which also takes down
/// grandchildren that ignored SIGTERM), and reap the leader. Errors are ignored: ESRCH just
/// means everyone is already gone.
fn kill_group(child: &mut Child, outcome: Outcome) -> Outcome {
    let Ok(raw) = i32::try_from(child.id()) else {
        return outcome;
    };
    let pgid = Pid::from_raw(raw);
    let _ = killpg(pgid, Signal::SIGTERM);
    let grace_end = Instant::now() + KILL_GRACE;
    while Instant::now() < grace_end {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(POLL);
    }
    // The group id cannot be recycled while any member lives, so this reaches only our
    // stragglers; with no members left it fails harmlessly.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
    outcome
}
