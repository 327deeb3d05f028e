//! Operator-configured argv templates for the landing and ship commands.
//!
//! Record fields (branch names, paths) are producer data. They are substituted *inside*
//! argv elements and never re-split, and no shell ever sees them, so a branch that reads
//! `x; rm -rf ~` or `$(curl evil)` reaches the program as one inert argument. Every
//! mistake an operator can make in a template is reported when the config is loaded, not
//! in the middle of landing someone's PR.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Listed in every "unknown placeholder" error so the operator sees the fix at once.
const KNOWN_PLACEHOLDERS: &str =
    "{pr}, {branch}, {base}, {repo}, {worktree}, {log}, {lock_ref}, {lock_sha}";

/// Why a command template was refused at config load.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    #[error("command template is empty: it needs at least the program to run")]
    Empty,
    #[error("command template's program (argv[0]) is an empty string")]
    EmptyProgram,
    #[error(
        "unknown placeholder `{{{name}}}` in argv[{index}] {arg:?}; known placeholders: {known} (write `{{{{` and `}}}}` for literal braces)",
        known = KNOWN_PLACEHOLDERS
    )]
    UnknownPlaceholder {
        name: String,
        index: usize,
        arg: String,
    },
    #[error("unclosed `{{` in argv[{index}] {arg:?} (write `{{{{` for a literal brace)")]
    Unclosed { index: usize, arg: String },
    #[error("stray `}}` in argv[{index}] {arg:?} (write `}}}}` for a literal brace)")]
    StrayClose { index: usize, arg: String },
    #[error(
        "placeholder `{{{name}}}` may not appear in the program (argv[0]) {arg:?}: the program to run must not come from record data; only {{repo}} and {{worktree}} (gated paths) may be used there"
    )]
    RecordValueInProgram { name: String, arg: String },
}

/// A `{name}` a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Pr,
    Branch,
    Base,
    Repo,
    Worktree,
    Log,
    LockRef,
    LockSha,
}

impl Placeholder {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "pr" => Self::Pr,
            "branch" => Self::Branch,
            "base" => Self::Base,
            "repo" => Self::Repo,
            "worktree" => Self::Worktree,
            "log" => Self::Log,
            "lock_ref" => Self::LockRef,
            "lock_sha" => Self::LockSha,
            _ => return None,
        })
    }

    /// Only paths that went through the repo-path gate may choose *which program* runs;
    /// a PR number, a branch name or berth's own log file never can.
    fn allowed_in_program(self) -> bool {
        matches!(self, Self::Repo | Self::Worktree)
    }
}

/// One piece of a templated argument.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Var(Placeholder),
}

/// The values a template is rendered with: one queued record's landing target.
///
/// `{log}` is not here: the runner chooses the attempt's log path itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepVars {
    /// `{pr}`: the pull request number.
    pub pr: u64,
    /// `{branch}`: the feature branch (already gated).
    pub branch: String,
    /// `{base}`: the base branch (already gated).
    pub base: String,
    /// `{repo}`: the gated, realpath'd repository path.
    pub repo: PathBuf,
    /// `{worktree}`: the worktree the step runs in (also its working directory).
    pub worktree: PathBuf,
    /// `{lock_ref}`: the lane lock's ref on `origin` (`refs/gstack/release-locks/…`).
    pub lock_ref: String,
    /// `{lock_sha}`: the lock commit that ref held when the step started; `berth lock
    /// check {lock_ref} --sha {lock_sha}` answers whether that lock is still live.
    pub lock_sha: String,
}

/// A validated argv template: the first element is the program, the rest its arguments.
///
/// Deserializes from an array of strings and is validated while deserializing, so a bad
/// template fails the config load with a message that names the offending argument.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct CommandTemplate {
    raw: Vec<String>,
    args: Vec<Vec<Segment>>,
}

impl CommandTemplate {
    /// Validates `argv`: non-empty, a non-empty program, only known placeholders, balanced
    /// braces (`{{` and `}}` are literal braces), and no record value in the program.
    pub fn parse(argv: Vec<String>) -> Result<Self, TemplateError> {
        let program = argv.first().ok_or(TemplateError::Empty)?;
        if program.is_empty() {
            return Err(TemplateError::EmptyProgram);
        }
        let args = argv
            .iter()
            .enumerate()
            .map(|(index, arg)| parse_arg(index, arg))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(name) = args[0].iter().find_map(|seg| match seg {
            Segment::Var(p) if !p.allowed_in_program() => Some(placeholder_name(*p)),
            _ => None,
        }) {
            return Err(TemplateError::RecordValueInProgram {
                name: name.to_owned(),
                arg: program.clone(),
            });
        }
        Ok(Self { raw: argv, args })
    }

    /// The template as the operator wrote it.
    pub fn as_raw(&self) -> &[String] {
        &self.raw
    }

    /// The argv to execute: one element per template element, whatever the values hold.
    pub fn render(&self, vars: &StepVars, log: &Path) -> Vec<OsString> {
        self.args
            .iter()
            .map(|segments| {
                let mut out = OsString::new();
                for seg in segments {
                    match seg {
                        Segment::Text(text) => out.push(text),
                        Segment::Var(Placeholder::Pr) => out.push(vars.pr.to_string()),
                        Segment::Var(Placeholder::Branch) => out.push(&vars.branch),
                        Segment::Var(Placeholder::Base) => out.push(&vars.base),
                        Segment::Var(Placeholder::Repo) => out.push(vars.repo.as_os_str()),
                        Segment::Var(Placeholder::Worktree) => out.push(vars.worktree.as_os_str()),
                        Segment::Var(Placeholder::Log) => out.push(OsStr::new(log)),
                        Segment::Var(Placeholder::LockRef) => out.push(&vars.lock_ref),
                        Segment::Var(Placeholder::LockSha) => out.push(&vars.lock_sha),
                    }
                }
                out
            })
            .collect()
    }
}

impl TryFrom<Vec<String>> for CommandTemplate {
    type Error = TemplateError;

    fn try_from(argv: Vec<String>) -> Result<Self, Self::Error> {
        Self::parse(argv)
    }
}

impl From<CommandTemplate> for Vec<String> {
    fn from(template: CommandTemplate) -> Self {
        template.raw
    }
}

fn placeholder_name(p: Placeholder) -> &'static str {
    match p {
        Placeholder::Pr => "pr",
        Placeholder::Branch => "branch",
        Placeholder::Base => "base",
        Placeholder::Repo => "repo",
        Placeholder::Worktree => "worktree",
        Placeholder::Log => "log",
        Placeholder::LockRef => "lock_ref",
        Placeholder::LockSha => "lock_sha",
    }
}

/// Splits one argument into literal text and placeholders, the way Rust's `format!` reads
/// braces: strict, so a typo can never pass through as literal text that looks fine.
fn parse_arg(index: usize, arg: &str) -> Result<Vec<Segment>, TemplateError> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut rest = arg;
    while let Some(pos) = rest.find(['{', '}']) {
        text.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(TemplateError::StrayClose {
                index,
                arg: arg.to_owned(),
            });
        } else {
            let inner = &tail[1..];
            let end = inner.find('}').ok_or_else(|| TemplateError::Unclosed {
                index,
                arg: arg.to_owned(),
            })?;
            let name = &inner[..end];
            let placeholder =
                Placeholder::from_name(name).ok_or_else(|| TemplateError::UnknownPlaceholder {
                    name: name.to_owned(),
                    index,
                    arg: arg.to_owned(),
                })?;
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text)));
            }
            segments.push(Segment::Var(placeholder));
            rest = &inner[end + 1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn template(argv: &[&str]) -> Result<CommandTemplate, TemplateError> {
        CommandTemplate::parse(argv.iter().map(|s| (*s).to_owned()).collect())
    }

    fn vars(branch: &str) -> StepVars {
        StepVars {
            pr: 42,
            branch: branch.to_owned(),
            base: "main".to_owned(),
            repo: PathBuf::from("/code/my repo"),
            worktree: PathBuf::from("/wt/x"),
            lock_ref: "refs/gstack/release-locks/r".to_owned(),
            lock_sha: "0123abcd".to_owned(),
        }
    }

    #[test]
    fn substitutes_inside_arguments_without_splitting() {
        let t = template(&[
            "{worktree}/land.sh",
            "--pr={pr}",
            "{branch}",
            "{base}..{branch}",
            "{repo}",
            "--log",
            "{log}",
        ])
        .unwrap();
        let hostile = "a b; rm -rf / $(touch x) `y` 'q\" \n\t";
        let argv = t.render(&vars(hostile), Path::new("/logs/r/attempt-1-land.log"));
        let expected: Vec<OsString> = [
            "/wt/x/land.sh",
            "--pr=42",
            hostile,
            &format!("main..{hostile}"),
            "/code/my repo",
            "--log",
            "/logs/r/attempt-1-land.log",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(argv, expected);
    }

    #[test]
    fn the_lock_placeholders_name_the_lock_the_step_started_under() {
        let t = template(&["berth", "lock", "check", "{lock_ref}", "--sha={lock_sha}"]).unwrap();
        let argv = t.render(&vars("b"), Path::new("/l"));
        assert_eq!(argv[3], OsString::from("refs/gstack/release-locks/r"));
        assert_eq!(argv[4], OsString::from("--sha=0123abcd"));
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = template(&["jq", "{{\"pr\": {pr}}}", "}}{{"]).unwrap();
        let argv = t.render(&vars("b"), Path::new("/l"));
        assert_eq!(argv[1], OsString::from("{\"pr\": 42}"));
        assert_eq!(argv[2], OsString::from("}{"));
    }

    #[test]
    fn unknown_placeholder_is_named_with_its_position() {
        let err = template(&["gh", "pr", "merge", "{prr}"]).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownPlaceholder {
                name: "prr".to_owned(),
                index: 3,
                arg: "{prr}".to_owned()
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("`{prr}`") && text.contains("argv[3]"),
            "{text}"
        );
        assert!(text.contains("{worktree}"), "lists the known ones: {text}");
        // A shell-looking brace group is a typo until the operator doubles the braces.
        assert!(matches!(
            template(&["awk", "{print $1}"]),
            Err(TemplateError::UnknownPlaceholder { .. })
        ));
    }

    #[test]
    fn unbalanced_braces_and_empty_templates_are_refused() {
        assert_eq!(template(&[]), Err(TemplateError::Empty));
        assert_eq!(template(&["", "x"]), Err(TemplateError::EmptyProgram));
        assert!(matches!(
            template(&["x", "{branch"]),
            Err(TemplateError::Unclosed { index: 1, .. })
        ));
        assert!(matches!(
            template(&["x", "a}b"]),
            Err(TemplateError::StrayClose { index: 1, .. })
        ));
    }

    #[test]
    fn program_cannot_come_from_record_values() {
        for bad in [
            "{branch}",
            "/bin/{base}",
            "{pr}",
            "{log}",
            "{lock_ref}",
            "{lock_sha}",
        ] {
            assert!(
                matches!(
                    template(&[bad]),
                    Err(TemplateError::RecordValueInProgram { .. })
                ),
                "{bad}"
            );
        }
        assert!(template(&["{repo}/scripts/land"]).is_ok());
        assert!(template(&["{worktree}/bin/ship", "{branch}"]).is_ok());
    }

    #[test]
    fn deserializes_validated_from_a_json_array() {
        let t: CommandTemplate = serde_json::from_str(r#"["claude", "-p", "land {pr}"]"#).unwrap();
        assert_eq!(t.as_raw(), ["claude", "-p", "land {pr}"]);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"["claude","-p","land {pr}"]"#
        );
        let err = serde_json::from_str::<CommandTemplate>(r#"["gh", "{prr}"]"#).unwrap_err();
        assert!(err.to_string().contains("{prr}"), "{err}");
        assert!(serde_json::from_str::<CommandTemplate>("[]").is_err());
        assert!(serde_json::from_str::<CommandTemplate>(r#""gh pr merge""#).is_err());
    }

    proptest! {
        #[test]
        fn any_value_stays_one_argument(value in "\\PC*", prefix in "[a-z =;$()'\"]*") {
            let t = template(&["prog", &format!("{prefix}{{branch}}"), "{base}"]).unwrap();
            let mut v = vars(&value);
            v.base = value.clone();
            let argv = t.render(&v, Path::new("/l"));
            prop_assert_eq!(argv.len(), 3);
            prop_assert_eq!(argv[1].clone(), OsString::from(format!("{prefix}{value}")));
            prop_assert_eq!(argv[2].clone(), OsString::from(value));
        }

        #[test]
        fn parsing_never_panics_and_literals_round_trip(arg in "\\PC*") {
            // Escaped literal text renders back to itself; raw text is accepted or
            // refused, never a panic.
            let escaped = arg.replace('{', "{{").replace('}', "}}");
            let t = template(&["prog", &escaped]).unwrap();
            prop_assert_eq!(t.render(&vars("b"), Path::new("/l"))[1].clone(), OsString::from(arg.clone()));
            let _ = template(&["prog", &arg]);
        }
    }
}
