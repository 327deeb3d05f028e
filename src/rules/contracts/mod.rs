//! The typed contracts between the core and its rule files. Each contract function calls
//! the rule, validates the answer in Rust, and on any error (script error, timeout,
//! invalid value) logs it loudly and returns the built-in default for that one decision.
//! Every default equals what the shipped rule does, so a broken rule degrades to DESIGN §3,
//! never to "do nothing" or "do anything".

pub mod discovery;
pub mod landing;

use serde_json::Value;

use super::error::RuleError;
use super::set::RuleSet;

/// A decision and where it came from.
#[derive(Clone, Debug)]
pub struct Decided<T> {
    pub value: T,
    pub file: &'static str,
    pub function: &'static str,
    /// The hash of the rule set asked.
    pub ruleset: String,
    /// Set when the rule failed and `value` is the built-in default.
    pub error: Option<RuleError>,
}

impl<T> Decided<T> {
    pub fn is_fallback(&self) -> bool {
        self.error.is_some()
    }
}

/// Calls `function`, parses (= validates) the answer, or falls back.
fn decide<T>(
    set: &RuleSet,
    file: &'static str,
    function: &'static str,
    args: &[Value],
    parse: fn(&[Value], &Value) -> Result<T, String>,
    fallback: impl FnOnce() -> T,
) -> Decided<T> {
    let answer = set.call_json(file, function, args).and_then(|value| {
        parse(args, &value).map_err(|reason| RuleError::Invalid {
            file: file.to_owned(),
            function: function.to_owned(),
            reason,
        })
    });
    let (value, error) = match answer {
        Ok(value) => (value, None),
        Err(error) => {
            tracing::error!(
                rules = set.short_hash(),
                "rule failed: {error}; this decision uses the built-in default"
            );
            (fallback(), Some(error))
        }
    };
    Decided {
        value,
        file,
        function,
        ruleset: set.hash().to_owned(),
        error,
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
