//! The rules engine: berth's policy lives in Rhai scripts an operator edits while the
//! daemon runs (DESIGN §8). The core keeps every gate and the state machine; rules only
//! answer questions the core asks, and the core checks every answer.
//!
//! - [`engine`]: the one hardened engine constructor (limits, deadline, no I/O).
//! - [`primitives`]: what scripts may call besides rhai's standard package.
//! - [`source`] / [`embedded`]: which files make a set (embedded defaults, overridden file
//!   by file by `--rules-root`) and the set's hash.
//! - [`pipeline`]: compile + validate + run rule tests; the only way a set is accepted.
//! - [`set`]: a compiled set and the generic call API ([`RuleSet::call_json`]).
//! - [`contracts`]: the typed questions (discovery, landing policy) with their validators
//!   and built-in defaults.
//! - [`reload`], [`status`]: hot reload and the status file `berth status` shows.
//! - [`decisions`]: the decision log `berth explain` reads.
//! - [`fallbacks`]: the rule calls failing closed right now (`berth status`, RULE_FAILING).
//!
//! Architecture Invariant: a rule receives copies of data and returns plain values; it
//! holds no handle to the store, the gates, the lock or the runner, so no rule can write a
//! record, skip a gate or run a process, whatever it returns.

pub mod capture;
pub mod case_result;
pub mod contracts;
pub mod decisions;
pub mod embedded;
pub mod engine;
pub mod error;
pub mod facts;
pub mod fallbacks;
pub mod journal;
pub mod memory;
pub mod output;
pub mod pipeline;
pub mod primitives;
pub mod reload;
pub mod replay;
pub mod rotation;
pub mod selftest;
pub mod set;
pub mod source;
pub mod spec;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rhai::Engine;

/// The stack of every thread that runs rule code. rhai walks nested values recursively
/// (size checks, conversions, drops); a rule can build a deeply nested value faster than
/// its deadline stops it, so rule threads get room that no value within the limits can
/// exhaust, instead of the 2 MiB default.
pub const RULE_THREAD_STACK: usize = 64 * 1024 * 1024;

pub use contracts::Decided;
pub use decisions::DecisionLog;
pub use error::{LoadError, LoadFailure, Location, RuleError};
pub use pipeline::Built;
pub use reload::{ReloadSeen, ReloadWatcher, write_and_await};
pub use set::RuleSet;
pub use source::SourceSet;
pub use spec::{Requirement, RuleSpec};
pub use status::RulesStatus;

/// The daemon's handle on its rules: the active set, swapped atomically by reloads.
/// Cloning shares the same active set.
#[derive(Clone)]
pub struct Rules {
    inner: Arc<Inner>,
}

struct Inner {
    active: ArcSwap<RuleSet>,
    engine: Arc<Engine>,
    spec: RuleSpec,
    root: Option<PathBuf>,
}

/// What a reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// A new set passed every check and is now active.
    Swapped(Arc<RuleSet>),
    /// The files are those of the active set; nothing to do.
    Unchanged(Arc<RuleSet>),
    /// The files are those of the set refused last time: not rebuilt, not reported again.
    StillRefused,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.current();
        f.debug_struct("Rules")
            .field("active", &set.short_hash())
            .field("root", &self.inner.root)
            .finish()
    }
}

impl Rules {
    /// The embedded defaults, overridden by `root` when given, with berth's contracts.
    pub fn load(root: Option<&Path>) -> Result<Rules, LoadFailure> {
        Rules::load_with(root, RuleSpec::standard())
    }

    /// The embedded defaults alone.
    pub fn embedded() -> Result<Rules, LoadFailure> {
        Rules::load(None)
    }

    pub fn load_with(root: Option<&Path>, spec: RuleSpec) -> Result<Rules, LoadFailure> {
        let engine = Arc::new(engine::hardened_engine(&spec.limits, &spec.extensions));
        let built = pipeline::build(root, &spec, &engine)?;
        Ok(Rules {
            inner: Arc::new(Inner {
                active: ArcSwap::from_pointee(built.set),
                engine,
                spec,
                root: root.map(Path::to_owned),
            }),
        })
    }

    /// Runs the whole acceptance pipeline on `root` without making anything active: what
    /// `berth rules check|test|list` report is exactly what a reload would decide.
    pub fn check(root: Option<&Path>, spec: &RuleSpec) -> Result<Built, LoadFailure> {
        let engine = Arc::new(engine::hardened_engine(&spec.limits, &spec.extensions));
        pipeline::build(root, spec, &engine)
    }

    /// The active set. Take it once per decision: a reload swaps whole sets, so holding
    /// the `Arc` keeps one decision on one version.
    pub fn current(&self) -> Arc<RuleSet> {
        self.inner.active.load_full()
    }

    pub fn root(&self) -> Option<&Path> {
        self.inner.root.as_deref()
    }

    pub fn spec(&self) -> &RuleSpec {
        &self.inner.spec
    }

    /// Rebuilds the set from the rules root and swaps it in if every check passes; on
    /// failure the active set is untouched.
    pub fn reload(&self) -> Result<Reloaded, LoadFailure> {
        self.reload_after(None)
    }

    /// [`Rules::reload`], except that files hashing to `refused` (the set refused last
    /// time) are not built again: the same edit is refused, and reported, once.
    pub fn reload_after(&self, refused: Option<&str>) -> Result<Reloaded, LoadFailure> {
        let source = SourceSet::load(self.root())?;
        let active = self.current();
        if source.hash() == active.hash() {
            return Ok(Reloaded::Unchanged(active));
        }
        if refused == Some(source.hash()) {
            return Ok(Reloaded::StillRefused);
        }
        let built = pipeline::build_from(&source, &self.inner.spec, &self.inner.engine)?;
        let set = Arc::new(built.set);
        self.inner.active.store(Arc::clone(&set));
        Ok(Reloaded::Swapped(set))
    }
}

#[cfg(test)]
mod tests;
