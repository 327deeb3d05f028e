//! A [`Forge`] that counts and remembers every call of the forge it wraps: calls by kind and
//! result for the metrics, the last answer for the health file, a debug line per call.

use std::sync::Arc;
use std::time::Instant;

use super::Telemetry;
use crate::forge::{Forge, ForgeError, ForgeKind, ForgeRepo, MergeProof, PrCheck, PrRef, QueuedPr};

pub struct MeteredForge {
    inner: Arc<dyn Forge>,
    telemetry: Arc<Telemetry>,
}

impl MeteredForge {
    pub fn new(inner: Arc<dyn Forge>, telemetry: Arc<Telemetry>) -> MeteredForge {
        MeteredForge { inner, telemetry }
    }

    fn call<T>(
        &self,
        kind: &'static str,
        repo: &ForgeRepo,
        pr: Option<u64>,
        call: impl FnOnce() -> Result<T, ForgeError>,
    ) -> Result<T, ForgeError> {
        let started = Instant::now();
        let answer = call();
        let error = answer.as_ref().err().map(ToString::to_string);
        tracing::debug!(
            forge = self.inner.name(),
            call = kind,
            repo = %repo.identity,
            pr,
            elapsed_ms = started.elapsed().as_millis() as u64,
            error = error.as_deref(),
            "forge call"
        );
        self.telemetry.forge_answered(kind, &repo.identity, error);
        answer
    }
}

impl Forge for MeteredForge {
    fn kind(&self) -> ForgeKind {
        self.inner.kind()
    }

    fn warm_up(&self, repo: &ForgeRepo) {
        self.inner.warm_up(repo);
    }

    fn list_queued(&self, repo: &ForgeRepo) -> Result<Vec<QueuedPr>, ForgeError> {
        self.call("list_queued", repo, None, || self.inner.list_queued(repo))
    }

    fn check_pr(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<PrCheck, ForgeError> {
        self.call("check_pr", repo, Some(pr.number), || {
            self.inner.check_pr(repo, pr)
        })
    }

    fn merge_proof(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<MergeProof, ForgeError> {
        self.call("merge_proof", repo, Some(pr.number), || {
            self.inner.merge_proof(repo, pr)
        })
    }

    fn stop_calls(&self, within: std::time::Duration) -> bool {
        self.inner.stop_calls(within)
    }

    /// A name, not a question: nothing is asked, so nothing is metered.
    fn pr_head_ref(&self, number: u64) -> Option<String> {
        self.inner.pr_head_ref(number)
    }

    /// One call however many PRs: the shared listing of reconcile, audit and detectors.
    fn merge_proofs(
        &self,
        repo: &ForgeRepo,
        prs: &[PrRef<'_>],
    ) -> Result<std::collections::HashMap<u64, MergeProof>, ForgeError> {
        self.call("merge_proofs", repo, None, || {
            self.inner.merge_proofs(repo, prs)
        })
    }
}
