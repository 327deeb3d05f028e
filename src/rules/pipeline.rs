//! The one way a rule set is accepted: read, compile every file, check every required
//! function, run every rule test. Daemon start, hot reload, `berth rules check` and
//! `berth rules test` all call [`build`], so they cannot disagree about a set.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rhai::Engine;

use super::case_result::CaseResult;
use super::error::{LoadError, LoadFailure};
use super::selftest;
use super::set::{CompiledFile, RuleSet};
use super::source::SourceSet;
use super::spec::RuleSpec;

/// An accepted set and the tests it passed.
#[derive(Debug)]
pub struct Built {
    pub set: RuleSet,
    pub cases: Vec<CaseResult>,
}

/// Builds the set made of the embedded defaults overridden by `root`.
pub fn build(
    root: Option<&Path>,
    spec: &RuleSpec,
    engine: &Arc<Engine>,
) -> Result<Built, LoadFailure> {
    let source = SourceSet::load(root)?;
    build_from(&source, spec, engine)
}

pub(crate) fn build_from(
    source: &SourceSet,
    spec: &RuleSpec,
    engine: &Arc<Engine>,
) -> Result<Built, LoadFailure> {
    let fail = |errors: Vec<LoadError>, cases: Vec<CaseResult>| LoadFailure {
        hash: Some(source.hash().to_owned()),
        errors,
        cases,
    };
    let mut errors = Vec::new();
    let mut files = BTreeMap::new();
    for file in source.rule_files() {
        match engine.compile(&file.text) {
            Ok(ast) => {
                files.insert(file.name.clone(), CompiledFile::new(file, ast));
            }
            Err(e) => errors.push(LoadError::syntax(&file.name, &e)),
        }
    }
    if !errors.is_empty() {
        return Err(fail(errors, Vec::new()));
    }
    errors.extend(check_requirements(spec, &files));
    let set = RuleSet::new(
        Arc::clone(engine),
        spec.limits,
        files,
        source.hash().to_owned(),
        source.root().map(Path::to_owned),
    );
    let mut cases = Vec::new();
    for (tests, rule_file) in source.test_files() {
        if set.file(&rule_file).is_none() {
            errors.push(LoadError::BadTests {
                at: super::error::Location::file(&tests.name),
                message: format!("there is no rule file `{rule_file}` to test"),
            });
            continue;
        }
        match selftest::parse(tests) {
            Ok(parsed) => cases.extend(selftest::run(&set, spec, &tests.name, &rule_file, parsed)),
            Err(e) => errors.push(e),
        }
    }
    errors.extend(run_samples(&set, spec));
    errors.extend(cases.iter().filter_map(|case| {
        case.failure.as_ref().map(|message| LoadError::TestFailed {
            file: case.tests_file.clone(),
            case: format!("{} `{}`", case.label(), case.function),
            message: message.clone(),
        })
    }));
    if errors.is_empty() {
        Ok(Built { set, cases })
    } else {
        Err(fail(errors, cases))
    }
}

/// Calls every contract function the set defines with the spec's built-in samples; a
/// failed call or an answer its validator refuses is an error (the set's answer for a
/// real record would have been thrown away at runtime, failing closed).
fn run_samples(set: &RuleSet, spec: &RuleSpec) -> Vec<LoadError> {
    let mut errors = Vec::new();
    for samples in spec.samples {
        let Some(file) = set.file(samples.file) else {
            continue; // Reported as a missing file by the requirements.
        };
        for (sample, args) in (samples.calls)() {
            if !file.has_function(samples.function, args.len()) {
                continue; // Reported as a missing function by the requirements.
            }
            let answer = set
                .call_json(samples.file, samples.function, &args)
                .map_err(|e| e.to_string())
                .and_then(|got| match spec.validator(samples.file, samples.function) {
                    Some(validate) => validate(&args, &got)
                        .map_err(|reason| format!("invalid return value {got}: {reason}")),
                    None => Ok(()),
                });
            if let Err(message) = answer {
                errors.push(LoadError::SampleRefused {
                    file: samples.file.to_owned(),
                    function: samples.function,
                    sample,
                    message,
                });
            }
        }
    }
    errors
}

fn check_requirements(spec: &RuleSpec, files: &BTreeMap<String, CompiledFile>) -> Vec<LoadError> {
    let mut errors = Vec::new();
    for requirement in &spec.requirements {
        if !requirement.is_pattern() && !files.contains_key(requirement.file) {
            // Reported once per file, not once per function.
            let already = errors
                .iter()
                .any(|e| matches!(e, LoadError::MissingFile { file } if file == requirement.file));
            if !already {
                errors.push(LoadError::MissingFile {
                    file: requirement.file.to_owned(),
                });
            }
            continue;
        }
        for file in files.values().filter(|f| requirement.matches(&f.name)) {
            if file.has_function(requirement.function, requirement.arity) {
                continue;
            }
            let found = file
                .functions
                .iter()
                .filter(|(name, _)| name == requirement.function)
                .map(|(name, arity)| format!("`fn {name}` with {arity}"))
                .collect::<Vec<_>>();
            errors.push(LoadError::MissingFunction {
                file: file.name.clone(),
                function: requirement.function.to_owned(),
                arity: requirement.arity,
                found: if found.is_empty() {
                    String::new()
                } else {
                    format!(" (found {})", found.join(", "))
                },
            });
        }
    }
    errors
}
