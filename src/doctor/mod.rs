//! `berth doctor`: is this machine ready to run berth, and is the daemon healthy? One
//! [`Check`] per question, each with a verdict and a line an operator can act on.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, ConfigSource, ForgeKind};
use crate::gates::Allowlist;
use crate::lane_lock::survey::Reach;
use crate::record::Status;
use crate::service::Platform;
use crate::store::QueueStore;

mod daemon;
mod locks;
mod unit;

/// How long one probe (`git --version`, `gh auth status`, `systemctl is-active`) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a probe's output is read up to; the rest is dropped.
const PROBE_OUTPUT_BYTES: u64 = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, but worth a look; does not make the doctor fail.
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict,
            detail: detail.into(),
        }
    }

    /// `ok    git: git version 2.47.3`.
    pub fn line(&self) -> String {
        let tag = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        format!("{tag}  {}: {}", self.name, self.detail.replace('\n', "; "))
    }
}

/// What the doctor looks at.
pub struct Inputs<'a> {
    pub store: &'a QueueStore,
    pub allowlist: &'a Allowlist,
    /// The configured repo root (`--project-root`, or the git toplevel of the cwd).
    pub project_root: Option<PathBuf>,
    pub config_source: ConfigSource,
    pub berth_dir: PathBuf,
    pub rules_root: Option<PathBuf>,
    pub platform: Platform,
    pub home: Option<PathBuf>,
    /// Whether and how long origins (and `gh auth`) are asked.
    pub reach: Reach<'a>,
}

/// Every check, in the order they are printed.
pub fn run(inputs: &Inputs<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match Config::load_with_clamps(inputs.config_source.path()) {
        Ok((config, clamped)) => {
            let described = inputs.config_source.describe();
            checks.push(match clamped.as_slice() {
                [] => Check::new("config", Verdict::Ok, described),
                _ => {
                    let said: Vec<_> = clamped.iter().map(ToString::to_string).collect();
                    let detail = format!("{described}; {}", said.join("; "));
                    Check::new("config", Verdict::Warn, detail)
                }
            });
            config
        }
        Err(e) => {
            checks.push(Check::new("config", Verdict::Fail, e.to_string()));
            Config::default()
        }
    };
    checks.push(tool("git", "git", &["--version"]));
    match config.forge {
        ForgeKind::Gh => {
            let file = inputs.config_source.file_to_edit();
            let gh = match crate::forge::MissingGh::check(&config.gh_program, &file) {
                Ok(()) => tool("gh", &config.gh_program, &["--version"]),
                Err(missing) => Check::new("gh", Verdict::Fail, missing.to_string()),
            };
            let found = gh.verdict == Verdict::Ok;
            checks.push(gh);
            if found && inputs.reach.offline {
                checks.push(Check::new(
                    "gh auth",
                    Verdict::Warn,
                    "not checked (--offline)",
                ));
            } else if found {
                checks.push(gh_auth(&config.gh_program));
            }
        }
        ForgeKind::Git => checks.push(Check::new(
            "gh",
            Verdict::Ok,
            "not needed (forge = \"git\")",
        )),
    }
    checks.push(queue_dir(inputs.store.dir()));
    checks.extend(repos(inputs));
    checks.push(rules(inputs.rules_root.as_deref()));
    checks.push(unit::service(inputs));
    checks.extend(daemon::checks(&inputs.berth_dir, config.poll_secs));
    checks.push(halt_events(&config));
    checks
}

/// Healthy when nothing failed.
pub fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.verdict != Verdict::Fail)
}

/// Why a probed tool said nothing: each names the command.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// `command` is the program and its arguments as typed.
    #[error("`{command}` did not answer within {PROBE_TIMEOUT:?}")]
    Silent { command: String },
    #[error("waiting for `{program}`: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// Runs `program args` with a time limit; `(exited 0, stdout + stderr)`.
pub fn probe(program: &str, args: &[&str]) -> Result<(bool, String), ProbeError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::Silent {
                    command: format!("{program} {}", args.join(" ")),
                });
            }
            Err(source) => {
                return Err(ProbeError::Wait {
                    program: program.to_owned(),
                    source,
                });
            }
        }
    };
    let mut text = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = out.take(PROBE_OUTPUT_BYTES).read_to_string(&mut text);
    }
    if let Some(err) = child.stderr.take() {
        let _ = err.take(PROBE_OUTPUT_BYTES).read_to_string(&mut text);
    }
    Ok((status.success(), text.trim().to_owned()))
}

fn tool(name: &str, program: &str, args: &[&str]) -> Check {
    match probe(program, args) {
        Ok((true, out)) => Check::new(name, Verdict::Ok, out.lines().next().unwrap_or("")),
        Ok((false, out)) => Check::new(name, Verdict::Fail, format!("`{program}` failed: {out}")),
        Err(e) => Check::new(name, Verdict::Fail, format!("{e} (is it on PATH?)")),
    }
}

fn gh_auth(program: &str) -> Check {
    match probe(program, &["auth", "status"]) {
        Ok((true, out)) => Check::new(
            "gh auth",
            Verdict::Ok,
            out.lines()
                .map(str::trim)
                .find(|l| l.contains("Logged in"))
                .unwrap_or("logged in"),
        ),
        Ok((false, out)) => Check::new(
            "gh auth",
            Verdict::Fail,
            format!("not logged in; run `gh auth login` ({out})"),
        ),
        Err(e) => Check::new("gh auth", Verdict::Fail, e.to_string()),
    }
}

fn queue_dir(dir: &Path) -> Check {
    let name = "queue dir";
    let meta = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => {
            return Check::new(
                name,
                Verdict::Fail,
                format!("{} is not a directory", dir.display()),
            );
        }
        Err(e) => {
            return Check::new(
                name,
                Verdict::Fail,
                format!("{}: {e} (`berth run` creates it)", dir.display()),
            );
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    let probe = dir.join(format!(".berth-doctor-{}", std::process::id()));
    if let Err(e) = crate::atomic_file::create_new(&probe, b"", 0o600) {
        return Check::new(
            name,
            Verdict::Fail,
            format!("{} is not writable: {e}", dir.display()),
        );
    }
    let _ = std::fs::remove_file(&probe);
    if mode & 0o022 != 0 {
        return Check::new(
            name,
            Verdict::Warn,
            format!(
                "{} (mode {mode:o}) is writable by others, who can plant records; `chmod 700` it",
                dir.display()
            ),
        );
    }
    Check::new(
        name,
        Verdict::Ok,
        format!("{} (mode {mode:o})", dir.display()),
    )
}

/// The configured project root and every queued record's repo against the gates, then the
/// lane locks on each gated origin (holder, expiry, holder alive).
fn repos(inputs: &Inputs<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut origins = std::collections::BTreeMap::new();
    if let Some(root) = &inputs.project_root {
        let raw = root.display().to_string();
        checks.push(match inputs.allowlist.gate_repo_path(&raw) {
            Ok(repo) => Check::new(
                "project root",
                Verdict::Ok,
                repo.path().display().to_string(),
            ),
            Err(e) => Check::new("project root", Verdict::Fail, e.to_string()),
        });
    }
    let scan = match inputs.store.scan() {
        Ok(scan) => scan,
        Err(e) => return vec![Check::new("queue", Verdict::Fail, e.to_string())],
    };
    for bad in &scan.unreadable {
        checks.push(Check::new(
            format!("record {}", bad.file),
            Verdict::Fail,
            format!("unreadable: {}", bad.reason),
        ));
    }
    for stored in &scan.records {
        if matches!(stored.record.status, Status::Landed | Status::Abandoned) {
            continue;
        }
        let name = format!("record {}", stored.id);
        match inputs.allowlist.gate_record(&stored.record) {
            Ok(gated) => {
                if let Some(url) = gated.origin_url() {
                    origins.insert(url.to_owned(), gated.identity().to_string());
                }
                checks.push(Check::new(
                    name,
                    Verdict::Ok,
                    format!(
                        "{} passes the gates ({})",
                        gated.repo().path().display(),
                        stored.record.status
                    ),
                ));
            }
            Err(e) => checks.push(Check::new(name, Verdict::Fail, e.to_string())),
        }
    }
    if origins.is_empty() {
        return checks;
    }
    checks.extend(locks::lane_locks(
        &inputs.berth_dir,
        &origins,
        &inputs.reach,
    ));
    checks
}

fn rules(root: Option<&Path>) -> Check {
    let shown = crate::rules::set::describe_root(root);
    match crate::rules::Rules::load(root) {
        Ok(rules) => Check::new(
            "rules",
            Verdict::Ok,
            format!(
                "{shown}: {} passes `rules check`",
                crate::rules::set::short(rules.current().hash())
            ),
        ),
        Err(failure) => Check::new("rules", Verdict::Fail, format!("{shown}: {failure}")),
    }
}

/// What `doctor` shows of a held filing's line at most.
const MAX_HELD_LINE_SHOWN: usize = 8 * 1024;

/// `text` from a held-filings file, cut to [`MAX_HELD_LINE_SHOWN`]: a line berth writes is
/// at most ~5 KiB (a path, two ids cut to 256 bytes); whoever writes the faults dir may
/// plant one of megabytes.
fn shown_cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_HELD_LINE_SHOWN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Pending halt events wait for an investigator: worth a look, not a failure.
fn halt_events(config: &Config) -> Check {
    use crate::faults::halt_store::{HaltStatus, HaltStore};
    let dir = config.faults_dir_or_default();
    let store = HaltStore::new(&dir);
    let listing = store.list();
    let pending: Vec<&str> = listing
        .halts
        .iter()
        .filter(|h| h.status == HaltStatus::Pending)
        .map(|h| h.file.as_str())
        .collect();
    let mut detail = match pending.as_slice() {
        [] => format!("none pending in {}", dir.display()),
        files => format!(
            "{} pending in {} (berth faults list): {}{}",
            files.len(),
            dir.display(),
            files[..files.len().min(5)].join(", "),
            if files.len() > 5 { ", …" } else { "" }
        ),
    };
    if !listing.unreadable.is_empty() {
        detail.push_str(&format!("; {} unreadable", listing.unreadable.len()));
    }
    // A held filing is a raised fault with no event of its own: said here, not only in
    // the daemon's log.
    let mut held_problem = false;
    for held in store.held_filings() {
        match held {
            Ok(held) => detail.push_str(&format!(
                "; held filings (a name holds another run's event): {} as of {}, first: {}",
                held.count,
                shown_cut(&held.updated_at),
                shown_cut(held.lines.first().map_or("", String::as_str))
            )),
            Err(e) => detail.push_str(&format!("; held filings unreadable: {e}")),
        }
        held_problem = true;
    }
    let verdict = if pending.is_empty() && listing.unreadable.is_empty() && !held_problem {
        Verdict::Ok
    } else {
        Verdict::Warn
    };
    Check::new("halt events", verdict, detail)
}
