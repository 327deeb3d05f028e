//! A value computed from files, kept until the stamp of one of them moves: a scrape costs a
//! `stat` per path, not a read, while nothing changed. A stamp too young to prove anything
//! ([`crate::file_stamp`]) keeps nothing, so the next scrape computes again.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::file_stamp::{FileStamp, ReadStart};

#[derive(Debug)]
pub struct Stamped<T> {
    paths: Vec<PathBuf>,
    last: Mutex<Option<(Vec<Option<FileStamp>>, T)>>,
}

impl<T: Clone> Stamped<T> {
    /// Kept while the stamps of `paths` (files or directories; a missing one too) stay.
    pub fn new(paths: Vec<PathBuf>) -> Stamped<T> {
        Stamped {
            paths,
            last: Mutex::new(None),
        }
    }

    /// The kept value, or `compute`'s while a stamp moved.
    pub fn get(&self, compute: impl FnOnce() -> T) -> T {
        self.get_whole(|| (compute(), true))
    }

    /// As [`Stamped::get`], for a `compute` that says whether its value is whole: a partial
    /// one (a listing that left files for its next) is never kept, so the next call
    /// computes again while the stamps stay.
    pub fn get_whole(&self, compute: impl FnOnce() -> (T, bool)) -> T {
        let start = ReadStart::now();
        let stamps: Vec<Option<FileStamp>> = self
            .paths
            .iter()
            .map(|path| {
                std::fs::symlink_metadata(path)
                    .ok()
                    .map(|m| FileStamp::of(&m))
            })
            .collect();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, value)) = last.as_ref()
            && *kept == stamps
        {
            return value.clone();
        }
        let (value, whole) = compute();
        let racy = stamps.iter().flatten().any(|s| start.judge(*s, None).1);
        *last = (whole && !racy).then(|| (stamps, value.clone()));
        value
    }
}
