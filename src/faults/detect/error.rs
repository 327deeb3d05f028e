//! Why a detector said nothing usable, or a run could not be read.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::EvalAltResult;

use super::super::json_file::JsonFileError;
use super::super::learned::AnswerError as LearnedAnswerError;
use super::super::learned_match::Unanswered;
use super::super::learned_match::worker::WorkerError;
use super::super::rules::{AnswerError, LEARNED_RULE};
use super::super::state_file::StateFileError;
use crate::rules::RuleError;

/// Why a detector said nothing usable, or a run could not be read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{}: {source}", .path.display())]
    State {
        path: PathBuf,
        source: StateFileError,
    },
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("{file}: `{function}` returned a value that is not JSON ({source})")]
    NotJson {
        file: String,
        function: &'static str,
        source: Box<EvalAltResult>,
    },
    #[error("{file}: `{function}` returned an invalid answer: {source}")]
    InvalidAnswer {
        file: String,
        function: &'static str,
        source: BadAnswer,
    },
    #[error("{}: left out of the detectors' `review`: {source}", .path.display())]
    ReviewRefused {
        path: PathBuf,
        source: Arc<JsonFileError>,
    },
    #[error("{LEARNED_RULE}: learned patterns are not representable for rules")]
    PatternsNotRepresentable,
    #[error("queue facts are not representable for rules: {0}")]
    FactsNotRepresentable(Box<EvalAltResult>),
    #[error("learned pattern {index} ({category}): {why}; it did not match")]
    LearnedUnanswered {
        /// Its index in the learned-patterns file.
        index: usize,
        category: String,
        why: Unanswered,
    },
    #[error(transparent)]
    LearnedWorker(#[from] WorkerError),
}

/// What is wrong with a detector's answer.
#[derive(Debug, thiserror::Error)]
pub enum BadAnswer {
    #[error(transparent)]
    Detector(AnswerError),
    #[error(transparent)]
    Learned(LearnedAnswerError),
    #[error("fault #{number}: category `{category}` is not a loaded learned pattern")]
    NotLoaded { number: usize, category: String },
}
