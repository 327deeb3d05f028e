//! Names two runs share. gstack names a run's files of a fault by its safe run id, which
//! maps several run ids to one (`a/b` and `a_b` are both `a_b`), and its drain computes the
//! name it moves from the run id (`markInvestigated`, `fault-detectors.md` §5.7): a run
//! filing under any other name would have its event's investigation move the other run's
//! file. So berth keeps gstack's names, and never writes over, removes, archives or moves
//! a pending file that holds another whole run id: the run's filing over the other's event,
//! or its clear over the other's marker, is held ([`HaltStoreError::Taken`]) and made on a
//! later pass, once gstack's drain or `berth faults ack` has moved the other run's file; a
//! filing leaves the other's marker where it is (gstack's drain pairs markers by whole ids,
//! so it moves that one as an orphan, and berth's listing matches them so too).

use super::super::json_file;
use super::super::registry::said_cut;
use super::shown::WholeRunId;
use super::{HaltStore, HaltStoreError, PROCESSED_DIR};
use crate::private_dir::PrivateDir;

/// The whole run id other than `run_id` that the file `name` in `dir` holds, if any. A file
/// that cannot be read, or holds no string `runId`, is no other run's: filing reports it
/// unreadable and leaves it, as it does any unreadable pending file, and an ack moves it
/// as gstack's would.
pub(super) fn holder(dir: &PrivateDir, name: &str, run_id: &str) -> Option<String> {
    let text = json_file::read_text_in(dir, name).ok()??;
    another(WholeRunId::parse(&text).ok()?.0, run_id)
}

/// `found`, a file's whole run id, when it is not `run_id`.
pub(super) fn another(found: Option<String>, run_id: &str) -> Option<String> {
    found.filter(|found| found != run_id)
}

/// The filing or clear of `run_id` at `name` in `dir`, held because the file there is run
/// `other`'s; both ids cut, so a planted megabyte id makes no megabyte line.
pub(super) fn taken(dir: &PrivateDir, name: &str, run_id: &str, other: &str) -> HaltStoreError {
    HaltStoreError::Taken {
        path: dir.join(name),
        run_id: said_cut(run_id),
        other: said_cut(other),
    }
}

impl HaltStore {
    /// Whether `run_id`'s event of `fault_id` is in `processed/`: its name is there and
    /// holds no other run's id (one of the same safe run id may have been moved there).
    pub fn investigated(&self, run_id: &str, fault_id: &str) -> bool {
        let name = Self::file_name(run_id, "", fault_id, "");
        match PrivateDir::open_to_read(&self.dir, PROCESSED_DIR) {
            Ok(Some(processed)) => {
                processed.entry(&name).is_ok_and(|e| e.is_some())
                    && holder(&processed, &name, run_id).is_none()
            }
            _ => false,
        }
    }
}
