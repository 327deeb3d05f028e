//! A throwaway `git daemon` on 127.0.0.1 serving the bare repositories under one directory,
//! with pushes enabled.
//!
//! `berth demo` and the tests use it as a stand-in for a git host: unlike a `file://` or
//! local-path remote (which libgit2 updates unconditionally), `git receive-pack` behind the
//! daemon checks every update's old value under its ref lock, so the lane lock's
//! compare-and-swap is exercised exactly as against GitHub.

use std::io::{self, BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Ports tried before giving up (another process may grab a port between our probe
/// and the daemon's bind).
const PORT_ATTEMPTS: u32 = 5;
/// Bound on the daemon coming up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// What `git daemon --verbose` logs once its socket listens.
const READY_LINE: &str = "Ready to rumble";

/// A running `git daemon`; killed (with its whole process group) on drop.
#[derive(Debug)]
pub struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    /// Serves every repository under `base_dir` (`--export-all`, pushes allowed) on a free
    /// 127.0.0.1 port, and returns once the port accepts connections.
    pub fn start(base_dir: &Path) -> io::Result<GitDaemon> {
        let base_dir = base_dir.canonicalize()?;
        let mut last_failure = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match spawn_on(&base_dir, port)? {
                Ok(daemon) => return Ok(daemon),
                Err(failure) => last_failure = Some(failure),
            }
        }
        Err(io::Error::other(NotUp::Gave {
            base_dir,
            last: last_failure.map(Box::new),
        }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `git://127.0.0.1:<port>/<repo_name>`, `repo_name` relative to the base dir.
    pub fn url_for(&self, repo_name: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            repo_name.trim_start_matches('/')
        )
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

/// Why the daemon did not come up.
#[derive(Debug, thiserror::Error)]
enum NotUp {
    /// `output` is what the daemon printed before it exited.
    #[error("git daemon exited on port {port}: {output}")]
    Exited { port: u16, output: String },
    #[error("git daemon on port {port} was not ready within {READY_TIMEOUT:?}")]
    NotReady { port: u16 },
    #[error("git daemon on port {port} refuses connections: {source}")]
    Refuses { port: u16, source: io::Error },
    #[error(
        "git daemon for {} did not start after {PORT_ATTEMPTS} attempts: {}",
        .base_dir.display(),
        .last.as_ref().map(ToString::to_string).unwrap_or_default()
    )]
    Gave {
        base_dir: std::path::PathBuf,
        last: Option<Box<NotUp>>,
    },
}

/// A port the kernel just handed out on 127.0.0.1, released again for the daemon to bind.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Starts the daemon on `port`. `Ok(Err(reason))`: it did not come up there (typically the
/// port was taken meanwhile), try another port.
fn spawn_on(base_dir: &Path, port: u16) -> io::Result<Result<GitDaemon, NotUp>> {
    let mut child = Command::new("git")
        .arg("daemon")
        .arg("--reuseaddr")
        .arg("--verbose")
        .arg(format!("--base-path={}", base_dir.display()))
        .arg("--export-all")
        .arg("--enable=receive-pack")
        .arg("--listen=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(base_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own group, so drop can kill the per-connection children with it.
        .process_group(0)
        .spawn()?;
    let Some(stderr) = child.stderr.take() else {
        stop_group(&mut child);
        return Err(io::Error::other("git daemon's stderr was not captured"));
    };
    // Drain stderr for the daemon's whole life (`--verbose` logs every connection, and a
    // full pipe would block it), reporting the ready line or the early output.
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut early = Vec::new();
        let mut ready_tx = Some(ready_tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            tracing::debug!(target: "berth::git_daemon", "{line}");
            if let Some(tx) = ready_tx.take_if(|_| line.contains(READY_LINE)) {
                let _ = tx.send(Ok(()));
            } else if ready_tx.is_some() {
                early.push(line);
            }
        }
        if let Some(tx) = ready_tx {
            let _ = tx.send(Err(early.join(" | ")));
        }
    });
    let ready = match ready_rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(())) => wait_until_accepting(port),
        Ok(Err(output)) => Err(NotUp::Exited { port, output }),
        Err(_) => Err(NotUp::NotReady { port }),
    };
    match ready {
        Ok(()) => Ok(Ok(GitDaemon { child, port })),
        Err(failure) => {
            stop_group(&mut child);
            Ok(Err(failure))
        }
    }
}

fn wait_until_accepting(port: u16) -> Result<(), NotUp> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(source) if Instant::now() >= deadline => {
                return Err(NotUp::Refuses { port, source });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Kills the daemon's whole group (it keeps no state worth a graceful stop), then reaps
/// it. The leader is reaped only after the group signal, so the group id cannot have been
/// reused by then.
fn stop_group(child: &mut Child) {
    if let Ok(raw) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_on_loopback_and_dies_with_its_group_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = GitDaemon::start(dir.path()).unwrap();
        let port = daemon.port();
        assert_eq!(
            daemon.url_for("/x.git"),
            format!("git://127.0.0.1:{port}/x.git")
        );
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        TcpStream::connect(address).unwrap();
        let group = Pid::from_raw(i32::try_from(daemon.child.id()).unwrap());
        drop(daemon);
        // Nothing of the group runs on (checked by process, not by port: a parallel test
        // may bind the freed port at once; zombies awaiting a reaper run nothing). A child
        // forked for our connection may take a moment to die of its SIGKILL.
        let running_in_group = || -> Vec<String> {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| {
                    let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
                    let fields: Vec<&str> = after.split(' ').collect();
                    fields.len() > 2 && fields[2] == group.to_string() && fields[0] != "Z"
                })
                .collect()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut running = running_in_group();
        while !running.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            running = running_in_group();
        }
        assert!(running.is_empty(), "{running:?}");
    }

    #[test]
    fn a_taken_port_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let failure = spawn_on(&dir.path().canonicalize().unwrap(), port)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(failure.contains(&port.to_string()), "{failure}");
    }
}
