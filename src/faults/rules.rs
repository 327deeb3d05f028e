//! What the faults bring to the rules engine: the detector contracts (which files must
//! define which function, and the validator of their answers) and the `state_jsonpath`
//! primitive with the [`StateDoc`] type it works on.
//!
//! Why a custom type: an orchestrator state can be megabytes (10,000 features is ~2 MB).
//! Converting it into rhai maps for every detector call would cost more than the detection
//! itself, so the parsed state (a [`Document`], with the compact form queries run on) is
//! handed to rules behind an `Arc` and rules query it with `state_jsonpath(state, path)`
//! (which converts only what matched) or `state["field"]` / `state.field` (which converts
//! only that field). Rule tests pass plain maps instead; `state_jsonpath` accepts those too,
//! with the same results.

use std::borrow::Cow;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Position};
use serde_json::Value;

use super::fault::{Fault, FaultError};
use super::state_jsonpath::{Document, state_jsonpath};
use crate::rules::Requirement;
use crate::rules::spec::Invalid;

/// The orchestrator detectors, run in file-name order (the numeric prefixes keep
/// detectors.md's order).
pub const DETECTORS: &str = "rules/detectors/*.rhai";
/// The release-queue detectors, in file-name order.
pub const QUEUE_DETECTORS: &str = "rules/detectors/queue/*.rhai";
/// The rule that applies learned patterns.
pub const LEARNED_RULE: &str = "rules/learned.rhai";
/// `fn detect(input)` in every detector file.
pub const DETECT_FN: &str = "detect";
/// `fn learned(input)` in the learned rule.
pub const LEARNED_FN: &str = "learned";

/// The detector contracts, which `RuleSpec::standard` adds to berth's spec.
pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        file: DETECTORS,
        function: DETECT_FN,
        arity: 1,
        validate: Some(validate_faults),
    },
    Requirement {
        file: QUEUE_DETECTORS,
        function: DETECT_FN,
        arity: 1,
        validate: Some(validate_faults),
    },
    Requirement {
        file: LEARNED_RULE,
        function: LEARNED_FN,
        arity: 1,
        validate: Some(super::learned::validate_learned_faults),
    },
];

/// Why a detector's answer is not a list of valid faults: the entry and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error("a detector returns a list of faults, not {0}")]
    NotAList(&'static str),
    #[error("fault #{number}: {source}")]
    Fault { number: usize, source: FaultError },
}

/// A detector's answer: a list of valid faults. The error names the entry and the field.
pub fn validate_faults(_args: &[Value], result: &Value) -> Result<(), Invalid> {
    parse_faults(result).map(drop).map_err(Into::into)
}

/// The faults of a detector's answer, or why it is not a list of valid faults.
pub fn parse_faults(result: &Value) -> Result<Vec<Fault>, AnswerError> {
    let Value::Array(items) = result else {
        return Err(AnswerError::NotAList(super::fault::kind_of(result)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            Fault::from_json(item).map_err(|source| AnswerError::Fault {
                number: i + 1,
                source,
            })
        })
        .collect()
}

/// An orchestrator state, parsed and compacted once, shared read-only with every rule call.
#[derive(Clone, Debug)]
pub struct StateDoc(pub Arc<Document>);

/// Registers [`StateDoc`] and `state_jsonpath` on the hardened engine (an
/// [`crate::rules::engine::Extension`]).
pub fn register_primitives(engine: &mut Engine) {
    engine.register_type_with_name::<StateDoc>("StateDoc");
    engine.register_fn(
        "state_jsonpath",
        |doc: &mut StateDoc, path: &str| -> Result<Array, Box<EvalAltResult>> {
            to_rhai(path, doc.0.query(path))
        },
    );
    engine.register_fn(
        "state_jsonpath",
        |value: Dynamic, path: &str| -> Result<Array, Box<EvalAltResult>> {
            let json: Value = rhai::serde::from_dynamic(&value)?;
            to_rhai(path, state_jsonpath(&json, path))
        },
    );
    engine.register_fn("js_string", js_string);
    engine.register_indexer_get(
        |doc: &mut StateDoc, field: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            match doc.0.value().get(field) {
                Some(value) => rhai::serde::to_dynamic(value),
                None => Ok(Dynamic::UNIT),
            }
        },
    );
}

/// `js_string(value)`: the text JavaScript's `String(value)` (and a template literal's
/// `${value}`) gives, so descriptions read exactly as gstack writes them: `5` for an
/// iteration count parsed as `5.0`, `undefined` for a missing field (rhai has no null, so a
/// null field reads as missing too), `1,2` for a list, `[object Object]` for a map.
pub fn js_string(value: Dynamic) -> String {
    if value.is_unit() {
        return "undefined".to_owned();
    }
    if let Some(f) = value.clone().try_cast::<rhai::FLOAT>() {
        return js_float(f);
    }
    if let Some(items) = value.clone().try_cast::<Array>() {
        return items
            .into_iter()
            .map(|item| {
                if item.is_unit() {
                    String::new()
                } else {
                    js_string(item)
                }
            })
            .collect::<Vec<_>>()
            .join(",");
    }
    if value.is_map() {
        return "[object Object]".to_owned();
    }
    value.to_string()
}

/// A number as JavaScript prints it (for the values a state file holds: integers without
/// a fraction, decimals in their shortest form).
pub fn js_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if f == 0.0 {
        "0".to_owned()
    } else if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// The matches of `path` as rhai values (a pattern outside the grammar has none).
fn to_rhai(path: &str, found: Vec<Cow<'_, Value>>) -> Result<Array, Box<EvalAltResult>> {
    found
        .into_iter()
        .map(|found| {
            rhai::serde::to_dynamic(found.as_ref()).map_err(|e| {
                EvalAltResult::ErrorRuntime(
                    format!("state_jsonpath `{path}`: {e}").into(),
                    Position::NONE,
                )
                .into()
            })
        })
        .collect()
}
