//! libgit2's socket timeouts (connect, and each read or write): C globals every transport
//! (git://, ssh, https) reads, so one value holds for the whole process.
//!
//! Choosing a value is pure bookkeeping; writing it into libgit2 starts libgit2, which
//! loads the system's CA bundle (~30 ms, a few MiB). So the first component constructed
//! chooses (the lane lock's configured `remote_timeout` in the daemon), and the value is
//! written just before the first network operation. A daemon that never talks to a remote
//! never starts libgit2.
//!
//! Architecture Invariant: every libgit2 network operation in berth (the lane lock's
//! transport, which also serves the landing's feature fetch and the claim check's
//! `ls-remote`, and the git forge's fetches) calls [`before_network_io`] first, where it
//! makes its remote, so the one write happens before any read of those globals, on every
//! thread.

use std::sync::{Once, OnceLock};
use std::time::Duration;

/// Connect and I/O timeouts, as chosen by the first caller of [`choose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub io: Duration,
}

static CHOSEN: OnceLock<Timeouts> = OnceLock::new();
static APPLIED: Once = Once::new();

/// Chooses `wanted` unless a component chose earlier in this process; returns the
/// timeouts in force. Does not start libgit2.
pub fn choose(wanted: Timeouts) -> Timeouts {
    *CHOSEN.get_or_init(|| wanted)
}

/// Writes the chosen timeouts into libgit2, once per process (`fallback` when nothing
/// chose). Call it before any remote operation.
pub fn before_network_io(fallback: Timeouts) {
    APPLIED.call_once(|| {
        let in_force = choose(fallback);
        let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: libgit2 documents these as unsynchronised writes to C globals. `Once`
        // makes this the only write, and every network operation passes through this
        // function first, so each read of the globals happens after the write completed.
        unsafe {
            // Both calls only store an int; their `Result` is `Ok` by construction.
            let _ =
                git2::opts::set_server_connect_timeout_in_milliseconds(millis(in_force.connect));
            let _ = git2::opts::set_server_timeout_in_milliseconds(millis(in_force.io));
        }
    });
}
