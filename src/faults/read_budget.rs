//! What one look may read of files whoever writes the faults dir can plant: each up to
//! the 8 MiB berth reads ([`MAX_JSON_BYTES`]), and under as many names as a listing reads
//! (hard links: one file's disk). Each look that reads such files takes its bytes from one
//! budget, charged by the size the file's `fstat` gives (capped at what is read of it),
//! before the read; a file the budget no longer holds is counted and left unread.

use std::fs::Metadata;

use super::json_file::MAX_JSON_BYTES;

/// The bytes one look may still read, and the files it left unread past them.
#[derive(Debug)]
pub struct ReadBudget {
    left: u64,
    waiting: usize,
}

impl ReadBudget {
    pub fn new(bytes: u64) -> ReadBudget {
        ReadBudget {
            left: bytes,
            waiting: 0,
        }
    }

    /// Whether the budget still holds a read of the file `meta` describes, taken from it if
    /// so; counted as left unread if not.
    pub fn spend(&mut self, meta: &Metadata) -> bool {
        let size = meta.len().min(MAX_JSON_BYTES);
        if size > self.left {
            self.waiting += 1;
            return false;
        }
        self.left -= size;
        true
    }

    /// Counts a file left unread past another bound of the look (how many files it keeps).
    pub fn leave(&mut self) {
        self.waiting += 1;
    }

    /// How many files were left unread past the budget.
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}
