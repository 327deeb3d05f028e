//! The step's marked processes, as its guard finds and kills them after the fork: a
//! process that left the step's group (`setsid`, a `git gc` git detached) escapes the
//! group kill, but still carries the step's landing mark in its environment
//! ([`super::strays`]). Only raw system calls on memory prepared before the fork: no
//! allocation, no locks, no Rust I/O.

use nix::libc;

/// At most this many variables make a mark (a step's has two: record and owner).
const MAX_VARS: usize = 4;
/// A process's environment is read up to this many bytes ([`super::strays`]'s bound).
const MAX_ENVIRON_BYTES: usize = 1024 * 1024;
/// `linux_dirent64`: `d_ino` (8), `d_off` (8), `d_reclen` (2), `d_type` (1), then the name.
const DIRENT_RECLEN_AT: usize = 16;
const DIRENT_NAME_AT: usize = 19;

/// A step's mark as `NAME=value` byte strings, built before the fork.
#[derive(Debug, Clone, Default)]
pub(super) struct Mark {
    vars: Vec<Vec<u8>>,
}

impl Mark {
    /// The mark of a step started with `env`; empty (matching nothing) when `env` is empty
    /// or longer than a mark can be.
    pub(super) fn new(env: &[(&str, &str)]) -> Mark {
        if env.len() > MAX_VARS {
            return Mark::default();
        }
        let vars = env
            .iter()
            .map(|(name, value)| [name.as_bytes(), b"=", value.as_bytes()].concat())
            .collect();
        Mark { vars }
    }
}

/// SIGKILLs every process of this pid namespace's `/proc` that carries all of `mark`'s
/// variables, with its process group unless that is `spare_group` (berth's own) or pid 1's;
/// never `spare_pid` (berth) or the caller. Returns how many it found: 0 means none is left
/// (a killed process stops carrying its mark once its memory is gone). An empty mark
/// matches nothing.
///
/// # Safety
/// Async-signal-safe: fit for a forked child of a multi-threaded process.
pub(super) unsafe fn kill_marked(mark: &Mark, spare_pid: i32, spare_group: i32) -> usize {
    if mark.vars.is_empty() {
        return 0;
    }
    let mut found = 0;
    unsafe {
        let proc_dir = libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if proc_dir == -1 {
            return 0;
        }
        let me = libc::getpid();
        let mut entries = [0u8; 8192];
        loop {
            let read = libc::syscall(
                libc::SYS_getdents64,
                proc_dir,
                entries.as_mut_ptr(),
                entries.len(),
            );
            if read <= 0 {
                break;
            }
            let mut at = 0usize;
            while at + DIRENT_NAME_AT < read as usize {
                let reclen = u16::from_ne_bytes([
                    entries[at + DIRENT_RECLEN_AT],
                    entries[at + DIRENT_RECLEN_AT + 1],
                ]) as usize;
                if reclen == 0 {
                    break;
                }
                let name = &entries[at + DIRENT_NAME_AT..(at + reclen).min(read as usize)];
                at += reclen;
                let Some(pid) = parse_pid(name) else {
                    continue;
                };
                if pid == me || pid == spare_pid || !carries(pid, mark) {
                    continue;
                }
                found += 1;
                let group = libc::getpgid(pid);
                if group > 1 && group != spare_group && group != libc::getpgrp() {
                    libc::kill(-group, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
        }
        libc::close(proc_dir);
    }
    found
}

/// A `/proc` entry's name (NUL-terminated) as a pid, if it is one.
fn parse_pid(name: &[u8]) -> Option<i32> {
    let mut pid: i32 = 0;
    let mut digits = 0;
    for &byte in name.iter().take_while(|&&b| b != 0) {
        if !byte.is_ascii_digit() {
            return None;
        }
        pid = pid.checked_mul(10)?.checked_add(i32::from(byte - b'0'))?;
        digits += 1;
    }
    (digits > 0 && pid > 0).then_some(pid)
}

/// Whether `/proc/<pid>/environ` holds every variable of `mark`, each as a whole entry.
unsafe fn carries(pid: i32, mark: &Mark) -> bool {
    let path = environ_path(pid);
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd == -1 {
        return false;
    }
    let mut matcher = Matcher::new(mark);
    let mut chunk = [0u8; 4096];
    let mut total = 0usize;
    loop {
        let read = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if read == -1 && unsafe { *libc::__errno_location() } == libc::EINTR {
            continue;
        }
        if read <= 0 || total >= MAX_ENVIRON_BYTES {
            break;
        }
        total += read as usize;
        chunk[..read as usize].iter().for_each(|&b| matcher.feed(b));
    }
    unsafe { libc::close(fd) };
    matcher.feed(0);
    matcher.all_found()
}

/// `/proc/<pid>/environ`, NUL-terminated, for a positive `pid`.
fn environ_path(pid: i32) -> [u8; 32] {
    let mut path = [0u8; 32];
    let mut digits = [0u8; 10];
    let mut left = pid.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (left % 10) as u8;
        count += 1;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    let bytes = b"/proc/"
        .iter()
        .chain(digits[..count].iter().rev())
        .chain(b"/environ");
    for (slot, &byte) in path.iter_mut().zip(bytes) {
        *slot = byte;
    }
    path
}

/// Streams an environment (NUL-separated entries) against a mark's variables.
struct Matcher<'m> {
    mark: &'m Mark,
    /// How far each variable matches the current entry so far; `usize::MAX`: it does not.
    at: [usize; MAX_VARS],
    found: [bool; MAX_VARS],
}

impl<'m> Matcher<'m> {
    fn new(mark: &'m Mark) -> Matcher<'m> {
        Matcher {
            mark,
            at: [0; MAX_VARS],
            found: [false; MAX_VARS],
        }
    }

    fn feed(&mut self, byte: u8) {
        for (i, var) in self.mark.vars.iter().enumerate() {
            if byte == 0 {
                if self.at[i] == var.len() {
                    self.found[i] = true;
                }
                self.at[i] = 0;
            } else if self.at[i] < var.len() && var[self.at[i]] == byte {
                self.at[i] += 1;
            } else {
                self.at[i] = usize::MAX;
            }
        }
    }

    fn all_found(&self) -> bool {
        self.found[..self.mark.vars.len()].iter().all(|&f| f)
    }
}
