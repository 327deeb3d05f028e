//! What a rule set must provide, and what the engine gives it, in one value.
//!
//! The same [`RuleSpec`] drives daemon start, hot reload, `berth rules check` and
//! `berth rules test`, so "check passes" means "reload would accept it". The spec knows
//! no contract: each domain that brings rule files (the discovery and landing contracts,
//! the faults' detectors) hands it a [`Requirement`] per function and, if it needs one,
//! an [`Extension`] registering its primitives, and the contracts put berth's standard
//! spec together (`RuleSpec::standard`, in `contracts`). A domain calls its files through
//! [`super::RuleSet::call_json`] and never needs the engine's internals.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use globset::{Glob, GlobMatcher};
use serde_json::Value;

use super::engine::{Extension, Limits};

/// Checks one return value against its contract, given the arguments of the call: an
/// `Err` names what is wrong. Used on every live call and on every rule test.
pub type Validator = fn(args: &[Value], result: &Value) -> Result<(), Invalid>;

/// What a validator found wrong: each contract's own error type (the spec knows no
/// contract), shown after the function's name.
pub type Invalid = Box<dyn std::error::Error + Send + Sync>;

/// A function some rule file must define.
#[derive(Clone, Copy, Debug)]
pub struct Requirement {
    /// A rule file name (`policies/landing.rhai`), which must then exist, or a glob
    /// (`rules/detectors/*.rhai`), every match of which must define the function.
    pub file: &'static str,
    pub function: &'static str,
    pub arity: usize,
    pub validate: Option<Validator>,
}

/// The calls one contract function gets: each a name (for the error) and its arguments.
pub struct Samples {
    pub file: &'static str,
    pub function: &'static str,
    pub calls: fn() -> Vec<(&'static str, Vec<Value>)>,
}

/// The requirements, extensions and limits of one rule engine.
#[derive(Clone)]
pub struct RuleSpec {
    pub requirements: Vec<Requirement>,
    /// Inputs every set is called with before it is accepted (besides its own tests).
    pub samples: &'static [Samples],
    pub extensions: Vec<Extension>,
    pub limits: Limits,
}

impl RuleSpec {
    /// The validator for calls of `function` in `file`, if a requirement names one.
    pub fn validator(&self, file: &str, function: &str) -> Option<Validator> {
        self.requirements
            .iter()
            .filter(|r| r.function == function && r.matches(file))
            .find_map(|r| r.validate)
    }
}

impl std::fmt::Debug for RuleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSpec")
            .field("requirements", &self.requirements)
            .field("samples", &self.samples.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Requirement {
    /// Whether the `file` field is a pattern rather than one file name.
    pub fn is_pattern(&self) -> bool {
        self.file.contains(['*', '?', '[', '{'])
    }

    /// Whether this requirement applies to the rule file `name`.
    pub fn matches(&self, name: &str) -> bool {
        if !self.is_pattern() {
            return self.file == name;
        }
        matcher(self.file).is_some_and(|m| m.is_match(name))
    }
}

/// A glob where `*` stays within one path segment, as in a shell.
///
/// Compiled once per pattern and process: a glob becomes a regex whose DFA takes a
/// millisecond to build, and the patterns are berth's own constants, asked on every load
/// and every detection.
pub(crate) fn matcher(pattern: &'static str) -> Option<GlobMatcher> {
    static COMPILED: LazyLock<Mutex<HashMap<&'static str, Option<GlobMatcher>>>> =
        LazyLock::new(Mutex::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    compiled
        .entry(pattern)
        .or_insert_with(|| {
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .ok()
                .map(|g: Glob| g.compile_matcher())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_match_names_and_patterns() {
        let exact = Requirement {
            file: "policies/landing.rhai",
            function: "admit",
            arity: 2,
            validate: None,
        };
        assert!(exact.matches("policies/landing.rhai"));
        assert!(!exact.matches("policies/landing.rhai.bak"));
        let pattern = Requirement {
            file: "rules/detectors/*.rhai",
            ..exact
        };
        assert!(pattern.matches("rules/detectors/hand_merged.rhai"));
        assert!(!pattern.matches("rules/detectors/deeper/x.rhai"));
        assert!(!pattern.matches("rules/discovery.rhai"));
    }

    #[test]
    fn the_standard_spec_validates_the_landing_contract() {
        let spec = RuleSpec::standard();
        let admit = spec.validator("policies/landing.rhai", "admit").unwrap();
        let args = [Value::Null, Value::Null];
        assert!(
            admit(
                &args,
                &serde_json::json!({"decision": "go", "reason": "ok"})
            )
            .is_ok()
        );
        assert!(
            admit(
                &args,
                &serde_json::json!({"decision": "maybe", "reason": ""})
            )
            .is_err()
        );
        assert!(spec.validator("rules/discovery.rhai", "admit").is_none());
    }
}
