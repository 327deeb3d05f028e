//! The service `berth install` wrote for this berth dir, as found on disk: that it is this
//! berth dir's, that the program it runs is still there, and (under systemd) whether it runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{Check, Inputs, Verdict, probe};
use crate::service::Platform;

/// Larger than any service file berth writes; a bigger one is not berth's.
const MAX_UNIT_BYTES: u64 = 64 * 1024;

pub fn service(inputs: &Inputs<'_>) -> Check {
    let Some(home) = &inputs.home else {
        return Check::new(
            "service",
            Verdict::Warn,
            "HOME is not set; cannot look for it",
        );
    };
    let name = crate::service::service_name(&inputs.berth_dir, home);
    let path = crate::service::unit_path(inputs.platform, &name, home);
    let text = match crate::hostile_file::read_regular_string(&path, MAX_UNIT_BYTES) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => {
            return Check::new(
                "service",
                Verdict::Warn,
                format!(
                    "not installed ({} absent); `berth install` writes it",
                    path.display()
                ),
            );
        }
        Err(e) => {
            return Check::new("service", Verdict::Fail, format!("{}: {e}", path.display()));
        }
    };
    if let Err(problem) = check_file(inputs, &text) {
        return Check::new(
            "service",
            Verdict::Fail,
            format!(
                "{}: {problem}; `berth install --force` writes it again",
                path.display()
            ),
        );
    }
    if inputs.platform != Platform::Systemd || which::which("systemctl").is_err() {
        return Check::new(
            "service",
            Verdict::Ok,
            format!("installed at {}", path.display()),
        );
    }
    match probe("systemctl", &["--user", "is-active", &name]) {
        Ok((true, state)) => Check::new(
            "service",
            Verdict::Ok,
            format!("{name} is {state} ({})", path.display()),
        ),
        Ok((false, state)) => Check::new(
            "service",
            Verdict::Warn,
            format!(
                "{name} is installed but {} (systemctl --user enable --now {name})",
                if state.is_empty() {
                    "not active"
                } else {
                    &state
                }
            ),
        ),
        Err(e) => Check::new("service", Verdict::Warn, format!("installed; {e}")),
    }
}

/// The file names this berth dir and runs a program that is an executable file.
fn check_file(inputs: &Inputs<'_>, text: &str) -> Result<(), UnitProblem> {
    match crate::service::recorded_berth_dir(inputs.platform, text) {
        Some(dir) if dir == inputs.berth_dir => {}
        Some(dir) => return Err(UnitProblem::OtherBerthDir(dir)),
        None => return Err(UnitProblem::NoBerthDir),
    }
    let Some(binary) = crate::service::recorded_binary(inputs.platform, text) else {
        return Err(UnitProblem::NoProgram);
    };
    if !is_executable(&binary) {
        return Err(UnitProblem::NotExecutable(binary));
    }
    Ok(())
}

/// What is wrong with an installed service file.
#[derive(Debug, thiserror::Error)]
enum UnitProblem {
    #[error("it runs the berth dir {}", .0.display())]
    OtherBerthDir(std::path::PathBuf),
    #[error("it names no BERTH_DIR (not written by `berth install`)")]
    NoBerthDir,
    #[error("it names no program to run")]
    NoProgram,
    #[error("it runs {}, which is not an executable file", .0.display())]
    NotExecutable(std::path::PathBuf),
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
