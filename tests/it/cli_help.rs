//! The command line's help: each flag shows only on the commands it applies to.

use crate::support::World;

/// `berth <args> --help`, as the user reads it.
fn help(world: &World, args: &[&str]) -> String {
    let out = world.berth().args(args).arg("--help").assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

#[test]
fn queue_project_and_log_flags_show_only_where_they_apply() {
    let world = World::new();
    let completions = help(&world, &["completions"]);
    for flag in ["--queue-dir", "--project-root", "--log-format"] {
        assert!(
            !completions.contains(flag),
            "completions --help shows {flag}:\n{completions}"
        );
    }
    for args in [&["rules", "check"][..], &["detect"], &["faults", "list"]] {
        assert!(!help(&world, args).contains("--queue-dir"), "{args:?}");
    }
    let status = help(&world, &["status"]);
    assert!(status.contains("--queue-dir"), "{status}");
    assert!(status.contains("BERTH_QUEUE_DIR"), "{status}");
    // `retry` touches no repo; `status` gates repos to list their lane locks.
    let retry = help(&world, &["retry"]);
    assert!(!retry.contains("--project-root"), "{retry}");
    for args in [
        &["status"][..],
        &["enqueue"],
        &["lock", "status"],
        &["doctor"],
        &["config", "show"],
    ] {
        let text = help(&world, args);
        assert!(
            text.contains("--queue-dir") && text.contains("--project-root"),
            "{args:?}"
        );
    }
    assert!(help(&world, &["run"]).contains("--log-format"));
    // A flag given where it does not apply is a usage error, not silently ignored.
    world
        .berth()
        .args(["completions", "bash", "--queue-dir", "/tmp"])
        .assert()
        .code(2);
    // Every command still takes the log format from the environment; a bad one is named.
    world
        .berth()
        .args(["status"])
        .env("BERTH_LOG_FORMAT", "xml")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("BERTH_LOG_FORMAT"));
}

/// Every command and subcommand, with its path (`berth lock status`).
fn walk(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
    for sub in command.get_subcommands() {
        let sub_path = format!("{path} {}", sub.get_name());
        out.push((sub_path.clone(), sub.clone()));
        walk(sub, sub_path, out);
    }
}

#[test]
fn every_flag_has_help_and_every_main_command_has_examples() {
    use clap::CommandFactory;
    let root = berth::cli::Cli::command();
    let mut commands = Vec::new();
    walk(&root, "berth".into(), &mut commands);
    let mut missing: Vec<String> = Vec::new();
    for (path, command) in &commands {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path}: {}", arg.get_id()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "arguments without help text:\n{}",
        missing.join("\n")
    );
    let no_examples: Vec<&str> = root
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .filter(|c| {
            let text = c
                .get_after_long_help()
                .or(c.get_after_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            !text.contains("Examples:\n  berth ")
        })
        .map(clap::Command::get_name)
        .collect();
    assert!(
        no_examples.is_empty(),
        "commands without an Examples section: {no_examples:?}"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let world = World::new();
    let out = world.berth().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("berth {}\n", berth::VERSION)
    );
    let commit = berth::VERSION
        .strip_prefix(concat!(env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap();
    // Built from this checkout: a commit git knows.
    assert!(
        commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{commit}"
    );
    let known = std::process::Command::new("git")
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(known.success(), "{commit}");
}

/// `docs/cli-reference.md` is what `berth man --format markdown` prints from the flags
/// this binary has: a flag added, renamed or re-documented without regenerating it fails.
#[test]
fn the_cli_reference_in_docs_is_generated_from_the_current_flags() {
    let world = World::new();
    let out = world
        .berth()
        .args(["man", "--format", "markdown"])
        .assert()
        .success();
    let generated = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli-reference.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == committed,
        "{} is stale: regenerate it with `cargo run -q -- man --format markdown > docs/cli-reference.md`",
        path.display()
    );
    use clap::CommandFactory;
    let mut commands = Vec::new();
    walk(&berth::cli::Cli::command(), "berth".into(), &mut commands);
    for (path, _) in commands.iter().filter(|(p, _)| !p.ends_with(" help")) {
        assert!(generated.contains(&format!("\n## `{path}`\n")), "{path}");
    }
}

/// `berth man` prints berth(1); `--out-dir` writes a page per command, named as `man`
/// looks them up (`man berth-lock-status`).
#[test]
fn man_pages_are_generated_for_every_command() {
    let world = World::new();
    let out = world.berth().arg("man").assert().success();
    let page = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(page.contains(".TH berth 1"), "{page}");
    assert!(page.contains("berth\\-lock(1)"), "{page}");
    let dir = world.root.join("man1");
    std::fs::create_dir_all(&dir).unwrap();
    world
        .berth()
        .args(["man", "--out-dir"])
        .arg(&dir)
        .assert()
        .success();
    use clap::CommandFactory;
    let mut commands = Vec::new();
    walk(&berth::cli::Cli::command(), "berth".into(), &mut commands);
    for (path, _) in commands.iter().filter(|(p, _)| !p.ends_with(" help")) {
        let name = path.replace(' ', "-");
        let text = std::fs::read_to_string(dir.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(text.contains(&format!(".TH {name} 1")), "{name}.1:\n{text}");
    }
}
