//! `berth doctor` against a running daemon: the rule set and configuration it runs, and
//! the service unit it finds.

use std::fs;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{World, stop};

const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// `berth doctor` for the world's daemon: its exit code and its lines.
fn doctor(world: &World, config: &std::path::Path) -> (Option<i32>, String) {
    let out = world
        .berth()
        .env("BERTH_DIR", world.berth_state())
        .env("BERTH_CONFIG", config)
        .args(["doctor", "--platform", "systemd"])
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

fn line<'t>(text: &'t str, prefix: &str) -> &'t str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
}

#[test]
fn doctor_fails_while_the_daemon_runs_a_refused_rule_edit_or_config() {
    let world = World::new();
    let config = world.git_forge_config("poll_secs = 1\n");
    let good_config = fs::read_to_string(&config).unwrap();
    let daemon = world.spawn_watching(&config);
    let health = world.berth_state().join("daemon-health.json");
    assert!(world.wait_for(RELOAD_WAIT, || {
        fs::read_to_string(&health).is_ok_and(|t| t.contains("lastTick"))
    }));
    let (code, text) = doctor(&world, &config);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        line(&text, "ok    daemon rules: runs ").contains("last reload: ok at "),
        "{text}"
    );

    // A broken edit the daemon refuses: doctor names where, and fails.
    let seen = berth::rules::write_and_await(
        &world.rules_root(),
        &world.berth_state(),
        "policies/landing.rhai",
        "fn admit(record, ctx) {\n    #{ decision: \"go\" \n",
        RELOAD_WAIT,
    )
    .unwrap();
    assert!(
        matches!(seen, berth::rules::ReloadSeen::Refused(_)),
        "{seen:?}"
    );
    let (code, text) = doctor(&world, &config);
    assert_eq!(code, Some(1), "{text}");
    let refused = line(&text, "FAIL  daemon rules: runs ");
    assert!(
        refused.contains("last reload: failed at ") && refused.contains("policies/landing.rhai:3:"),
        "{text}"
    );

    // Mended: healthy again. Then a config file a SIGHUP cannot load.
    fs::remove_file(world.rules_root().join("policies/landing.rhai")).unwrap();
    assert!(world.wait_for(RELOAD_WAIT, || doctor(&world, &config).0 == Some(0)));
    fs::write(&config, "poll_secs = \n").unwrap();
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGHUP).unwrap();
    assert!(world.wait_for(RELOAD_WAIT, || {
        fs::read_to_string(&health).is_ok_and(|t| t.contains("lastConfigReload"))
    }));
    let (code, text) = doctor(&world, &config);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        line(&text, "FAIL  daemon config: last SIGHUP reload at ").contains("refused: "),
        "{text}"
    );
    fs::write(&config, good_config).unwrap();
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGHUP).unwrap();
    assert!(world.wait_for(RELOAD_WAIT, || doctor(&world, &config).0 == Some(0)));
    stop(daemon);
}

#[test]
fn doctor_checks_the_unit_it_finds() {
    let world = World::new();
    let state = world.berth_state();
    let install = world
        .berth()
        .env("BERTH_DIR", &state)
        .args(["install", "--platform", "systemd"])
        .output()
        .unwrap();
    assert!(install.status.success(), "{install:?}");
    let unit = world.home.join(".config/systemd/user").join(format!(
        "{}.service",
        berth::service::service_name(&state, &world.home)
    ));
    let config = world.config("");
    let (_, text) = doctor(&world, &config);
    let service = text.lines().find(|l| l.contains("  service: ")).unwrap();
    assert!(!service.starts_with("FAIL"), "{text}");

    let text_of_unit = fs::read_to_string(&unit).unwrap();
    let binary =
        berth::service::recorded_binary(berth::service::Platform::Systemd, &text_of_unit).unwrap();
    let moved = text_of_unit.replace(
        &binary.display().to_string(),
        &world.root.join("gone/berth").display().to_string(),
    );
    fs::write(&unit, moved).unwrap();
    let (code, text) = doctor(&world, &config);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        line(&text, "FAIL  service: ").contains("gone/berth, which is not an executable file"),
        "{text}"
    );

    let other = text_of_unit.replace(
        &format!("BERTH_DIR={}", state.display()),
        &format!("BERTH_DIR={}", world.root.join("other").display()),
    );
    fs::write(&unit, other).unwrap();
    let (_, text) = doctor(&world, &config);
    assert!(
        line(&text, "FAIL  service: ").contains("it runs the berth dir "),
        "{text}"
    );
}

/// An origin that accepts connections and never answers; it counts how many of them were
/// open at once.
struct SilentOrigin {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most_open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentOrigin {
    fn start() -> SilentOrigin {
        use std::io::Read;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let most_open = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (a, m) = (Arc::clone(&accepted), Arc::clone(&most_open));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let open = Arc::clone(&open);
                std::thread::spawn(move || {
                    // Read (and drop) until the client gives up and closes.
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        SilentOrigin {
            port,
            accepted,
            most_open,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn most_open(&self) -> usize {
        self.most_open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn status_and_doctor_ask_origins_at_once_within_the_timeout_or_not_at_all() {
    let world = World::new();
    let origin = SilentOrigin::start();
    for (pr, name) in [(1, "widget"), (2, "gadget")] {
        let repo = world.repo(name, &origin.url(name));
        world.record(&repo, pr).write();
    }
    let config = world.git_forge_config("");
    let run = |args: &[&str]| {
        let out = world
            .berth()
            .env("BERTH_DIR", world.berth_state())
            .env("BERTH_CONFIG", &config)
            .args(args)
            .output()
            .unwrap();
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };

    let (text, stderr) = run(&["status", "--offline"]);
    assert_eq!(origin.accepted(), 0, "{text}");
    assert_eq!(text.matches("not listed (--offline)").count(), 2, "{text}");
    let (text, _) = run(&["doctor", "--offline"]);
    assert_eq!(origin.accepted(), 0, "{text}");
    assert_eq!(text.matches("not checked (--offline)").count(), 2, "{text}");
    // Piped: no progress line.
    assert!(!stderr.contains("listing lane locks"), "{stderr}");

    let (text, stderr) = run(&["status", "--timeout", "2"]);
    assert_eq!(origin.accepted(), 2, "{text}");
    assert_eq!(
        origin.most_open(),
        2,
        "the origins were asked one after the other"
    );
    assert_eq!(
        text.matches("waiting: lane locks on git://").count(),
        2,
        "{text}"
    );
    assert!(!stderr.contains("listing lane locks"), "{stderr}");
    let (text, _) = run(&["doctor", "--timeout", "2"]);
    assert_eq!(origin.accepted(), 4, "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("FAIL  lane locks of "))
            .count(),
        2,
        "{text}"
    );
}

/// A file written when berth took TTLs above 2 h still loads, its TTL lowered to 2 h and
/// logged; doctor, the place an operator checks a config, says so too.
#[test]
fn doctor_warns_of_a_lock_ttl_it_lowers() {
    let world = World::new();
    let config = world.git_forge_config("lock_ttl_secs = 21600\nheartbeat_secs = 900\n");
    let (_, text) = doctor(&world, &config);
    let said = line(&text, "warn  config: ");
    assert!(said.contains("lock_ttl_secs (21600)"), "{text}");
    let kept = world.git_forge_config("");
    let (_, text) = doctor(&world, &kept);
    line(&text, "ok    config: ");
}
