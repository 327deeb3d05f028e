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
    assert!(!status.contains("--project-root"), "{status}");
    for args in [
        &["enqueue"][..],
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
