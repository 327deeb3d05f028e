//! The errors of the rules engine. Every one names the rule file, and where rhai knows it,
//! the line and column, because an operator fixing a rule at 3 a.m. needs `file:line:col`,
//! not a stack of wrapped messages.

use std::fmt;
use std::path::PathBuf;

use rhai::{EvalAltResult, ParseError, Position};

/// A place in a rule file: `file`, `file:line` or `file:line:col` (1-based, as rhai counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: Option<usize>,
    pub col: Option<usize>,
}

impl Location {
    /// The whole file, no position.
    pub fn file(file: &str) -> Location {
        Location {
            file: file.to_owned(),
            line: None,
            col: None,
        }
    }

    pub fn at(file: &str, position: Position) -> Location {
        Location {
            file: file.to_owned(),
            line: position.line(),
            col: position.position(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.col {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

/// Why one call into a rule did not produce a usable answer. The core then falls back to
/// its built-in default for that one decision; nothing else is affected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The script raised an error (a thrown value, a type mismatch, a limit it ran into).
    #[error("{at}: in `{function}`: {message}")]
    Script {
        at: Location,
        function: String,
        message: String,
    },
    /// The call ran past the wall-clock deadline and was stopped.
    #[error(
        "{at}: in `{function}`: stopped after the {limit_ms} {}",
        STOPPED_AT_DEADLINE
    )]
    Timeout {
        at: Location,
        function: String,
        limit_ms: u128,
    },
    /// The call returned, but not what the contract asks for.
    #[error("{file}: `{function}` returned an invalid value: {reason}")]
    Invalid {
        file: String,
        function: String,
        reason: String,
    },
    /// The active set has the file, but not a function of that name and arity.
    #[error("{file}: no function `{function}` taking {arity} argument(s)")]
    NoFunction {
        file: String,
        function: String,
        arity: usize,
    },
    /// The active set has no such file.
    #[error("no rule file `{file}` in the active rule set")]
    NoFile { file: String },
    /// An argument the core built cannot be represented in rhai (never expected).
    #[error("{file}: `{function}`: argument {index} cannot be passed to a rule: {reason}")]
    BadArgument {
        file: String,
        function: String,
        index: usize,
        reason: String,
    },
}

impl RuleError {
    /// Turns rhai's error (often wrapped in "in call to function …" layers) into one line
    /// that points at the innermost position.
    pub(crate) fn from_eval(
        file: &str,
        function: &str,
        error: &EvalAltResult,
        deadline_ms: u128,
    ) -> RuleError {
        let inner = error.unwrap_inner();
        let position = innermost_position(error);
        let at = Location::at(file, position);
        if let EvalAltResult::ErrorTerminated(token, _) = inner
            && token.to_string() == super::engine::MEMORY_TOKEN
        {
            return RuleError::Script {
                at,
                function: function.to_owned(),
                message: format!(
                    "stopped: the call held more than {} MiB of memory",
                    super::memory::MAX_CALL_BYTES >> 20
                ),
            };
        }
        if let EvalAltResult::ErrorTerminated(..) = inner {
            return RuleError::Timeout {
                at,
                function: function.to_owned(),
                limit_ms: deadline_ms,
            };
        }
        // rhai appends " (line L, position C)" to its message; the location says it.
        let mut message = inner.to_string();
        if !inner.position().is_none()
            && let Some(bare) = message.strip_suffix(&format!(" ({})", inner.position()))
        {
            message = bare.to_owned();
        }
        RuleError::Script {
            at,
            function: function.to_owned(),
            message: clip(message),
        }
    }
}

/// The most of a rule's error message (or of an answer quoted in one) berth keeps: a rule
/// can throw a string of megabytes, which would otherwise be copied into every log line,
/// the decision log and `rule-fallbacks.json` (read by `berth status` under a size cap).
pub const MAX_MESSAGE_BYTES: usize = 2000;

/// `text` cut to [`MAX_MESSAGE_BYTES`] at a character boundary, marked with `…`.
pub(crate) fn clip(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let cut = (0..=MAX_MESSAGE_BYTES)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The deepest known position in a chain of wrapped errors: the line that actually failed,
/// not the call site of the function that contains it.
fn innermost_position(error: &EvalAltResult) -> Position {
    match error {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, pos)
        | EvalAltResult::ErrorInModule(_, inner, pos) => {
            let deeper = innermost_position(inner);
            if deeper.is_none() { *pos } else { deeper }
        }
        other => other.position(),
    }
}

/// Why a rule set (the whole set of files) was not accepted: by `berth rules check`, by
/// `berth rules test`, at daemon start, or by a hot reload.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file berth will not read as a rule (too big, not UTF-8, too many files).
    #[error("{path}: {reason}")]
    Refused { path: PathBuf, reason: String },
    #[error("{at}: syntax error: {message}")]
    Syntax { at: Location, message: String },
    #[error("{file}: required rule file is missing (nothing embedded, nothing in the rules root)")]
    MissingFile { file: String },
    #[error("{file}: missing `fn {function}` with {arity} parameter(s){found}")]
    MissingFunction {
        file: String,
        function: String,
        arity: usize,
        /// ` (found `fn f(a)`)` when a function of that name has the wrong arity.
        found: String,
    },
    /// A test file that is not a JSON list of cases.
    #[error("{at}: not a list of rule tests: {message}")]
    BadTests { at: Location, message: String },
    /// A contract function failed, or answered outside its contract, on a built-in sample.
    #[error("{file}: `{function}` on the built-in sample \"{sample}\": {message}")]
    SampleRefused {
        file: String,
        function: &'static str,
        sample: &'static str,
        message: String,
    },
    #[error("{file}: test {case}: {message}")]
    TestFailed {
        file: String,
        case: String,
        message: String,
    },
}

impl LoadError {
    /// The file the error is about, as the set names it (`policies/landing.rhai`), or the
    /// path that could not be read.
    pub fn file(&self) -> String {
        match self {
            LoadError::Io { path, .. } | LoadError::Refused { path, .. } => {
                path.display().to_string()
            }
            LoadError::Syntax { at, .. } | LoadError::BadTests { at, .. } => at.file.clone(),
            LoadError::MissingFile { file }
            | LoadError::MissingFunction { file, .. }
            | LoadError::SampleRefused { file, .. }
            | LoadError::TestFailed { file, .. } => file.clone(),
        }
    }

    pub(crate) fn syntax(file: &str, error: &ParseError) -> LoadError {
        LoadError::Syntax {
            at: Location::at(file, error.position()),
            message: error.err_type().to_string(),
        }
    }
}

/// How a [`RuleError::Timeout`] ends its message (after the limit in ms).
const STOPPED_AT_DEADLINE: &str = "ms deadline";

/// Everything wrong with one attempt to build a rule set, plus what was learnt on the way.
#[derive(Debug)]
pub struct LoadFailure {
    /// The hash of the files that were read, when they could all be read.
    pub hash: Option<String>,
    pub errors: Vec<LoadError>,
    /// The rule tests that ran (all of them, passing and failing), for `berth rules test`.
    pub cases: Vec<super::case_result::CaseResult>,
}

impl LoadFailure {
    pub(crate) fn single(error: LoadError) -> LoadFailure {
        LoadFailure {
            hash: None,
            errors: vec![error],
            cases: Vec::new(),
        }
    }

    /// Whether the same files may be accepted on another try: an error came from a file
    /// that could not be read, or from a rule call (a sample or a rule test) stopped at its
    /// deadline, which a loaded machine causes as much as the text does. Sample and test
    /// failures keep only their message, so a timeout is told by its wording.
    pub fn may_pass_on_retry(&self) -> bool {
        self.errors.iter().any(|error| match error {
            LoadError::Io { .. } => true,
            LoadError::SampleRefused { message, .. } | LoadError::TestFailed { message, .. } => {
                message.contains(STOPPED_AT_DEADLINE)
            }
            _ => false,
        })
    }

    /// The first error, which the status line shows.
    pub fn headline(&self) -> String {
        match self.errors.as_slice() {
            [] => "rule set refused".to_owned(),
            [only] => only.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        }
    }
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_print_as_file_line_col() {
        assert_eq!(Location::file("a.rhai").to_string(), "a.rhai");
        let at = Location {
            file: "policies/landing.rhai".into(),
            line: Some(3),
            col: Some(7),
        };
        assert_eq!(at.to_string(), "policies/landing.rhai:3:7");
    }
}
