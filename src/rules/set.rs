//! A compiled rule set: one AST per file, the hash of the files, and the generic call API
//! every contract (and every other berth module with rule files) goes through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, CallFnOptions, Dynamic, Engine, Scope};
use serde_json::Value;

use super::engine::{CallGuard, Limits};
use super::error::{Location, RuleError};
use super::source::SourceFile;

/// One compiled `.rhai` file.
#[derive(Debug)]
pub struct CompiledFile {
    pub name: String,
    pub overridden: bool,
    /// `(name, arity)` of every function it defines, sorted (rhai keeps no order).
    pub functions: Vec<(String, usize)>,
    ast: AST,
}

impl CompiledFile {
    pub(crate) fn new(file: &SourceFile, ast: AST) -> CompiledFile {
        // rhai names closures `anon$<hash>`: not functions anyone can call by name.
        let mut functions: Vec<(String, usize)> = ast
            .iter_functions()
            .filter(|f| !f.name.starts_with("anon$"))
            .map(|f| (f.name.to_owned(), f.params.len()))
            .collect();
        functions.sort();
        CompiledFile {
            name: file.name.clone(),
            overridden: file.overridden,
            functions,
            ast,
        }
    }

    pub fn has_function(&self, function: &str, arity: usize) -> bool {
        self.functions
            .iter()
            .any(|(name, n)| name == function && *n == arity)
    }
}

/// The rule set a decision is made with. Immutable: a reload builds a new one and swaps it
/// in whole, so one decision never mixes two versions of the rules.
#[derive(Debug)]
pub struct RuleSet {
    engine: Arc<Engine>,
    limits: Limits,
    files: BTreeMap<String, CompiledFile>,
    hash: String,
    root: Option<PathBuf>,
}

impl RuleSet {
    pub(crate) fn new(
        engine: Arc<Engine>,
        limits: Limits,
        files: BTreeMap<String, CompiledFile>,
        hash: String,
        root: Option<PathBuf>,
    ) -> RuleSet {
        RuleSet {
            engine,
            limits,
            files,
            hash,
            root,
        }
    }

    /// sha256 (hex) of the files' names and contents (see [`super::SourceSet::hash`]).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The first 12 hex digits of the hash: enough to tell sets apart in logs and status.
    pub fn short_hash(&self) -> &str {
        short(&self.hash)
    }

    /// The rules root it was read from; `None` for the embedded defaults alone.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// `embedded defaults` or the rules root, for status lines.
    pub fn describe_source(&self) -> String {
        describe_root(self.root())
    }

    pub fn files(&self) -> impl Iterator<Item = &CompiledFile> {
        self.files.values()
    }

    pub fn file(&self, name: &str) -> Option<&CompiledFile> {
        self.files.get(name)
    }

    /// The rule files whose names match `pattern` (a glob where `*` stays within one
    /// directory, e.g. `rules/detectors/*.rhai`), in name order. A bad pattern matches
    /// nothing.
    pub fn files_matching(&self, pattern: &'static str) -> Vec<&str> {
        let Some(matcher) = super::spec::matcher(pattern) else {
            return Vec::new();
        };
        self.files
            .keys()
            .filter(|name| matcher.is_match(name.as_str()))
            .map(String::as_str)
            .collect()
    }

    pub fn has_function(&self, file: &str, function: &str, arity: usize) -> bool {
        self.files
            .get(file)
            .is_some_and(|f| f.has_function(function, arity))
    }

    /// Calls `function` of `file` with `args`, within the deadline and every limit. The
    /// file's top-level statements are not run: a rule file is a set of functions.
    pub fn call(
        &self,
        file: &str,
        function: &str,
        args: Vec<Dynamic>,
    ) -> Result<Dynamic, RuleError> {
        let compiled = self.files.get(file).ok_or_else(|| RuleError::NoFile {
            file: file.to_owned(),
        })?;
        if !compiled.has_function(function, args.len()) {
            return Err(RuleError::NoFunction {
                file: file.to_owned(),
                function: function.to_owned(),
                arity: args.len(),
            });
        }
        let guard = CallGuard::enter(file, &self.limits);
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        let answer = self
            .engine
            .call_fn_with_options::<Dynamic>(
                options,
                &mut Scope::new(),
                &compiled.ast,
                function,
                args,
            )
            .map_err(|e| {
                RuleError::from_eval(file, function, &e, self.limits.deadline.as_millis())
            })?;
        // The clock is read between operations only: one long native call (a regex) can
        // return after the deadline. Its answer is late, and a late answer is a timeout.
        if guard.past_deadline() {
            return Err(RuleError::Timeout {
                at: Location::at(file, rhai::Position::NONE),
                function: function.to_owned(),
                limit_ms: self.limits.deadline.as_millis(),
            });
        }
        Ok(answer)
    }

    /// [`RuleSet::call`] with JSON in and out: the form every contract uses. Arguments
    /// become rhai maps and arrays (copies: a rule cannot change the core's data); the
    /// result must be representable as JSON.
    pub fn call_json(
        &self,
        file: &str,
        function: &str,
        args: &[Value],
    ) -> Result<Value, RuleError> {
        let mut dynamic_args = Vec::with_capacity(args.len());
        for (index, arg) in args.iter().enumerate() {
            let value = rhai::serde::to_dynamic(arg).map_err(|e| RuleError::BadArgument {
                file: file.to_owned(),
                function: function.to_owned(),
                index,
                reason: e.to_string(),
            })?;
            dynamic_args.push(value);
        }
        let result = self.call(file, function, dynamic_args)?;
        rhai::serde::from_dynamic::<Value>(&result).map_err(|e| RuleError::Invalid {
            file: file.to_owned(),
            function: function.to_owned(),
            reason: format!("not representable as JSON ({e})"),
        })
    }
}

pub(crate) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

pub(crate) fn describe_root(root: Option<&Path>) -> String {
    match root {
        None => "embedded defaults".to_owned(),
        Some(root) => root.display().to_string(),
    }
}
