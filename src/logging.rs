//! Logs on stderr, made for a service manager: the filter from `BERTH_LOG` (or `RUST_LOG`
//! when `BERTH_LOG` is unset), plain text or one JSON object per line, and colour only
//! when stderr is a terminal (a journal or a log file gets no escape codes).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-… INFO message key=value`.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields.message`, other fields.
    Json,
}

/// A logging setting from the environment that berth cannot use; each names its variable.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The variable's value, as the shell would quote it.
    #[error("BERTH_LOG_FORMAT={0} is not a log format: use `text` or `json`")]
    Format(String),
    #[error(
        "{name}={spec:?} is not a valid log filter: {source} (e.g. `info`, `debug`, `berth=debug,warn`)"
    )]
    Filter {
        name: &'static str,
        spec: String,
        source: tracing_subscriber::filter::ParseError,
    },
}

impl LogFormat {
    /// `BERTH_LOG_FORMAT`, for the commands that have no `--log-format` flag: `text` when
    /// unset; a value that is neither `text` nor `json` is an error naming the variable.
    pub fn from_env() -> Result<LogFormat, LoggingError> {
        match std::env::var("BERTH_LOG_FORMAT") {
            Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
            Ok(value) => <LogFormat as clap::ValueEnum>::from_str(&value, false)
                .map_err(|_| LoggingError::Format(format!("{value:?}"))),
            Err(std::env::VarError::NotUnicode(value)) => {
                Err(LoggingError::Format(format!("{value:?}")))
            }
        }
    }
}

/// Where the filter came from, for the error that names it.
#[derive(Debug, PartialEq, Eq)]
pub enum FilterSource {
    BerthLog(String),
    RustLog(String),
    Default(&'static str),
}

impl FilterSource {
    /// `BERTH_LOG` when set (even if `RUST_LOG` is too), else `RUST_LOG`, else `default`.
    pub fn from_env(default: &'static str) -> FilterSource {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        match (var("BERTH_LOG"), var("RUST_LOG")) {
            (Some(spec), _) => FilterSource::BerthLog(spec),
            (None, Some(spec)) => FilterSource::RustLog(spec),
            (None, None) => FilterSource::Default(default),
        }
    }

    /// The filter, or an error naming the variable and what is wrong with it.
    pub fn filter(&self) -> Result<EnvFilter, LoggingError> {
        let (name, spec) = match self {
            FilterSource::BerthLog(spec) => ("BERTH_LOG", spec.as_str()),
            FilterSource::RustLog(spec) => ("RUST_LOG", spec.as_str()),
            FilterSource::Default(spec) => return Ok(EnvFilter::new(spec)),
        };
        EnvFilter::builder()
            .parse(spec)
            .map_err(|source| LoggingError::Filter {
                name,
                spec: spec.to_owned(),
                source,
            })
    }
}

/// Installs the global subscriber; an invalid filter is an error for the caller to report.
pub fn init(source: &FilterSource, format: LogFormat) -> Result<(), LoggingError> {
    let filter = source.filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests calling `cli::run` twice in one process) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_names_its_variable() {
        let err = FilterSource::RustLog("berth=loud".into())
            .filter()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("RUST_LOG=\"berth=loud\""), "{err}");
        assert!(FilterSource::BerthLog("debug".into()).filter().is_ok());
        assert!(FilterSource::Default("info").filter().is_ok());
    }
}
