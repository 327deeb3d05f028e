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

/// Why a rule's answer is outside its contract.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("`{key}` must be a string, not {found}")]
    NotText { key: &'static str, found: Value },
    /// The answer is not a map; the text quotes a little of what came back.
    #[error("expected a map, got {0}")]
    NotAMap(String),
    #[error("`reason` must say why")]
    NoReason,
    #[error("`reason` is longer than {MAX_REASON} bytes")]
    ReasonTooLong,
    #[error("`accept` must be true or false, not {0}")]
    Accept(Value),
    #[error("expected an array of record ids, got {0}")]
    NotIds(Value),
    #[error("expected record ids (strings), found {0}")]
    NotAnId(Value),
    #[error("`{0}` is not one of the candidates")]
    NotACandidate(String),
    #[error("`{0}` appears twice")]
    Twice(String),
    #[error("must list every candidate exactly once; missing {}", .0.join(", "))]
    Unlisted(Vec<String>),
    /// `expected` lists the decisions the function may answer.
    #[error("`decision` must be {expected}, not \"{found}\"")]
    Decision {
        expected: &'static str,
        found: String,
    },
    #[error("`landed` needs an exit 0 and a merge the forge proved; this landing has neither")]
    LandedUnproven,
    #[error("the forge proved the merge, so the only true decision is \"landed\", not \"{0}\"")]
    ProvenNotLanded(String),
    #[error("`drift_repair` after a successful land makes no sense")]
    RepairAfterSuccess,
    #[error(
        "`drift_repair` refused: the record already had {repairs} repair(s); the cap is {cap}",
        cap = landing::MAX_RULE_DRIFT_REPAIRS
    )]
    RepairCapped { repairs: u32 },
    #[error(
        "`delay_secs` must be a whole number of seconds from 1 to {max}, not {found}",
        max = landing::MAX_REQUEUE_DELAY_SECS
    )]
    Delay { found: Value },
    #[error(
        "expected a whole number of lanes from 1 to {max}, got {found}",
        max = landing::MAX_LANES_CAP
    )]
    Lanes { found: Value },
    /// A rule test's land result is not one the core sends.
    #[error("the land result is not one the core sends: {0}")]
    LandFacts(serde_json::Error),
}

/// The longest `reason` a rule may give.
const MAX_REASON: usize = 2000;

/// Calls `function`, parses (= validates) the answer, or takes the fail-closed `fallback`.
fn decide<T>(
    set: &RuleSet,
    file: &'static str,
    function: &'static str,
    args: Vec<Value>,
    parse: impl FnOnce(&[Value], &Value) -> Result<T, AnswerError>,
    fallback: impl FnOnce(&RuleError, &[Value]) -> T,
) -> Decided<T> {
    let answer = set.call_json(file, function, &args).and_then(|value| {
        parse(&args, &value).map_err(|reason| RuleError::Invalid {
            file: file.to_owned(),
            function: function.to_owned(),
            reason: crate::rules::error::clip(reason.to_string()),
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
fn string_field<'a>(result: &'a Value, key: &'static str) -> Result<&'a str, AnswerError> {
    match result.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(AnswerError::NotText {
            key,
            found: other.clone(),
        }),
        None => Err(AnswerError::Missing(key)),
    }
}

/// An object result; the error quotes a little of what came back instead.
fn object(result: &Value) -> Result<&serde_json::Map<String, Value>, AnswerError> {
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
        AnswerError::NotAMap(text)
    })
}

/// A `reason` that will end up in a record's `lastError` or the decision log: a string,
/// non-empty when `required`, and of reasonable length.
fn reason(result: &Value, required: bool) -> Result<String, AnswerError> {
    let text = string_field(result, "reason")?;
    if required && text.trim().is_empty() {
        return Err(AnswerError::NoReason);
    }
    if text.len() > MAX_REASON {
        return Err(AnswerError::ReasonTooLong);
    }
    Ok(text.to_owned())
}
