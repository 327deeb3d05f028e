//! Rule edges: answers the shipped rules must be able to give, fallbacks that must stay
//! visible and bounded, built-in samples that match what the daemon really asks.

use std::fs;
use std::path::Path;

use crate::support::World;

const LANDING: &str = include_str!("../../policies/landing.rhai");

/// `max_lanes = 65` in the config: the contract caps lanes at 64, so the shipped
/// `max_lanes` rule (which answers the config's value) would fail closed with no rule
/// edited. The config is refused at load with an error naming `max_lanes` instead.
#[test]
fn a_config_max_lanes_over_the_cap_does_not_make_the_shipped_rule_fail() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.queue(1, "main");
    let config = world.git_forge_config("max_lanes = 65\n");
    let out = world
        .berth_daemon()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refused = !out.status.success() && stderr.contains("max_lanes");
    let fallbacks = berth::rules::fallbacks::read(&world.berth_state()).unwrap();
    assert!(
        refused || fallbacks.iter().all(|f| f.function != "max_lanes"),
        "the shipped max_lanes rule fails closed on a config value: {fallbacks:#?}\n{stderr}"
    );
}

/// An `accept_pr` that fails for a listed PR fails closed (not accepted), and the fallback
/// is listed with the id the record would have had. No record row exists for it (the PR
/// was not accepted), so `berth status` prints it as a `rule failing:` line (DESIGN §8 /
/// issue 10: the fallback is visible in `berth status` while it lasts).
#[test]
fn a_failing_accept_pr_is_visible_in_status() {
    let world = World::new();
    let gh = world.gh_lane();
    // The repo's only record is settled: it is discovered because it is configured.
    world
        .record(&gh.repo, 40)
        .set("repoIdentity", "github.com/acme/widget")
        .set("status", "landed")
        .set("lastGithubState", "MERGED")
        .write();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gh");
    fs::copy(
        fixtures.join("pr-list.acme.widget.json"),
        gh.replies.join("pr-list.acme.widget.json"),
    )
    .unwrap();
    let config = gh.config(
        r#"["true"]"#,
        &format!("repos = [{:?}]\n", gh.repo.to_str().unwrap()),
    );
    world.write_rule(
        "rules/discovery.rhai",
        &include_str!("../../rules/discovery.rhai").replace(
            "    #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
            "    if pr.headBranch == \"feat/login\" { throw \"cannot decide\"; }\n    \
             #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
        ),
    );
    gh.berth()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .arg("--rules-root")
        .arg(world.rules_root())
        .output()
        .unwrap();
    let fallbacks = berth::rules::fallbacks::read(&world.berth_state()).unwrap();
    assert!(
        fallbacks.iter().any(|f| f.function == "accept_pr"),
        "precondition: accept_pr failed closed: {fallbacks:#?}"
    );
    let out = world.berth_daemon().arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("accept_pr"),
        "status never says the accept_pr rule is failing:\n{stdout}"
    );
}

/// `rules check` calls `accept_pr` with built-in PRs like every PR the daemon asks about
/// (the forge listing only passes same-repository PRs with a valid marker, and `marker`
/// holds its fields), so a rule that reads the marker (`pr.marker.version`) is accepted.
#[test]
fn rules_check_accepts_an_accept_pr_that_reads_the_marker() {
    let world = World::new();
    world.write_rule(
        "rules/discovery.rhai",
        &include_str!("../../rules/discovery.rhai").replace(
            "    #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
            "    if pr.marker.version.starts_with(\"0.\") {\n        \
             return #{ accept: false, reason: \"pre-release versions wait\" };\n    }\n    \
             #{ accept: true, reason: \"labelled, valid marker, same repository\" }",
        ),
    );
    assert_rules_check_accepts(&world);
}

/// The built-in samples' `ctx.config.forge` is a forge name the daemon passes (`"gh"` or
/// `"git"`), so a `max_lanes` that answers per forge, for the two forges there are, is
/// accepted by `rules check` (and so by daemon start and hot reload).
#[test]
fn rules_check_accepts_a_rule_that_answers_per_forge() {
    let world = World::new();
    world.write_rule(
        "policies/landing.rhai",
        &LANDING.replace(
            "fn max_lanes(ctx) {\n    ctx.config.maxLanes\n}",
            "fn max_lanes(ctx) {\n    switch ctx.config.forge { \"gh\" => 2, \"git\" => 1 }\n}",
        ),
    );
    assert!(
        fs::read_to_string(world.rules_root().join("policies/landing.rhai"))
            .unwrap()
            .contains("switch")
    );
    assert_rules_check_accepts(&world);
}

/// An `admit` that throws a 3 MiB string (under the 4 MiB string limit) fails closed, and
/// its message is clipped (2,000 bytes) before it is logged or recorded: the record's row
/// in `berth status` still says why it waits, and one tick logs kilobytes, not megabytes.
#[test]
fn a_huge_rule_error_stays_visible_and_bounded() {
    let world = World::new();
    let lane = world.git_lane("widget", None);
    lane.queue(1, "main");
    world.write_rule(
        "policies/landing.rhai",
        &LANDING.replace(
            "    #{ decision: \"go\", reason: \"no landing policy holds it back\" }",
            "    if ctx.config.forge == \"git\" {\n        \
             let s = \"xxx\";\n        while s.len() < 3000000 { s += s; }\n        \
             throw s;\n    }\n    \
             #{ decision: \"go\", reason: \"no landing policy holds it back\" }",
        ),
    );
    let config = world.git_forge_config("");
    let out = world
        .berth_daemon()
        .args(["run", "--once", "--config", config.to_str().unwrap()])
        .arg("--rules-root")
        .arg(world.rules_root())
        .output()
        .unwrap();
    let logged = out.stderr.len();
    let status = world.berth_daemon().arg("status").output().unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stdout.contains("the admit rule failed"),
        "status does not say why the record waits (the run logged {logged} bytes):\n{}\n{}",
        &stdout[..stdout.len().min(2000)],
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        logged < 256 * 1024,
        "one `run --once` logged {logged} bytes"
    );
}

/// `berth rules check` on the world's rules root says ok.
fn assert_rules_check_accepts(world: &World) {
    let out = world
        .berth()
        .args(["rules", "check"])
        .arg(world.rules_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "refused:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
