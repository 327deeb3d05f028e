//! A step's output, capped: the child writes into a pipe that berth drains into the attempt
//! log, keeping the first [`HEAD_BYTES`] and the last [`TAIL_BYTES`] of each run and one line
//! saying how many bytes between them were cut. A step printing gigabytes leaves a log of a
//! few MiB, and berth never stops reading the pipe, so the step never blocks on a full one.
//!
//! The head reaches the file as it is printed; what follows it is held in memory (at most
//! [`TAIL_BYTES`]) and written when the run's output ends. If berth dies mid-step, its guard
//! ends the step too, and the log keeps the head.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The start of a run's output kept in its attempt log.
pub const HEAD_BYTES: usize = 1024 * 1024;
/// The end of a run's output kept in its attempt log.
pub const TAIL_BYTES: usize = 1024 * 1024;
/// How long the output is still read once the step's group has been ended: a process that
/// left the group (`setsid`) may hold the pipe open for ever.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

const READ_CHUNK: usize = 64 * 1024;

/// What was cut from a run's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Bytes the step printed.
    pub total: u64,
    /// Bytes between the head and the tail that the log does not keep.
    pub cut: u64,
}

/// The head written so far, the tail held, and the count of what fell between.
struct Sink {
    file: File,
    written: usize,
    tail: VecDeque<u8>,
    drained: Drained,
    /// The first write error, reported once; the pipe is drained regardless.
    failed: bool,
}

impl Sink {
    fn new(file: File) -> Sink {
        Sink {
            file,
            written: 0,
            tail: VecDeque::new(),
            drained: Drained::default(),
            failed: false,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        self.drained.total += bytes.len() as u64;
        if self.written < HEAD_BYTES {
            let take = bytes.len().min(HEAD_BYTES - self.written);
            self.write(&bytes[..take]);
            self.written += take;
            bytes = &bytes[take..];
        }
        if bytes.len() >= TAIL_BYTES {
            self.drained.cut += (self.tail.len() + bytes.len() - TAIL_BYTES) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - TAIL_BYTES..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        self.tail.drain(..overflow);
        self.drained.cut += overflow as u64;
        self.tail.extend(bytes);
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Err(err) = self.file.write_all(bytes)
            && !self.failed
        {
            self.failed = true;
            tracing::warn!("a step's output could not be written to its attempt log: {err}");
        }
    }

    /// The cut line (if anything was cut), then the tail.
    fn finish(mut self) -> Drained {
        if self.drained.cut > 0 {
            let line = format!(
                "\n==== berth: {} bytes of output cut here (the first {HEAD_BYTES} and the last {TAIL_BYTES} bytes are kept)\n",
                self.drained.cut
            );
            self.write(line.as_bytes());
        }
        let (front, back) = self.tail.as_slices();
        let tail = [front, back].concat();
        self.write(&tail);
        self.drained
    }
}

/// The draining of one run's output into its log.
pub struct CappedLog {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Drained>,
}

impl CappedLog {
    /// A pipe whose read end is drained into `file` (appended at its current end); the
    /// write end is the child's stdout and stderr. Must be called within the runtime.
    pub fn start(file: File) -> io::Result<(CappedLog, OwnedFd)> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let receiver = pipe::Receiver::from_owned_fd(read)?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(drain(receiver, Sink::new(file), stopped));
        Ok((CappedLog { stop, task }, write))
    }

    /// Once the step's group is gone: reads on until the pipe's end (every writer closed
    /// it) or [`DRAIN_AFTER_EXIT`], then writes the tail.
    pub async fn finish(self) -> Drained {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn drain(
    mut receiver: pipe::Receiver,
    mut sink: Sink,
    mut stopped: oneshot::Receiver<()>,
) -> Drained {
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let give_up = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = receiver.read(&mut buffer) => match read {
                Ok(0) => break,
                Ok(n) => sink.push(&buffer[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    tracing::warn!("a step's output could not be read: {err}");
                    break;
                }
            },
            _ = &mut stopped, if deadline.is_none() => {
                deadline = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            () = give_up => {
                tracing::warn!("a process that left the step's group still holds its output open; the log ends here");
                break;
            }
        }
    }
    sink.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_in(dir: &tempfile::TempDir) -> (Sink, std::path::PathBuf) {
        let path = dir.path().join("log");
        (Sink::new(File::create(&path).unwrap()), path)
    }

    #[test]
    fn small_output_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, path) = sink_in(&dir);
        sink.push(b"hello ");
        sink.push(b"world\n");
        assert_eq!(sink.finish(), Drained { total: 12, cut: 0 });
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world\n");
    }

    #[test]
    fn the_head_and_the_tail_are_kept_and_the_cut_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sink, path) = sink_in(&dir);
        let total = HEAD_BYTES + TAIL_BYTES + 12_345;
        // Bytes that tell their position, pushed in uneven chunks.
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(70_001) {
            sink.push(chunk);
        }
        assert_eq!(
            sink.finish(),
            Drained {
                total: total as u64,
                cut: 12_345
            }
        );
        let log = std::fs::read(&path).unwrap();
        assert_eq!(&log[..HEAD_BYTES], &data[..HEAD_BYTES]);
        assert_eq!(&log[log.len() - TAIL_BYTES..], &data[total - TAIL_BYTES..]);
        let middle = String::from_utf8_lossy(&log[HEAD_BYTES..log.len() - TAIL_BYTES]);
        assert!(
            middle.contains("12345 bytes of output cut here"),
            "{middle}"
        );
    }
}
