//! A FUSE file system (served raw over `/dev/fuse`, mounted by `mount(2)`) holding one
//! symlink, `link`, whose target depends on who reads it: a process named `git` is given
//! one directory, every other reader (berth's threads, its writer child before exec)
//! another. A real file system may answer so (FUSE, a network file system another host
//! changes): each `readlink` is a request its server answers afresh.

use std::ffi::CString;
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::thread::JoinHandle;

use nix::libc;

/// The root directory's and the symlink's node ids, and the directory `link` is to the
/// others when it is a directory to them ([`FlipFs::dir_or_link`]).
const ROOT: u64 = 1;
const LINK: u64 = 2;
const DIR: u64 = 3;

/// FUSE opcodes answered (the rest: ENOSYS; FORGETs: nothing).
const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const READLINK: u32 = 5;
const OPENDIR: u32 = 27;
const READDIR: u32 = 28;
const RELEASEDIR: u32 = 29;
const INIT: u32 = 26;
const BATCH_FORGET: u32 = 42;

/// Mounted at `mnt` until dropped.
pub(super) struct FlipFs {
    mnt: CString,
    server: Option<JoinHandle<()>>,
}

impl FlipFs {
    /// `link` at `mnt` names `to_git` for a process named `git`, `to_others` for the rest;
    /// `None` (said on stderr) unless root with `/dev/fuse`.
    pub(super) fn mount(mnt: &Path, to_others: &Path, to_git: &Path) -> Option<FlipFs> {
        FlipFs::serve_at(mnt, b"link", Some(to_others), to_git)
    }

    /// `link` at `mnt` is a symlink naming `to_git` for a process named `git`, and an
    /// empty directory (no symlink at all) for the rest: a FUSE server answers each
    /// `lookup` afresh, with whatever kind of node it likes.
    pub(super) fn dir_or_link(mnt: &Path, to_git: &Path) -> Option<FlipFs> {
        FlipFs::named_dir_or_link(mnt, b"link", to_git)
    }

    /// As [`FlipFs::dir_or_link`], the node named `name` rather than `link`.
    pub(super) fn named_dir_or_link(mnt: &Path, name: &[u8], to_git: &Path) -> Option<FlipFs> {
        FlipFs::serve_at(mnt, name, None, to_git)
    }

    fn serve_at(
        mnt: &Path,
        name: &[u8],
        to_others: Option<&Path>,
        to_git: &Path,
    ) -> Option<FlipFs> {
        std::fs::create_dir_all(mnt).unwrap();
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse");
        let (true, Ok(dev)) = (nix::unistd::geteuid().is_root(), dev) else {
            eprintln!("skipped: a FUSE mount needs root and /dev/fuse");
            return None;
        };
        // SAFETY: plain calls with no arguments.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let options = CString::new(format!(
            "fd={},rootmode=40000,user_id={uid},group_id={gid},allow_other",
            dev.as_raw_fd()
        ))
        .unwrap();
        let at = CString::new(mnt.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated strings; the options name an open /dev/fuse descriptor.
        let mounted = unsafe {
            libc::mount(
                c"flip".as_ptr(),
                at.as_ptr(),
                c"fuse".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        assert_eq!(
            mounted,
            0,
            "cannot mount a FUSE file system at {} (this test needs root): {}",
            mnt.display(),
            std::io::Error::last_os_error()
        );
        let others = to_others.map(|to| to.as_os_str().as_bytes().to_vec());
        let git = to_git.as_os_str().as_bytes().to_vec();
        let name = name.to_vec();
        let server = std::thread::spawn(move || serve(dev, &name, others, &git));
        Some(FlipFs {
            mnt: at,
            server: Some(server),
        })
    }
}

impl Drop for FlipFs {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path; detaching ends the connection, and the server's
        // read with it.
        unsafe { libc::umount2(self.mnt.as_ptr(), libc::MNT_DETACH) };
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

fn serve(mut dev: std::fs::File, name: &[u8], others: Option<Vec<u8>>, git: &[u8]) {
    let mut buf = vec![0u8; 1 << 17];
    loop {
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let request = &buf[..n];
        let word = |at: usize| u32::from_le_bytes(request[at..at + 4].try_into().unwrap());
        let long = |at: usize| u64::from_le_bytes(request[at..at + 8].try_into().unwrap());
        let (opcode, unique, node, pid) = (word(4), long(8), long(16), word(32));
        let body = &request[40..];
        let to_git = comm(pid) == "git";
        let (link, len) = match (&others, to_git) {
            (Some(others), false) => (LINK, others.len()),
            (None, false) => (DIR, 0),
            (_, true) => (LINK, git.len()),
        };
        let answer = match opcode {
            INIT => Ok(init_out()),
            LOOKUP if node == ROOT && body.split(|b| *b == 0).next() == Some(name) => {
                Ok(entry_out(link, len))
            }
            LOOKUP => Err(libc::ENOENT),
            GETATTR => Ok(attr_out(node, len)),
            READLINK if to_git => Ok(git.to_vec()),
            READLINK => Ok(others.clone().unwrap_or_default()),
            // Directories open, list as empty (an empty answer ends a listing) and close.
            OPENDIR => Ok(vec![0u8; 16]),
            READDIR | RELEASEDIR => Ok(Vec::new()),
            FORGET | BATCH_FORGET => continue,
            _ => Err(libc::ENOSYS),
        };
        let (error, payload) = match answer {
            Ok(payload) => (0, payload),
            Err(errno) => (-errno, Vec::new()),
        };
        let mut reply = Vec::new();
        reply.extend_from_slice(&(16 + payload.len() as u32).to_le_bytes());
        reply.extend_from_slice(&error.to_le_bytes());
        reply.extend_from_slice(&unique.to_le_bytes());
        reply.extend_from_slice(&payload);
        if dev.write_all(&reply).is_err() {
            return;
        }
    }
}

/// The name of the process (thread) `pid` as the kernel keeps it.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `fuse_init_out` of protocol 7.31: 4 KiB writes, nothing cached past a request.
fn init_out() -> Vec<u8> {
    let mut out = Vec::new();
    for word in [7u32, 31, 0, 0] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&[0u8; 4]); // max_background, congestion_threshold
    out.extend_from_slice(&4096u32.to_le_bytes()); // max_write
    out.extend_from_slice(&1u32.to_le_bytes()); // time_gran
    out.extend_from_slice(&1u16.to_le_bytes()); // max_pages
    out.resize(64, 0);
    out
}

/// `fuse_attr`: the root (and `DIR`) a directory, the link a symlink; valid for no time.
fn attr(node: u64, link_len: usize) -> Vec<u8> {
    let (mode, nlink, size) = if node == ROOT || node == DIR {
        (0o040_755u32, 2u32, 0u64)
    } else {
        (0o120_777, 1, link_len as u64)
    };
    let mut out = Vec::new();
    for long in [node, size, 0, 0, 0, 0] {
        out.extend_from_slice(&long.to_le_bytes());
    }
    for word in [0u32, 0, 0, mode, nlink, 0, 0, 0, 4096, 0] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out
}

fn entry_out(node: u64, link_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for long in [node, 0, 0, 0] {
        out.extend_from_slice(&long.to_le_bytes());
    }
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&attr(node, link_len));
    out
}

fn attr_out(node: u64, link_len: usize) -> Vec<u8> {
    let mut out = vec![0u8; 16];
    out.extend_from_slice(&attr(node, link_len));
    out
}
