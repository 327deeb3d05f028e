//! Where a backtracking match runs: a worker process, berth's own binary started again
//! through `/proc/self/exe`, under a memory limit the kernel keeps ([`WORKER_MEMORY_BYTES`],
//! `RLIMIT_DATA`), killed when the match's deadline passes. `fancy-regex` has no bound of
//! its own on what one match holds (a lazy DFA per compiled regex, a branch per open
//! choice, a saved slot per overwritten capture: one 2.4 KB pattern held 58.9 MB) nor on
//! how long it runs (its step limit let `(?:` + `()`×80 + `(?=a)a)*c` run 1.38 s over
//! 4 KiB), so the daemon never runs one itself.
//!
//! A [`Worker`] is started at the first backtracking match it is asked for, answers every
//! match after it over one socket, and is killed and reaped when it is dropped (a tick's
//! [`Budget`](super::Budget) holds one), so no process is left while nothing matches. It
//! also dies with the thread that started it (`PR_SET_PDEATHSIG`), and ends by itself when
//! its socket closes or stays silent for [`WORKER_IDLE`].
//!
//! The protocol: a request is the pattern's length and the text's (u32, little-endian),
//! the pattern, then the text; the answer one byte, bit 0 set for a match (a step limit
//! or a pattern the engine refuses is no match) and bit 1 when the worker ends after it
//! ([`RETIRING`]). A worker that dies (past its memory limit) or is killed answers
//! nothing: that match does not match, and the next one starts a new worker.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{BACKTRACKING_WINDOW_BYTES, MAX_REWRITTEN_BYTES};

/// The private writable memory (heap, buffers, thread stacks: `RLIMIT_DATA`) a worker
/// may hold, its own start (~0.3 MB for berth's binary) included: what one backtracking match may hold, the
/// same as all compiled learned regexes together. Past it an allocation fails and the
/// worker dies: that match does not match, and its pattern is reported by index.
pub const WORKER_MEMORY_BYTES: usize = 32 * 1024 * 1024;
/// The worker's main stack (`RLIMIT_STACK`, which `RLIMIT_DATA` does not count), whatever
/// the daemon's own: the engine recurses over a pattern's nesting, at most
/// [`MAX_GROUP_NESTING`](super::MAX_GROUP_NESTING) deep.
pub const WORKER_STACK_BYTES: usize = 8 * 1024 * 1024;
/// How long a worker waits for its next request before it ends itself; a [`Worker`]
/// starts a fresh one rather than send to one idle for half of it.
pub const WORKER_IDLE: Duration = Duration::from_secs(60);
/// The argument that makes berth's binary a worker (`main` looks for it first; no command
/// of the command line has it).
pub const WORKER_ARG: &str = "--berth-learned-regex-worker";
/// How long a killed worker is waited for to be reaped; one not gone by then is tried
/// again when the [`Worker`] is dropped.
const REAP_WAIT: Duration = Duration::from_millis(200);
/// How much more memory (`RLIMIT_DATA`'s count) a worker may still hold after a match,
/// its heap trimmed, than when it started; past it the worker ends after answering, so
/// the next match finds the whole [`WORKER_MEMORY_BYTES`] whatever ran before it. glibc
/// keeps heap it cannot trim (a block still in use above freed ones): after a match whose
/// 16 lookaheads filled their lazy DFAs a worker held ~5 MB more (review 39).
pub const WORKER_HELD_SLACK_BYTES: u64 = 1024 * 1024;
/// The answer's bit that says the worker ends after it.
const RETIRING: u8 = 2;

/// How one backtracking match ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The engine answered.
    Matched(bool),
    /// The worker died during it: past [`WORKER_MEMORY_BYTES`] (or anything else that
    /// ended it).
    Died,
    /// Its deadline passed first: the worker was killed.
    Killed,
    /// No worker could be started ([`Worker::failed`] says why).
    NoWorker,
}

/// What a [`Worker`] did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Processes started.
    pub started: usize,
    pub answered: usize,
    /// Workers that ended after a match that left them holding more than
    /// [`WORKER_HELD_SLACK_BYTES`] over their start.
    pub retired: usize,
    pub died: usize,
    pub killed: usize,
}

/// Why no worker runs.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "cannot start the learned-regex worker (berth starts its own binary again through /proc/self/exe; is /proc hidden?): {0}; backtracking learned patterns do not match"
    )]
    Start(std::io::Error),
    #[error(
        "this program has no learned-regex worker (berth's binary is one; a program using berth's library names it with `worker::use_program`); backtracking learned patterns do not match"
    )]
    NoProgram,
}

/// The program started as a worker: berth's binary.
static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Makes `berth`, berth's binary, the worker of a program that is not it but runs learned
/// patterns (an integration test, a benchmark: `env!("CARGO_BIN_EXE_berth")`); without
/// it such a program's backtracking patterns do not match. The first call decides.
pub fn use_program(berth: &Path) {
    let _ = PROGRAM.set(berth.to_owned());
}

/// The worker process of one caller (a tick), started on need.
#[derive(Debug, Default)]
pub struct Worker {
    running: Option<Running>,
    /// Killed workers not yet reaped.
    unreaped: Vec<Child>,
    pub counts: Counts,
    /// Why it could not be started; it is not tried again.
    pub failed: Option<WorkerError>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    socket: UnixStream,
    /// When it last answered (or started).
    last: Instant,
}

impl Worker {
    /// Whether the rewritten `pattern` matches `text` (the end of the window already), on
    /// the worker, stopped at `until`.
    pub fn answer(&mut self, pattern: &str, text: &[u8], until: Instant) -> Answer {
        if self.failed.is_some() {
            return Answer::NoWorker;
        }
        if self
            .running
            .as_ref()
            .is_some_and(|running| running.last.elapsed() >= WORKER_IDLE / 2)
        {
            self.stop();
        }
        if self.running.is_none() {
            match start() {
                Ok(running) => {
                    self.counts.started += 1;
                    self.running = Some(running);
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    self.failed = Some(e);
                    return Answer::NoWorker;
                }
            }
        }
        let Some(running) = self.running.as_mut() else {
            return Answer::NoWorker;
        };
        match ask(&mut running.socket, pattern, text, until) {
            Ok(Reply { hit, retiring }) => {
                running.last = Instant::now();
                self.counts.answered += 1;
                if retiring {
                    self.stop();
                    self.counts.retired += 1;
                }
                Answer::Matched(hit)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.stop();
                self.counts.killed += 1;
                Answer::Killed
            }
            Err(_) => {
                self.stop();
                self.counts.died += 1;
                Answer::Died
            }
        }
    }

    /// The running worker's process id, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|running| running.child.id())
    }

    /// Kills the running worker and reaps it (it may have died already).
    fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            self.unreaped.push(running.child);
        }
        self.unreaped.retain_mut(|child| !reaped(child));
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
        for child in &self.unreaped {
            tracing::warn!(
                pid = child.id(),
                "a killed learned-regex worker was not gone after {} ms; it is left to the system to reap",
                REAP_WAIT.as_millis()
            );
        }
    }
}

/// Waits up to [`REAP_WAIT`] for a killed `child` to be gone; whether it is.
fn reaped(child: &mut Child) -> bool {
    let until = Instant::now() + REAP_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= until => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// A worker's answer to one request.
struct Reply {
    hit: bool,
    /// The worker ends after it.
    retiring: bool,
}

/// Sends one request and reads its one-byte answer, both before `until`.
fn ask(
    socket: &mut UnixStream,
    pattern: &str,
    text: &[u8],
    until: Instant,
) -> std::io::Result<Reply> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ErrorKind::TimedOut.into());
    }
    socket.set_write_timeout(Some(left))?;
    socket.set_read_timeout(Some(left))?;
    let length = |bytes: usize| u32::try_from(bytes).unwrap_or(u32::MAX).to_le_bytes();
    let mut request = Vec::with_capacity(8 + pattern.len() + text.len());
    request.extend(length(pattern.len()));
    request.extend(length(text.len()));
    request.extend(pattern.as_bytes());
    request.extend(text);
    send_all(socket, &request)?;
    let mut answer = [0u8];
    socket.read_exact(&mut answer)?;
    if answer[0] & !(1 | RETIRING) != 0 {
        return Err(ErrorKind::InvalidData.into());
    }
    Ok(Reply {
        hit: answer[0] & 1 == 1,
        retiring: answer[0] & RETIRING != 0,
    })
}

/// Writes all of `bytes` to `socket` without SIGPIPE: a command that restored its default
/// disposition (`berth detect`) would die of a worker gone; it gets `EPIPE` instead.
fn send_all(socket: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use nix::libc;
    use std::os::fd::AsRawFd as _;
    while !bytes.is_empty() {
        // SAFETY: the pointer and length are `bytes`', and the descriptor is the socket's,
        // open for the whole call.
        let sent = unsafe {
            libc::send(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        match usize::try_from(sent) {
            Ok(sent) => bytes = &bytes[sent..],
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// A worker process, its memory limited before it runs anything.
fn start() -> Result<Running, WorkerError> {
    let mut command = worker_command()?;
    let (ours, theirs) = UnixStream::pair().map_err(WorkerError::Start)?;
    let parent = nix::unistd::getpid();
    command
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the closure makes only system calls (getrlimit,
    // setrlimit, prctl, getppid) and allocates nothing.
    unsafe {
        command.pre_exec(move || limit_this_process(parent));
    }
    let child = command.spawn().map_err(WorkerError::Start)?;
    Ok(Running {
        child,
        socket: ours,
        last: Instant::now(),
    })
}

/// In the worker before it runs: its memory and stack limits (lower ones the daemon was
/// given stay), no core file when it dies of them, and death with the thread that started
/// it (checked after, in case that already happened).
fn limit_this_process(parent: nix::unistd::Pid) -> std::io::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    for (resource, bytes) in [
        (Resource::RLIMIT_DATA, WORKER_MEMORY_BYTES),
        (Resource::RLIMIT_STACK, WORKER_STACK_BYTES),
        (Resource::RLIMIT_CORE, 0),
    ] {
        let (_, hard) = getrlimit(resource)?;
        let limit = (bytes as u64).min(hard);
        setrlimit(resource, limit, limit)?;
    }
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid() != parent {
        return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
    }
    Ok(())
}

/// berth's binary as a worker ([`PROGRAM`]).
#[cfg(not(test))]
fn worker_command() -> Result<Command, WorkerError> {
    let mut command = Command::new(PROGRAM.get().ok_or(WorkerError::NoProgram)?);
    command.arg(WORKER_ARG);
    Ok(command)
}

/// Under `cargo test` the running binary is the test harness: it runs the one test that
/// serves as the worker.
#[cfg(test)]
fn worker_command() -> Result<Command, WorkerError> {
    let mut command = Command::new("/proc/self/exe");
    command
        .args([
            tests::WORKER_TEST,
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env(tests::WORKER_ENV, "1");
    Ok(command)
}

/// berth's `main`, before anything else: when started as a worker ([`WORKER_ARG`] first)
/// serves the requests on its stdin until it closes; else makes this binary, as it runs
/// now, its workers' program (`/proc/self/exe` is the running file even once an upgrade
/// replaced it on disk, so the worker speaks this protocol) and returns `None`.
pub fn serve_if_started_as_one() -> Option<ExitCode> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|first| first == WORKER_ARG)
    {
        return Some(serve());
    }
    use_program(Path::new("/proc/self/exe"));
    None
}

/// Answers the requests on stdin (a socket, both ways) until it closes, stays silent for
/// [`WORKER_IDLE`], or sends what no request is.
fn serve() -> ExitCode {
    let Ok(stdin) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return ExitCode::from(2);
    };
    let socket = UnixStream::from(stdin);
    // Fails unless stdin is a socket: a worker started by hand from a terminal ends here.
    if socket.set_read_timeout(Some(WORKER_IDLE)).is_err() {
        return ExitCode::from(2);
    }
    give_back_what_each_match_frees();
    match serve_on(socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}

/// One request at a time: read whole (within the caps), built, matched, answered; after
/// a match that left it holding more than [`WORKER_HELD_SLACK_BYTES`] over its start (or
/// when what it holds cannot be read) it says so in the answer and ends.
fn serve_on(mut socket: UnixStream) -> std::io::Result<()> {
    let mut pattern = Vec::new();
    let mut text = Vec::new();
    let at_start = data_bytes();
    loop {
        let mut lengths = [0u8; 8];
        match socket.read_exact(&mut lengths) {
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            other => other?,
        }
        let [p0, p1, p2, p3, t0, t1, t2, t3] = lengths;
        let pattern_len = u32::from_le_bytes([p0, p1, p2, p3]) as usize;
        let text_len = u32::from_le_bytes([t0, t1, t2, t3]) as usize;
        // Never read more than a loaded pattern and a window can be.
        if pattern_len > MAX_REWRITTEN_BYTES || text_len > BACKTRACKING_WINDOW_BYTES {
            return Err(ErrorKind::InvalidData.into());
        }
        pattern.resize(pattern_len, 0);
        text.resize(text_len, 0);
        socket.read_exact(&mut pattern)?;
        socket.read_exact(&mut text)?;
        let hit = std::str::from_utf8(&pattern).is_ok_and(|pattern| {
            super::backtracking::build(pattern)
                .is_ok_and(|regex| regex.is_match(text.as_slice()).unwrap_or(false))
        });
        trim_the_heap();
        let holds_more = match (at_start, data_bytes()) {
            (Some(start), Some(now)) => now > start + WORKER_HELD_SLACK_BYTES,
            _ => true,
        };
        let retiring = if holds_more { RETIRING } else { 0 };
        socket.write_all(&[u8::from(hit) | retiring])?;
        if holds_more {
            return Ok(());
        }
    }
}

/// The memory `RLIMIT_DATA` counts that this process holds now (with its stack:
/// `/proc/self/statm`'s data field), `None` when it cannot be read.
fn data_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(5)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    Some(pages * u64::try_from(page).ok()?)
}

/// Makes every large block glibc's malloc hands out its own mapping, returned to the
/// kernel when freed, instead of heap it keeps (its default threshold grows with the
/// blocks freed): a match must find the whole [`WORKER_MEMORY_BYTES`] whatever the
/// matches before it held, or its answer would depend on them (review 38: one that
/// matched on a fresh worker died after another).
fn give_back_what_each_match_frees() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; the worker is single-threaded here.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

/// Returns the free memory at the top of the heap to the kernel after a match.
fn trim_the_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Blocks at least this large get a mapping of their own in the worker (glibc's default
/// before it adapts).
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD_BYTES: nix::libc::c_int = 128 * 1024;

#[cfg(test)]
pub(super) mod tests;
