//! The typed contracts between the core and its rule files. Each contract function calls
//! the rule, validates the answer in Rust, and on any error (script error, timeout,
//! invalid value) logs it loudly and returns that decision's conservative answer (DESIGN
//! §8, "rules fail closed"): `admit` waits, `accept_pr` does not accept, `max_lanes` is 1,
//! `order` and `on_land_result` take the built-in order and the facts-only verdict. A
//! broken rule can hold work back; it can never let through what a working rule would stop.
//! [`samples`] gives `berth rules check` inputs for every contract function, so an answer
//! outside a contract is refused before a set goes live.

pub mod discovery;
pub mod landing;
pub mod samples;

use serde_json::Value;

use super::engine::LIMITS;
use super::error::RuleError;
use super::set::RuleSet;
use super::spec::RuleSpec;

impl RuleSpec {
    /// berth's standard spec: the discovery and landing contracts, and the faults'
    /// detector contracts with their `state_jsonpath` primitive. The domains register
    /// here, so the engine's spec imports none of them.
    pub fn standard() -> RuleSpec {
        let mut requirements = Vec::new();
        requirements.extend_from_slice(discovery::REQUIREMENTS);
        requirements.extend_from_slice(landing::REQUIREMENTS);
        requirements.extend_from_slice(crate::faults::rules::REQUIREMENTS);
        RuleSpec {
            requirements,
            samples: samples::ALL,
            extensions: vec![crate::faults::rules::register_primitives],
            limits: LIMITS,
        }
    }
}

/// A decision and where it came from.
#[derive(Clone, Debug)]
pub struct Decided<T> {
    pub value: T,
    pub file: &'static str,
    pub function: &'static str,
    /// The hash of the rule set asked.
    pub ruleset: String,
    /// Set when the rule failed and `value` is the conservative fallback.
    pub error: Option<RuleError>,
    /// The arguments the rule was called with, exactly as it saw them: the decision log
    /// stores them so `berth rules replay` can ask another rule set the same question.
    pub args: Vec<Value>,
}

impl<T> Decided<T> {
    pub fn is_fallback(&self) -> bool {
        self.error.is_some()
    }
}

/// Calls `function`, parses (= validates) the answer, or takes the fail-closed `fallback`.
fn decide<T>(
    set: &RuleSet,
    file: &'static str,
    function: &'static str,
    args: Vec<Value>,
    parse: impl FnOnce(&[Value], &Value) -> Result<T, String>,
    fallback: impl FnOnce(&RuleError, &[Value]) -> T,
) -> Decided<T> {
    let answer = set.call_json(file, function, &args).and_then(|value| {
        parse(&args, &value).map_err(|reason| RuleError::Invalid {
            file: file.to_owned(),
            function: function.to_owned(),
            reason: crate::rules::error::clip(reason),
        })
    });
    let (value, error) = match answer {
        Ok(value) => (value, None),
        Err(error) => {
            tracing::error!(
                rules = set.short_hash(),
                "rule failed: {error}; this decision fails closed"
            );
            (fallback(&error, &args), Some(error))
        }
    };
    Decided {
        value,
        file,
        function,
        ruleset: set.hash().to_owned(),
        error,
        args,
    }
}

/// The string field `key` of an object result.
fn string_field<'a>(result: &'a Value, key: &str) -> Result<&'a str, String> {
    match result.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`{key}` must be a string, not {other}")),
        None => Err(format!("missing `{key}`")),
    }
}

/// An object result; the error quotes a little of what came back instead.
fn object(result: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    result.as_object().ok_or_else(|| {
        let mut text = result.to_string();
        if text.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push('…');
        }
        format!("expected a map, got {text}")
    })
}

/// A `reason` that will end up in a record's `lastError` or the decision log: a string,
/// non-empty when `required`, and of reasonable length.
fn reason(result: &Value, required: bool) -> Result<String, String> {
    const MAX_REASON: usize = 2000;
    let text = string_field(result, "reason")?;
    if required && text.trim().is_empty() {
        return Err("`reason` must say why".into());
    }
    if text.len() > MAX_REASON {
        return Err(format!("`reason` is longer than {MAX_REASON} bytes"));
    }
    Ok(text.to_owned())
}
