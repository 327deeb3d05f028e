//! The core primitives a rule may call, besides rhai's standard package. Each is pure
//! computation over its arguments, bounded in cost, and touches no file, socket or process.
//!
//! - `jsonpath(value, path)`: RFC 9535 JSONPath (jsonpath-rust) over a map or array; returns
//!   the array of matches. Untrusted paths are capped in length, bracket nesting and `..`
//!   descents, since the library bounds neither (crate-notes).
//! - `regex_is_match(text, pattern)`: Rust `regex` (linear time, no backtracking), compiled
//!   under the learned patterns' size limits (one place for both), over a text of at most
//!   [`MAX_REGEX_TEXT`] bytes; compiled patterns cached. A match costs the automaton's size
//!   times the text, so both are bounded to keep one call well inside the rule deadline.
//! - `now_iso()`, `now_epoch()`, `parse_iso(s)`, `parse_iso_ms(s)`, `hour_utc(t)`,
//!   `weekday_utc(t)`, `iso_of(epoch)`: time in UTC. Policies should prefer `ctx.now` /
//!   `ctx.nowEpoch` so their tests are reproducible.
//! - `log(value)`: a line in berth's log, tagged with the rule file.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use jsonpath_rust::JsonPath;
use regex::{Regex, RegexBuilder};
use rhai::{Array, Dynamic, Engine, EvalAltResult, Position};

use crate::faults::learned_match::{REGEX_CACHE_BYTES, REGEX_SIZE_LIMIT};

/// Longest JSONPath a rule may use.
pub const MAX_JSONPATH_LEN: usize = 256;
/// Deepest nesting of `[` and `(` in a JSONPath.
pub const MAX_JSONPATH_NESTING: usize = 8;
/// Most `..` (descendant) segments in one JSONPath: each one walks the whole value.
pub const MAX_JSONPATH_DESCENTS: usize = 2;
/// Longest regex pattern a rule may use.
pub const MAX_REGEX_LEN: usize = 1024;
/// Longest text `regex_is_match` looks at; a longer one is an error (the rule fails closed).
/// With the compiled-size limit shared with learned patterns, the worst pattern over this
/// much text takes ~100 ms (twice the ~50 ms `benches/faults.rs` measures over 32 KiB).
pub const MAX_REGEX_TEXT: usize = 64 * 1024;
/// Distinct patterns kept compiled; the cache is emptied when full (rules use a handful).
const REGEX_CACHE_CAP: usize = 256;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn fail<T>(message: String) -> RhaiResult<T> {
    Err(EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into())
}

/// Why a primitive refused its argument; the rule sees the text as a runtime error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrimitiveError {
    #[error("jsonpath is {0} bytes long; the limit is {MAX_JSONPATH_LEN}")]
    JsonpathLength(usize),
    #[error("jsonpath has {0} `..` descents; the limit is {MAX_JSONPATH_DESCENTS}")]
    JsonpathDescents(usize),
    #[error("jsonpath nests {0} levels of brackets; the limit is {MAX_JSONPATH_NESTING}")]
    JsonpathNesting(usize),
    #[error("regex is {0} bytes long; the limit is {MAX_REGEX_LEN}")]
    RegexLength(usize),
    #[error("regex `{pattern}`: {source}")]
    Regex {
        pattern: String,
        source: regex::Error,
    },
}

pub(crate) fn register(engine: &mut Engine) {
    engine.register_fn("jsonpath", jsonpath);
    engine.register_fn("regex_is_match", regex_is_match);
    engine.register_fn("now_iso", crate::clock::now_iso);
    engine.register_fn("now_epoch", || crate::clock::now().timestamp());
    engine.register_fn("parse_iso", |text: &str| epoch(text, |t| t.timestamp()));
    engine.register_fn("parse_iso_ms", |text: &str| {
        epoch(text, |t| t.timestamp_millis())
    });
    engine.register_fn("iso_of", iso_of);
    engine.register_fn("hour_utc", |secs: rhai::INT| {
        at_epoch(secs).map(|t| t.hour() as rhai::INT)
    });
    engine.register_fn("hour_utc", |text: &str| {
        at_iso(text).map(|t| t.hour() as rhai::INT)
    });
    engine.register_fn("weekday_utc", |secs: rhai::INT| at_epoch(secs).map(weekday));
    engine.register_fn("weekday_utc", |text: &str| at_iso(text).map(weekday));
}

/// `jsonpath(value, path)`: the matches of `path` in `value`, as an array.
fn jsonpath(value: Dynamic, path: &str) -> RhaiResult<Array> {
    check_jsonpath(path).or_else(|e| fail(e.to_string()))?;
    let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
    let matches = json
        .query(path)
        .or_else(|e| fail(format!("jsonpath `{path}`: {e}")))?;
    matches.into_iter().map(rhai::serde::to_dynamic).collect()
}

/// Refuses paths whose evaluation cost or parser recursion is unbounded.
pub(crate) fn check_jsonpath(path: &str) -> Result<(), PrimitiveError> {
    if path.len() > MAX_JSONPATH_LEN {
        return Err(PrimitiveError::JsonpathLength(path.len()));
    }
    let descents = path.matches("..").count();
    if descents > MAX_JSONPATH_DESCENTS {
        return Err(PrimitiveError::JsonpathDescents(descents));
    }
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for c in path.chars() {
        match c {
            '[' | '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_JSONPATH_NESTING {
        return Err(PrimitiveError::JsonpathNesting(deepest));
    }
    Ok(())
}

static REGEXES: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// `regex_is_match(text, pattern)`.
fn regex_is_match(text: &str, pattern: &str) -> RhaiResult<bool> {
    if text.len() > MAX_REGEX_TEXT {
        return fail(format!(
            "regex_is_match: the text is {} bytes; the limit is {MAX_REGEX_TEXT}",
            text.len()
        ));
    }
    let regex = compiled(pattern).or_else(|e| fail(e.to_string()))?;
    Ok(regex.is_match(text))
}

fn compiled(pattern: &str) -> Result<Arc<Regex>, PrimitiveError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(PrimitiveError::RegexLength(pattern.len()));
    }
    // A poisoned cache only means another thread panicked mid-insert; the map is still a
    // valid map of compiled regexes.
    let mut cache = REGEXES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(regex) = cache.get(pattern) {
        return Ok(Arc::clone(regex));
    }
    let regex = RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_CACHE_BYTES)
        .build()
        .map_err(|source| PrimitiveError::Regex {
            pattern: pattern.to_owned(),
            source,
        })?;
    if cache.len() >= REGEX_CACHE_CAP {
        cache.clear();
    }
    let regex = Arc::new(regex);
    cache.insert(pattern.to_owned(), Arc::clone(&regex));
    Ok(regex)
}

/// Epoch seconds (or millis) of an ISO-8601 string, `()` when it is not one: a rule tests
/// for `()` rather than catching an error.
fn epoch(text: &str, unit: fn(DateTime<Utc>) -> i64) -> Dynamic {
    crate::clock::parse_iso(text).map_or(Dynamic::UNIT, |t| Dynamic::from_int(unit(t)))
}

fn iso_of(secs: rhai::INT) -> RhaiResult<String> {
    at_epoch(secs).map(crate::clock::iso)
}

fn at_epoch(secs: rhai::INT) -> RhaiResult<DateTime<Utc>> {
    match Utc.timestamp_opt(secs, 0).single() {
        Some(t) => Ok(t),
        None => fail(format!("{secs} is not a representable epoch second")),
    }
}

fn at_iso(text: &str) -> RhaiResult<DateTime<Utc>> {
    match crate::clock::parse_iso(text) {
        Some(t) => Ok(t),
        None => fail(format!("`{text}` is not an ISO-8601 timestamp")),
    }
}

/// ISO weekday: Monday 1 … Sunday 7.
fn weekday(t: DateTime<Utc>) -> rhai::INT {
    rhai::INT::from(t.weekday().number_from_monday())
}

#[cfg(test)]
mod tests {
    use super::super::engine::{CallGuard, LIMITS, hardened_engine};
    use super::*;

    fn eval(script: &str) -> Result<Dynamic, String> {
        let engine = hardened_engine(&LIMITS, &[]);
        let _guard = CallGuard::enter("test.rhai", &LIMITS);
        engine.eval::<Dynamic>(script).map_err(|e| e.to_string())
    }

    #[test]
    fn jsonpath_queries_maps_and_refuses_costly_paths() {
        let found = eval(
            r#"jsonpath(#{features: [#{n: 1, ok: true}, #{n: 2, ok: false}]}, "$.features[?@.ok == true].n")"#,
        )
        .unwrap();
        assert_eq!(found.to_string(), "[1]");
        let deep = format!("$.a{}", "[0]".repeat(3));
        assert!(eval(&format!(r#"jsonpath(#{{a: [[[1]]]}}, "{deep}")"#)).is_ok());
        for (path, why) in [
            ("$..a..b..c", "descents"),
            (&format!("$.a{}", "[?(".repeat(5)), "nests"),
            (&format!("$.{}", "a".repeat(300)), "bytes long"),
        ] {
            let err = eval(&format!(r#"jsonpath(#{{}}, "{path}")"#)).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
        let err = eval(r#"jsonpath(#{}, "$[")"#).unwrap_err();
        assert!(err.contains("jsonpath `$[`"), "{err}");
    }

    #[test]
    fn regexes_match_and_bad_ones_are_errors() {
        assert_eq!(
            eval(r#"regex_is_match("VERIFICATION: GAPS", "GAPS$")"#)
                .unwrap()
                .as_bool(),
            Ok(true)
        );
        assert!(eval(r#"regex_is_match("x", "(")"#).is_err());
        let huge = "a{1000}{1000}";
        let err = eval(&format!(r#"regex_is_match("x", "{huge}")"#)).unwrap_err();
        assert!(err.contains("regex"), "{err}");
    }

    #[test]
    fn time_helpers_are_utc() {
        assert_eq!(
            eval(r#"parse_iso("2026-05-17T08:37:01.250Z")"#)
                .unwrap()
                .as_int(),
            Ok(1_779_007_021)
        );
        assert_eq!(
            eval(r#"parse_iso_ms("2026-05-17T08:37:01.250Z")"#)
                .unwrap()
                .as_int(),
            Ok(1_779_007_021_250)
        );
        assert!(eval(r#"parse_iso("tuesday")"#).unwrap().is_unit());
        assert_eq!(
            eval(r#"hour_utc("2026-05-17T08:37:01+02:00")"#)
                .unwrap()
                .as_int(),
            Ok(6)
        );
        // 2026-05-17 is a Sunday.
        assert_eq!(eval("weekday_utc(1779007021)").unwrap().as_int(), Ok(7));
        assert_eq!(
            eval("iso_of(0)").unwrap().into_string().unwrap(),
            "1970-01-01T00:00:00.000Z"
        );
        assert!(eval("now_epoch() > 1700000000").unwrap().as_bool().unwrap());
    }
}
