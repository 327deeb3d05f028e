//! Which stem starts the names of a run's files of one fault. gstack names them by its safe
//! run id, which maps several run ids to one (`a/b` and `a_b` are both `a_b`): two such
//! runs raising one fault would share one pending file, each filing rewriting the other's
//! event as its own and each clear marking it resolved, so a fault still raised would show
//! resolved with no pending event. So a run files under its own stem,
//! `<safeRunId>~<16 hex of the SHA-256 of its whole run id>`, when gstack's name of the
//! fault holds another whole run id (its event or its resolved marker), and keeps that stem
//! while a file of it is pending; every other run keeps gstack's name.

use sha2::{Digest, Sha256};

use super::super::json_file;
use super::super::run_id::file_run_id;
use super::HaltStore;
use super::shown::WholeRunId;
use crate::private_dir::PrivateDir;

/// The infix of a detected event's name.
pub(super) const EVENT: &str = "";
/// The infix of a resolved marker's name.
pub(super) const MARKER: &str = "RESOLVED-";

/// The two stems a run's files may start with.
pub(super) struct Stems {
    /// gstack's: the run's file run id.
    pub gstacks: String,
    /// The run's own: gstack's, `~`, and 16 hex of the SHA-256 of the whole run id. A safe
    /// run id never holds `~`, so no run's gstack stem is another's own.
    pub own: String,
}

impl Stems {
    pub fn of(run_id: &str) -> Stems {
        let gstacks = file_run_id(run_id);
        let digest = Sha256::digest(run_id.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Stems {
            own: format!("{gstacks}~{hex}"),
            gstacks,
        }
    }

    /// Whether a file of the run's own stem is in `dir` under one of `infixes`.
    pub fn own_there(&self, dir: &PrivateDir, fault_id: &str, infixes: &[&str]) -> bool {
        infixes.iter().any(|infix| {
            dir.entry(&HaltStore::file_name(&self.own, infix, fault_id, ""))
                .is_ok_and(|e| e.is_some())
        })
    }

    /// The stem of `run_id`'s files of `fault_id` in `dir`, looking at the names of
    /// `infixes`: its own while a file of it is there or while gstack's name holds another
    /// run's file, else gstack's.
    pub fn pick(&self, dir: &PrivateDir, run_id: &str, fault_id: &str, infixes: &[&str]) -> &str {
        let taken = || {
            infixes.iter().any(|infix| {
                let name = HaltStore::file_name(&self.gstacks, infix, fault_id, "");
                held_by_another(dir, &name, run_id)
            })
        };
        if self.own_there(dir, fault_id, infixes) || taken() {
            &self.own
        } else {
            &self.gstacks
        }
    }
}

/// Whether `name` in `dir` holds a whole `runId` other than `run_id`. A file that cannot be
/// read, or holds no string `runId`, is taken as the name's own run's: filing then reports
/// an unreadable event and leaves it, as before, and an ack moves it as gstack's would.
pub(super) fn held_by_another(dir: &PrivateDir, name: &str, run_id: &str) -> bool {
    let Ok(Some(text)) = json_file::read_text_in(dir, name) else {
        return false;
    };
    WholeRunId::parse(&text).is_ok_and(|found| another(found.0.as_deref(), run_id))
}

/// Whether a file's whole run id `found` names another run than `run_id`.
pub(super) fn another(found: Option<&str>, run_id: &str) -> bool {
    found.is_some_and(|found| found != run_id)
}
