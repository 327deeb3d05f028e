//! The gates of one tick: the repo-path part of [`Allowlist::gate_record`] (realpath,
//! git files, `origin` and identity) computed once per distinct repo path, the rest per
//! record. A tick ends by dropping it, so nothing gated is trusted into the next tick.

use std::collections::HashMap;

use crate::gates::{Allowlist, GateError, GatedRecord, RepoGate};
use crate::record::Record;

#[derive(Default)]
pub struct TickGates {
    repos: HashMap<String, Result<RepoGate, GateError>>,
}

impl TickGates {
    /// [`Allowlist::gate_record`] for `record`, reusing this tick's answer for its repo.
    pub fn record(
        &mut self,
        allowlist: &Allowlist,
        record: &Record,
    ) -> Result<GatedRecord, GateError> {
        let repo = self.repo(allowlist, &record.repo_path).clone()?;
        allowlist.gate_record_in(record, &repo)
    }

    /// [`Allowlist::gate_repo`] for `raw`, once per tick.
    pub fn repo(&mut self, allowlist: &Allowlist, raw: &str) -> &Result<RepoGate, GateError> {
        self.repos
            .entry(raw.to_owned())
            .or_insert_with(|| allowlist.gate_repo(raw))
    }
}
