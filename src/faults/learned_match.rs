//! Learned patterns applied natively: compiled once per version of
//! `learned-patterns.json`, then matched over bounded inputs, so that 10,000 patterns over a
//! 2 MB state cost milliseconds and no single pattern can stall a tick.
//!
//! - substring kinds: one Aho-Corasick automaton per text (stdout, plan, failure reason)
//!   finds every pattern that occurs in one pass;
//! - regex kinds: the linear `regex` engine (bytes with ASCII classes, the pattern rewritten
//!   so that `.`, `\s` and negated classes take whole characters as JavaScript's do; see
//!   `javascript`), compiled under [`REGEX_SIZE_LIMIT`]; a pattern it cannot take
//!   (lookaround, backreferences) goes to `fancy-regex`, a backtracking engine over the
//!   same bytes, classes and rewritten pattern, held to
//!   [`MAX_BACKTRACKING_CONSTRUCTS`], [`MAX_BACKTRACKING_DELEGATES`], [`BACKTRACK_LIMIT`]
//!   and the shorter [`BACKTRACKING_WINDOW_BYTES`], and run on a [`worker`] process under
//!   the kernel's memory limit and the tick's deadline (nothing in fancy-regex bounds what
//!   one match holds or how long it runs);
//! - `state_jsonpath`: the faults' path evaluator over the state's shared compact form.
//!
//! Together the regexes are held to one memory budget ([`COMPILED_BUDGET_BYTES`], checked
//! at load) and one time budget per tick ([`TICK_BUDGET`], a [`Budget`] shared by every run
//! of the tick), and no regex keeps a cache between matches.
//!
//! Why these numbers: the linear engine's worst case is the size of its automaton times the
//! text (`[01]*1[01]{108}x`, the largest of that family the limit accepts, takes ~50 ms over
//! a full window on this 2-core machine; `benches/faults.rs` measures it). Backtracking
//! adds a factor of the text length (every start position re-runs the sub-match), so its
//! text is shorter: `(?!x)(a|aa)*b` over 4 KiB of `a` takes ~40 ms.

use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use regex_automata::meta;

use super::state_jsonpath::{Document, StatePath};

mod backtracking;
mod budget;
mod javascript;
mod lookbehind;
pub mod worker;

pub use budget::{Budget, Exhausted, LearnedBudget, Unanswered};
use worker::{Answer, Worker};

/// Lines of stdout or plan a learned pattern sees: the last 200, as gstack's halt snapshot
/// (`stdoutTail`) keeps them.
pub const WINDOW_LINES: usize = 200;
/// At most this many bytes of those lines (the end of them): a 200-line window of
/// megabyte-long lines is still 32 KiB.
pub const WINDOW_BYTES: usize = 32 * 1024;
/// Compiled-size limit of one linear regex; a pattern over it is refused at load time.
pub const REGEX_SIZE_LIMIT: usize = 8 * 1024;
/// Lazy-DFA cache of one linear regex; past it the engine falls back to its NFA, whose
/// cost the size limit bounds. A cache lives for one match only, so the daemon holds at
/// most one per matching thread, never one per pattern.
pub const REGEX_CACHE_BYTES: usize = 256 * 1024;
/// The memory all compiled learned regexes of one file may hold together (measured for
/// linear ones; for a backtracking one [`BACKTRACKING_CHARGE`] for each regex it compiles
/// and the rewritten pattern it keeps: its matches run on the worker); a pattern
/// past it is refused at load, naming its index.
pub const COMPILED_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// What each delegate of a backtracking regex is charged against [`COMPILED_BUDGET_BYTES`].
/// Its engine does not measure itself: it compiles every stretch that needs no
/// backtracking (between and inside lookarounds, each branch of an alternation holding
/// one) as a regex of its own, each held to the linear engine's size limit. A delegate
/// near the size limit holds 8–11 KiB (`[01]*1[01]{104}x`, `(a|b)*c[0-9]{50}`, measured),
/// the worst linear regex 6.6 KiB: four times the size limit leaves room.
pub const BACKTRACKING_CHARGE: usize = 4 * REGEX_SIZE_LIMIT;
/// Lookarounds, backreferences and the other constructs only the backtracking engine runs
/// (atomic groups, conditionals, `\K`) that one pattern may have; a pattern with more is
/// refused at load.
pub const MAX_BACKTRACKING_CONSTRUCTS: usize = 16;
/// Regexes the backtracking engine may compile for one pattern (one per stretch it runs
/// without backtracking); a pattern with more is refused at load. `2n + 1` for `n`
/// lookarounds in sequence, so the construct cap in sequence fits (`3n + 1` for negative
/// lookbehinds and `\B`, each with its guard against looking from inside a character: 10
/// of those fit): at the cap a pattern is
/// charged 33 × [`BACKTRACKING_CHARGE`] (1,056 KiB) and its rewritten text (at most
/// [`MAX_REWRITTEN_BYTES`]), so at least 30 of them fit the budget, and 341 of the common one-lookaround kind (`ECONN(?=RESET)`). An
/// alternation of many branches around one backreference is refused here, not charged.
pub const MAX_BACKTRACKING_DELEGATES: usize = 2 * MAX_BACKTRACKING_CONSTRUCTS + 1;
/// The time all learned regexes may take in one tick, over every run. The pattern that is
/// matching when it runs out is reported by index; the patterns not reached keep their
/// last answer for that run, and the next tick starts with them.
pub const TICK_BUDGET: Duration = Duration::from_secs(1);
/// Backtracking steps one lookaround/backreference regex may take per match; past it the
/// pattern does not match on that call.
pub const BACKTRACK_LIMIT: usize = 100_000;
/// The end of the window a backtracking regex sees.
pub const BACKTRACKING_WINDOW_BYTES: usize = 4 * 1024;
/// The longest a pattern may be once rewritten to take whole characters (`javascript`):
/// the rewrite multiplies what it expands (`[\S]` ~450 bytes, `\s` ~30 times, `.` ~10
/// times) whatever quantifies it, even `{0}`, and both engines parse the whole text, a
/// backtracking one again at each match; the rewrite stops and the pattern is refused at
/// load past it. Investigators' patterns are under 1 KiB rewritten.
pub const MAX_REWRITTEN_BYTES: usize = 16 * 1024;
/// How deep a learned pattern's groups may nest (the engines allow 250; investigators'
/// patterns nest a few deep); deeper, or a group left open, is refused at load.
pub const MAX_GROUP_NESTING: usize = 64;

/// The text a matcher looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Stdout,
    Plan,
    FailureReason,
}

/// The texts of one run, already windowed; `None` when the run has no such text.
#[derive(Clone, Copy, Debug, Default)]
pub struct Texts<'a> {
    pub stdout: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
}

impl<'a> Texts<'a> {
    fn get(&self, field: Field) -> Option<&'a str> {
        match field {
            Field::Stdout => self.stdout,
            Field::Plan => self.plan,
            Field::FailureReason => self.failure_reason,
        }
    }
}

/// The last [`WINDOW_LINES`] lines of `text` (split on `\n` as gstack does), then at most
/// their last [`WINDOW_BYTES`] bytes, cut at a character boundary.
pub fn window(text: &str) -> &str {
    let start = text
        .rmatch_indices('\n')
        .nth(WINDOW_LINES - 1)
        .map_or(0, |(at, _)| at + 1);
    tail(&text[start..], WINDOW_BYTES)
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A compiled regex pattern.
#[derive(Clone, Debug)]
pub enum Regex {
    Linear(meta::Regex),
    /// A pattern compiled at load and again for each match, on the worker (so no search
    /// cache outlives it): what a match holds there is held to
    /// [`worker::WORKER_MEMORY_BYTES`]; the daemon keeps the pattern, charged
    /// [`BACKTRACKING_CHARGE`] for each regex it compiles.
    Backtracking {
        /// The rewritten pattern.
        pattern: Box<str>,
        /// The regexes it compiles (at most [`MAX_BACKTRACKING_DELEGATES`]): as the
        /// pattern's stretches count them, or as the engine's program holds them if more.
        regexes: usize,
    },
}

/// The linear engine as `regex::bytes` configures it (leftmost-first, bytes, ASCII
/// classes) over a pattern already rewritten to JavaScript's characters, asked only
/// whether it matches.
fn linear(pattern: &str) -> Result<meta::Regex, Box<meta::BuildError>> {
    let config = meta::Config::new()
        .utf8_empty(false)
        .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
        .hybrid_cache_capacity(REGEX_CACHE_BYTES)
        .which_captures(regex_automata::nfa::thompson::WhichCaptures::None);
    let syntax = regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false);
    meta::Builder::new()
        .configure(config)
        .syntax(syntax)
        .build(pattern)
        .map_err(Box::new)
}

/// Why a learned pattern's matcher cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error(
        "compiles to more than the {REGEX_SIZE_LIMIT}-byte size limit (a bounded repetition like {{1000}} multiplies the size)"
    )]
    TooLarge,
    /// The linear engine refused it, for a reason the backtracking engine does not lift.
    #[error("{}", one_line(&linear_message(.0)))]
    Linear(Box<meta::BuildError>),
    /// It needs the backtracking engine (lookaround, a backreference), which refused it.
    #[error("{}", one_line(&.0.to_string()))]
    Backtracking(Box<fancy_regex::Error>),
    #[error(
        "has {0} lookarounds, backreferences or other backtracking constructs; at most {MAX_BACKTRACKING_CONSTRUCTS} are compiled (each stretch between them is a regex of its own)"
    )]
    TooManyBacktrackingConstructs(usize),
    /// Refused before either engine parses it; the length is where the rewrite stopped.
    #[error(
        "is rewritten to {0} bytes or more (`.`, `\\s`, `\\S`, `\\W`, `\\D` and classes are expanded to take whole characters, `[\\S]` to ~450 bytes, even under {{0}}); at most {MAX_REWRITTEN_BYTES} are compiled"
    )]
    RewrittenTooLong(usize),
    #[error(
        "nests its groups {0} deep or leaves one open; at most {MAX_GROUP_NESTING} deep are compiled, every group closed"
    )]
    GroupNesting(usize),
    /// The byte offset of the `)`.
    #[error(
        "closes a group at byte {0} that was never opened, a SyntaxError in JavaScript (`\\)` is the character)"
    )]
    UnmatchedClose(usize),
    #[error(
        "opens a group at byte {0} with syntax JavaScript does not have (only `(`, `(?:`, `(?=`, `(?!`, `(?<=`, `(?<!` and `(?<name>`; not `(?x)`, `(?i)`, `(?P>…)`, `(?(…)` or `(?>`), a SyntaxError there"
    )]
    GroupSyntax(usize),
    #[error(
        "has a backreference to a group inside a repetition, which JavaScript empties at each repetition and the backtracking engine keeps; such patterns are not taken"
    )]
    BackreferenceInRepetition,
    #[error(
        "has a lookaround or a word boundary (`\\b`, `\\B`) inside a lookbehind, which the backtracking engine compiles again at every one; such patterns are not taken"
    )]
    LookaroundInLookbehind,
    #[error(
        "compiles to {0} regexes (each branch of an alternation holding a lookaround or backreference is one); at most {MAX_BACKTRACKING_DELEGATES} are compiled"
    )]
    TooManyDelegates(usize),
    /// JavaScript reads `\xHH` past `\x7F` as the character U+00HH; a range of such
    /// characters is not rewritten to their bytes.
    #[error(
        "has a class range with an end past \\x7F, which JavaScript reads as a character; such ranges are not taken"
    )]
    WideRange,
    /// A negated class refuses a character past ASCII by its bytes; only characters of
    /// two bytes (up to U+07FF) are rewritten so.
    #[error(
        "has a negated class holding a character past U+07FF (three UTF-8 bytes or more), which JavaScript refuses whole; such classes are not taken"
    )]
    WideNegatedClass,
    #[error(
        "has a lookbehind over an alternation with a capturing group of alternatives as a branch, whose longer alternatives the backtracking engine misses; make the group's alternatives branches of the lookbehind"
    )]
    LookbehindGroupAlternation,
    #[error("substring patterns do not compile together: {0}")]
    Substrings(#[from] aho_corasick::BuildError),
}

/// The linear engine's complaint: the syntax error itself when there is one.
fn linear_message(e: &meta::BuildError) -> String {
    e.syntax_error()
        .map_or_else(|| e.to_string(), ToString::to_string)
}

/// Whether the linear engine refused `e` only for what the backtracking engine supports.
fn needs_backtracking(e: &meta::BuildError) -> bool {
    use regex_syntax::ast::ErrorKind;
    matches!(
        e.syntax_error(),
        Some(regex_syntax::Error::Parse(parse))
            if matches!(parse.kind(), ErrorKind::UnsupportedLookAround | ErrorKind::UnsupportedBackreference)
    )
}

impl Regex {
    /// Compiles `pattern` under the limits, or says why it cannot be used.
    pub fn compile(pattern: &str) -> Result<Regex, MatchError> {
        let pattern = javascript::rewrite(pattern)?;
        // A backreference is rewritten to ask whether its group took part (a conditional,
        // which only the backtracking engine reads).
        if pattern.contains(javascript::BACKREFERENCE_OPENER) {
            return backtracking::compile(pattern, None);
        }
        match linear(&pattern) {
            Ok(regex) => Ok(Regex::Linear(regex)),
            Err(e) if e.size_limit().is_some() => Err(MatchError::TooLarge),
            Err(e) => backtracking::compile(pattern, Some(e)),
        }
    }

    /// What this regex holds in memory, as charged against [`COMPILED_BUDGET_BYTES`].
    pub fn memory(&self) -> usize {
        match self {
            Regex::Linear(regex) => regex.memory_usage(),
            // It keeps its rewritten pattern to build itself again at each match.
            Regex::Backtracking { pattern, regexes } => {
                regexes * BACKTRACKING_CHARGE + pattern.len()
            }
        }
    }

    /// Whether the regex matches `text`, a backtracking one on a worker process started
    /// for this call (see [`Regex::answer`]).
    pub fn is_match(&self, text: &str) -> bool {
        self.answer(text, &mut Worker::default(), None) == Answer::Matched(true)
    }

    /// Whether the regex matches `text` (a backtracking one: its end). Caches are made for
    /// this call and dropped with it. A backtracking regex runs on `worker` (built there
    /// again, so its caches go with the match), under the worker's memory limit, stopped
    /// at `until` (without one, [`TICK_BUDGET`] from now); one that hits its step limit
    /// does not match.
    pub fn answer(&self, text: &str, worker: &mut Worker, until: Option<Instant>) -> Answer {
        match self {
            Regex::Linear(regex) => {
                let mut cache = regex.create_cache();
                Answer::Matched(
                    regex.is_match_with(&mut cache, &regex_automata::Input::new(text.as_bytes())),
                )
            }
            Regex::Backtracking { pattern, .. } => worker.answer(
                pattern,
                tail(text, BACKTRACKING_WINDOW_BYTES).as_bytes(),
                until.unwrap_or_else(|| Instant::now() + TICK_BUDGET),
            ),
        }
    }
}

/// regex draws a caret diagram over several lines; a warning wants one.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// How one pattern is matched.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// The text contains the pattern (a missing text never does).
    Contains(Field),
    /// The regex matches the text (a missing text is tested as `""`).
    Regex(Field, Regex),
    /// The path selects something in the state.
    Path,
    /// A kind the core does not know: `rules/learned.rhai` decides.
    Rule,
}

/// Every pattern of a file, compiled: which of them match a run is one call.
#[derive(Debug, Default)]
pub struct Compiled {
    contains: Vec<(Field, AhoCorasick, Vec<usize>)>,
    regexes: Vec<(usize, Field, Regex)>,
    paths: Vec<usize>,
}

/// One run's last answers to a set's patterns, and where its next budgeted pass starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunAnswers {
    /// Whether each pattern (in file order) matched; a pattern past the end did not.
    pub hit: Vec<bool>,
    /// The regex or path (by its turn: the regexes, then the paths) the run's next pass
    /// starts at: the one a budget last stopped at on this run when it had less than a
    /// whole tick, else the one after it, so every one gets its turn across ticks.
    pub next: usize,
}

impl Compiled {
    /// From the matchers of the patterns, in file order (`matchers[i]` is pattern `i`).
    pub fn build<'p>(
        matchers: impl IntoIterator<Item = (Matcher, &'p str)>,
    ) -> Result<Compiled, MatchError> {
        let mut compiled = Compiled::default();
        let mut needles: Vec<(Field, Vec<&str>, Vec<usize>)> = Vec::new();
        for (i, (matcher, pattern)) in matchers.into_iter().enumerate() {
            match matcher {
                Matcher::Contains(field) => {
                    match needles.iter_mut().find(|(f, _, _)| *f == field) {
                        Some((_, texts, ids)) => {
                            texts.push(pattern);
                            ids.push(i);
                        }
                        None => needles.push((field, vec![pattern], vec![i])),
                    }
                }
                Matcher::Regex(field, regex) => compiled.regexes.push((i, field, regex)),
                Matcher::Path => compiled.paths.push(i),
                Matcher::Rule => {}
            }
        }
        for (field, texts, ids) in needles {
            let automaton = AhoCorasick::new(&texts)?;
            compiled.contains.push((field, automaton, ids));
        }
        Ok(compiled)
    }

    /// The positions (in file order) of the patterns that match, without a time limit.
    /// `patterns[i]` is the text of pattern `i` (paths are parsed from it).
    pub fn matching(&self, patterns: &[&str], texts: &Texts<'_>, state: &Document) -> Vec<usize> {
        let none = RunAnswers::default();
        let answers = self.hits(patterns, texts, state, &mut Budget::unlimited(), &none);
        answers
            .hit
            .iter()
            .enumerate()
            .filter_map(|(i, hit)| hit.then_some(i))
            .collect()
    }

    /// Whether each pattern (in file order) matches, the regexes within `budget`, starting
    /// at `last.next`: once it is spent, a regex not reached keeps its answer in `last` (this
    /// run's last answers; no match when there is none). The run's answers for next time.
    pub fn hits(
        &self,
        patterns: &[&str],
        texts: &Texts<'_>,
        state: &Document,
        budget: &mut Budget,
        last: &RunAnswers,
    ) -> RunAnswers {
        let mut hit = vec![false; patterns.len()];
        for (field, automaton, ids) in &self.contains {
            let Some(text) = texts.get(*field) else {
                continue;
            };
            let mut left = ids.len();
            for found in automaton.find_overlapping_iter(text) {
                let seen = &mut hit[ids[found.pattern().as_usize()]];
                if !*seen {
                    *seen = true;
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                }
            }
        }
        let next = self.budgeted_hits(patterns, texts, state, budget, last, &mut hit);
        RunAnswers { hit, next }
    }

    /// The pattern (its position in file order) whose regex or path has turn `turn`.
    pub(crate) fn pattern_at_turn(&self, turn: usize) -> Option<usize> {
        match self.regexes.get(turn) {
            Some((i, _, _)) => Some(*i),
            None => self.paths.get(turn - self.regexes.len()).copied(),
        }
    }

    /// The turn of pattern `index`'s regex or path, if it has one.
    pub(crate) fn turn_of(&self, index: usize) -> Option<usize> {
        let regexes = self.regexes.iter().map(|(i, _, _)| *i);
        regexes
            .chain(self.paths.iter().copied())
            .position(|i| i == index)
    }

    /// The answers of the regexes and state paths (the matchers whose cost has no small
    /// bound) into `hit`, from where the last budget stopped on this run, while `budget`
    /// lasts. A path still running when the budget runs out is stopped and keeps its last
    /// answer. Where the run's next pass starts.
    fn budgeted_hits(
        &self,
        patterns: &[&str],
        texts: &Texts<'_>,
        state: &Document,
        budget: &mut Budget,
        last: &RunAnswers,
        hit: &mut [bool],
    ) -> usize {
        let count = self.regexes.len() + self.paths.len();
        let start = last.next % count.max(1);
        let mut next = start;
        let mut skipped = 0;
        for step in 0..count {
            let at = (start + step) % count;
            let (i, answer) = match self.regexes.get(at) {
                Some((i, field, regex)) => (*i, Matching::Regex(*field, regex)),
                None => {
                    let i = self.paths[at - self.regexes.len()];
                    (i, Matching::Path(patterns[i]))
                }
            };
            let last = last.hit.get(i).copied().unwrap_or(false);
            if budget.over() {
                hit[i] = last;
                skipped += 1;
                continue;
            }
            let started = Instant::now();
            // A tick's first match gets a whole tick's time whatever the budget has left,
            // so every pattern gets its turn: a backtracking one, stopped at its deadline
            // (its worker's start counts), would otherwise never answer in a tick that
            // reaches it with less than that start left.
            let first = budget.untouched();
            let left = budget
                .left()
                .map(|left| if first { left.max(TICK_BUDGET) } else { left });
            let until = left.map(|left| started + left);
            let answered = answer.run(texts, state, until, budget, i);
            hit[i] = answered.unwrap_or(last);
            if budget.charge(i, started.elapsed()) {
                // Stopped with less than a whole tick, it starts the run's next pass (it
                // has the whole tick when the run's turn at a tick's first match comes);
                // answered, or stopped with a whole tick, the next one does.
                next = if answered.is_none() && !first {
                    at
                } else {
                    (at + 1) % count
                };
            }
        }
        budget.skipped(skipped);
        next
    }
}

/// One budgeted match to run.
enum Matching<'a> {
    Regex(Field, &'a Regex),
    /// The pattern's text (a path that does not parse matches nothing).
    Path(&'a str),
}

impl Matching<'_> {
    /// Whether it matches; `None` when it was stopped at `until` (a path, or a regex whose
    /// worker was killed there) or no worker could run it: it keeps its last answer. A
    /// regex whose worker died of it (noted in `budget` as pattern `index`'s) does not
    /// match.
    fn run(
        &self,
        texts: &Texts<'_>,
        state: &Document,
        until: Option<Instant>,
        budget: &mut Budget,
        index: usize,
    ) -> Option<bool> {
        match self {
            Matching::Regex(field, regex) => {
                let text = texts.get(*field).unwrap_or("");
                match regex.answer(text, &mut budget.worker, until) {
                    Answer::Matched(hit) => Some(hit),
                    Answer::Died => {
                        budget.died_of(index);
                        Some(false)
                    }
                    Answer::Killed => {
                        budget.killed_at(index);
                        None
                    }
                    Answer::NoWorker => None,
                }
            }
            Matching::Path(pattern) => {
                let Ok(path) = StatePath::parse(pattern) else {
                    return Some(false);
                };
                match until {
                    Some(until) => state.select_until(&path, until).map(|v| !v.is_empty()),
                    None => Some(!state.select(&path).is_empty()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
