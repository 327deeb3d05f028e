//! What a pass says once however many state files bring it up (a held filing, a held run
//! lock), each known by the SHA-256 of what it is about, whole: never by its line, whose run
//! ids are cut ([`said_cut`](super::super::registry::said_cut)), so two runs whose cut ids
//! match would make one line and one of them would be said by nobody.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

/// The things a pass said, by the SHA-256 of their parts.
#[derive(Debug, Default)]
pub struct SaidOnce(HashSet<[u8; 32]>);

impl SaidOnce {
    /// Notes the thing `parts` name; whether it is new to this set (to be said).
    pub fn first(&mut self, parts: &[&str]) -> bool {
        self.0.insert(digest(parts))
    }

    /// Whether the thing `parts` name was noted.
    pub fn said(&self, parts: &[&str]) -> bool {
        self.0.contains(&digest(parts))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Each part goes in after its length, so that no two lists of parts hash alike (`a`, `bc`
/// and `ab`, `c`).
fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::SaidOnce;

    #[test]
    fn parts_are_told_apart_by_where_they_split() {
        let mut said = SaidOnce::default();
        assert!(said.first(&["a", "bc"]));
        assert!(!said.said(&["ab", "c"]));
        assert!(said.first(&["ab", "c"]));
        assert!(!said.first(&["a", "bc"]));
        assert_eq!(said.len(), 2);
    }
}
