//! Size-rotated JSON-lines files in berth's dir: `<stem>.jsonl` is the file being written;
//! past its size bound it becomes `<stem>.1.jsonl`, the one before becomes `<stem>.2.jsonl`,
//! and so on up to the number of generations kept, the oldest dropped. Readers take every
//! generation, oldest first, so history that rotated is still found. The facts store and
//! the decision log share this one helper.
//!
//! A reader walks the generations one file after another, so a rotation between two of
//! them would shift lines into a file it already read. So a reader opens every generation
//! first, holding the family's lock file (`<stem>.lock`) shared while it opens them (a few
//! `open`s, never while it reads), and a rotation holds it exclusive; each waits at most
//! [`LOCK_WAIT`]. The open files are a snapshot no later rename changes, and since no
//! reader holds the lock longer than its opens, readers in a loop (a client asking for a
//! PR's story again and again) never keep the log from rotating. Across processes:
//! `berth explain`, `status` and `replay` read while the daemon rotates. An append needs
//! no lock: one to a file renamed meanwhile lands in the generation it became.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a reader waits for a rotation to end, and a rotation for readers opening the
/// generations: past it the read fails (naming the lock), the rotation is tried again at
/// the next append.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// One rotated file family.
#[derive(Clone, Debug)]
pub struct Rotated {
    dir: PathBuf,
    stem: &'static str,
    /// Rotated generations kept besides the current file.
    keep: u32,
}

impl Rotated {
    pub fn new(dir: &Path, stem: &'static str, keep: u32) -> Rotated {
        Rotated {
            dir: dir.to_owned(),
            stem,
            keep,
        }
    }

    /// The file being written.
    pub fn current(&self) -> PathBuf {
        self.dir.join(format!("{}.jsonl", self.stem))
    }

    /// Rotated generation `n` (1 is the newest).
    pub fn generation(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{}.{n}.jsonl", self.stem))
    }

    /// Every generation that may exist, oldest first, the current file last.
    pub fn oldest_first(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = (1..=self.keep).rev().map(|n| self.generation(n)).collect();
        paths.push(self.current());
        paths
    }

    /// Calls `f` with every line of every generation, oldest first, with no rotation in
    /// between (see the module's doc); a generation that is not there is skipped. Each file is opened without following a symlink (to /dev/zero: one
    /// endless line) or blocking on a FIFO.
    pub fn each_line(&self, mut f: impl FnMut(String)) -> io::Result<()> {
        use std::io::BufRead as _;
        for file in self.open_all()? {
            for line in io::BufReader::new(file).lines() {
                f(line?);
            }
        }
        Ok(())
    }

    /// The current file becomes generation 1, each older one moves up one, and the one past
    /// `keep` is removed. Renames within one dir: a reader sees each line in some file.
    pub fn rotate(&self) -> io::Result<()> {
        if self.keep == 0 {
            return remove_if_there(&self.current());
        }
        remove_if_there(&self.generation(self.keep))?;
        for n in (1..self.keep).rev() {
            rename_if_there(&self.generation(n), &self.generation(n + 1))?;
        }
        rename_if_there(&self.current(), &self.generation(1))
    }

    /// [`Rotated::rotate`] when the current file holds `max_bytes` or more (looked up by
    /// name, so a writer holding an older handle never rotates twice).
    pub fn rotate_past(&self, max_bytes: u64) -> io::Result<bool> {
        // Created before the first rotation: readers take it from then on.
        let lock = self.lock_path();
        let file = crate::atomic_file::open_lock_file(&lock)?;
        if !self.holds_at_least(max_bytes)? {
            return Ok(false);
        }
        let _no_reader = crate::atomic_file::lock_open_file_within(file, &lock, LOCK_WAIT)?;
        if !self.holds_at_least(max_bytes)? {
            return Ok(false);
        }
        self.rotate().map(|()| true)
    }

    fn holds_at_least(&self, max_bytes: u64) -> io::Result<bool> {
        match std::fs::symlink_metadata(self.current()) {
            Ok(meta) => Ok(meta.len() >= max_bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Rotated {
    fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.stem))
    }

    /// Every generation there is, oldest first, opened with no rotation in between.
    pub fn open_all(&self) -> io::Result<Vec<std::fs::File>> {
        let _no_rotation = self.hold_shared()?;
        let mut files = Vec::new();
        for path in self.oldest_first() {
            match crate::atomic_file::open_read_nofollow(&path) {
                Ok(file) => files.push(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(files)
    }

    /// The lock held shared, or `None` when there is no lock file: no rotation ever took it
    /// (the first append of a daemon creates it), so none runs.
    fn hold_shared(&self) -> io::Result<Option<std::fs::File>> {
        let lock = self.lock_path();
        let file = match crate::atomic_file::open_read_nofollow(&lock) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        crate::atomic_file::lock_shared_within(file, &lock, LOCK_WAIT).map(Some)
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_there(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader holds the lock only while it opens the generations: a rotation goes ahead
    /// while one is reading (readers in a loop never keep the log from rotating), and the
    /// reader still reads what it opened, whole.
    #[test]
    fn a_rotation_goes_ahead_while_a_reader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let files = Rotated::new(dir.path(), "log", 2);
        std::fs::write(files.current(), "a\nb\n").unwrap();
        // Made by a first rotation check, as the daemon's first append does.
        assert!(!files.rotate_past(1 << 20).unwrap());
        let (reading, read_on) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let reader = {
            let files = files.clone();
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                files
                    .each_line(|line| {
                        reading.0.send(()).unwrap();
                        read_on.1.recv().unwrap();
                        lines.push(line);
                    })
                    .unwrap();
                lines
            })
        };
        reading.1.recv().unwrap();
        let rotated = files.rotate_past(1);
        read_on.0.send(()).unwrap();
        read_on.0.send(()).unwrap();
        assert_eq!(reader.join().unwrap(), ["a", "b"]);
        assert!(rotated.unwrap(), "the rotation waited for the reader");
        assert!(files.generation(1).exists());
    }

    #[test]
    fn generations_shift_up_and_the_oldest_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let files = Rotated::new(dir.path(), "log", 2);
        for text in ["a", "b", "c", "d"] {
            std::fs::write(files.current(), text).unwrap();
            files.rotate().unwrap();
        }
        std::fs::write(files.current(), "e").unwrap();
        let texts: Vec<String> = files
            .oldest_first()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(texts, ["c", "d", "e"]);
        assert!(!dir.path().join("log.3.jsonl").exists());
        assert!(!files.rotate_past(2).unwrap(), "under the bound");
        assert!(files.rotate_past(1).unwrap());
        assert!(!files.current().exists());
    }
}
