//! The CLI reference in Markdown (`docs/cli-reference.md`), generated from the clap tree so
//! it cannot drift from the flags: every command and subcommand with its usage, its
//! arguments (environment variable, default, accepted values) and its examples.

use clap::{Arg, ArgAction, Command};

/// How to regenerate `docs/cli-reference.md`.
pub const REGENERATE: &str = "cargo run -q -- man --format markdown > docs/cli-reference.md";

/// The whole reference for `cli` (the root command, `berth`).
pub fn markdown(cli: Command) -> String {
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let mut out = format!(
        "# CLI reference\n\n\
         Generated from berth's argument definitions by `berth man --format markdown`: do not \
         edit it by hand. A test fails when it is stale; regenerate it with\n`{REGENERATE}`.\n\
         What each command does, its output formats and exit codes: [Commands](cli.md).\n"
    );
    section(&cli, "berth", &mut out);
    out
}

/// One command's section, then its subcommands'.
fn section(cmd: &Command, path: &str, out: &mut String) {
    out.push_str(&format!("\n## `{path}`\n\n"));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        out.push_str(&format!("{}\n\n", about.to_string().trim()));
    }
    let usage = cmd.clone().bin_name(path).render_usage().to_string();
    out.push_str(&format!("```text\n{}\n```\n", usage.trim()));
    let args: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if !args.is_empty() {
        out.push_str("\n| argument | environment | default | description |\n|---|---|---|---|\n");
        for arg in args {
            out.push_str(&row(arg));
        }
    }
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        out.push_str(&format!("\n```text\n{}\n```\n", after.to_string().trim()));
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        section(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

/// `| `--queue-dir <DIR>` | `BERTH_QUEUE_DIR` | | The queue directory … |`.
fn row(arg: &Arg) -> String {
    let env = arg
        .get_env()
        .map(|e| format!("`{}`", e.to_string_lossy()))
        .unwrap_or_default();
    // A flag's default is its absence; only an option's default says something.
    let defaults = if takes_value(arg) {
        arg.get_default_values()
    } else {
        &[]
    };
    let default = defaults
        .iter()
        .map(|v| format!("`{}`", v.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if !values.is_empty() && takes_value(arg) {
        help.push_str(&format!(" One of: {}.", values.join(", ")));
    }
    format!(
        "| `{}` | {env} | {default} | {} |\n",
        spelling(arg),
        cell(&help)
    )
}

fn takes_value(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
}

/// `-v, --verbose`, `--queue-dir <DIR>`, `<SHELL>`.
fn spelling(arg: &Arg) -> String {
    let names: Vec<String> = arg.get_value_names().map_or_else(
        || vec![arg.get_id().as_str().to_uppercase()],
        |names| names.iter().map(ToString::to_string).collect(),
    );
    let value = names
        .iter()
        .map(|n| format!("<{n}>"))
        .collect::<Vec<_>>()
        .join(" ");
    if arg.is_positional() {
        let more = if matches!(arg.get_action(), ArgAction::Append) {
            "..."
        } else {
            ""
        };
        return format!("{value}{more}");
    }
    let mut flags = Vec::new();
    if let Some(short) = arg.get_short() {
        flags.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        flags.push(format!("--{long}"));
    }
    let flags = flags.join(", ");
    if takes_value(arg) {
        format!("{flags} {value}")
    } else {
        flags
    }
}

/// Help text as one table cell: no line breaks, no column separators.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}
