//! `berth install` / `uninstall`: the service files, read back the way systemd and launchd
//! read them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::support::World;

/// One `[Section]` `Key=value` file; repeated keys keep every value in order.
pub type Unit = BTreeMap<(String, String), Vec<String>>;

pub fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("Key=value");
        unit.entry((section.clone(), key.to_owned()))
            .or_default()
            .push(value.to_owned());
    }
    unit
}

/// systemd's word splitting for `ExecStart=` and `Environment=`: whitespace-separated
/// words, double quotes, C escapes, `%%` → `%`, and (`exec`) `$$` → `$`.
pub fn systemd_words(value: &str, exec: bool) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => break,
                '\\' => match chars.next().unwrap() {
                    'n' => word.push('\n'),
                    't' => word.push('\t'),
                    'x' => {
                        let hex: String = chars.by_ref().take(2).collect();
                        word.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
                    }
                    other => word.push(other),
                },
                '%' => {
                    assert_eq!(chars.next(), Some('%'), "a bare % is a specifier");
                    word.push('%');
                }
                '$' if exec => {
                    assert_eq!(chars.next(), Some('$'), "a bare $ is expanded");
                    word.push('$');
                }
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

pub fn env_of(unit: &Unit) -> BTreeMap<String, String> {
    unit[&("Service".into(), "Environment".into())]
        .iter()
        .flat_map(|v| systemd_words(v, false))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn berth_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("berth")
        .canonicalize()
        .unwrap()
}

/// `berth ARGS` for the berth dir `dir` (as `BERTH_DIR`), its output.
fn berth_for(world: &World, dir: &Path, args: &[&str]) -> std::process::Output {
    world
        .berth()
        .env("BERTH_DIR", dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn systemd_unit_is_named_per_berth_dir_escaped_and_verified() {
    let world = World::new();
    // Every character systemd treats specially, in paths berth must record.
    let state = world.home.join("state 50% $HOME \"q\"");
    let config = world.root.join("conf dir/berth%.toml");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(&config, "poll_secs = 5\n").unwrap();
    let install = |extra: &[&str]| {
        world
            .berth()
            .env("BERTH_DIR", &state)
            .env("PATH", "/opt/tools/bin:/usr/bin:/bin")
            .args(["install", "--platform", "systemd", "--config"])
            .arg(&config)
            .args(extra)
            .output()
            .unwrap()
    };

    // --print shows it and writes nothing.
    let out = install(&["--print"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let units = world.home.join(".config/systemd/user");
    assert!(!units.exists(), "--print wrote something");

    let out = install(&["--metrics-addr", "127.0.0.1:9464"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = "berth-state-50-HOME-q";
    let path = units.join(format!("{name}.service"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("Installed {}", path.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("systemctl --user enable --now {name}")),
        "{stdout}"
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        printed.ends_with(&text.replace(" \"--metrics-addr\" \"127.0.0.1:9464\"", "")),
        "{printed}\n---\n{text}"
    );

    let unit = parse_unit(&text);
    let exec = systemd_words(&unit[&("Service".into(), "ExecStart".into())][0], true);
    let mut expected: Vec<String> = vec![berth_bin().display().to_string()];
    expected.extend(
        [
            "run",
            "--watch",
            "--queue-dir",
            world.queue.to_str().unwrap(),
            "--berth-dir",
            state.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:9464",
            // gstack's `$HOME` default that exists here: the service allows what the shell does.
            "--allowed-root",
            world.code.to_str().unwrap(),
        ]
        .map(String::from),
    );
    assert_eq!(exec, expected);
    let env = env_of(&unit);
    assert_eq!(env["HOME"], world.home.to_str().unwrap());
    assert_eq!(env["BERTH_DIR"], state.to_str().unwrap());
    let path_dirs: Vec<&str> = env["PATH"].split(':').collect();
    for dir in ["/opt/tools/bin", "/usr/bin", "/bin", "/usr/local/bin"] {
        assert!(path_dirs.contains(&dir), "{dir} missing from {path_dirs:?}");
    }
    assert_eq!(
        unit[&("Install".into(), "WantedBy".into())],
        ["default.target"]
    );
    assert_eq!(unit[&("Service".into(), "KillMode".into())], ["mixed"]);
    assert_eq!(
        unit[&("Service".into(), "ExecReload".into())],
        ["kill -HUP $MAINPID"]
    );
    assert_eq!(
        unit[&("Service".into(), "SuccessExitStatus".into())],
        ["143"]
    );
    // The world lives under /tmp: a private /tmp would hide the queue from the service.
    assert!(!unit.contains_key(&("Service".into(), "PrivateTmp".into())));
    assert_eq!(unit[&("Service".into(), "LimitNOFILE".into())], ["65536"]);

    verify_with_systemd_analyze(&path);
    security_score_at_most(&path, 4.0);

    // Another berth dir whose name folds to the same service is refused, naming the first.
    let other = world.home.join("state-50-HOME-q");
    let out = berth_for(&world, &other, &["install", "--platform", "systemd"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is the service of another berth dir")
            && stderr.contains(state.to_str().unwrap()),
        "{stderr}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), text, "overwritten");
    // …and so is uninstalling it from there.
    let out = berth_for(&world, &other, &["uninstall", "--platform", "systemd"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(path.exists());
    // A second install for the same dir updates it in place.
    assert!(install(&[]).status.success());
    // --force takes it over.
    let out = berth_for(
        &world,
        &other,
        &["install", "--platform", "systemd", "--force"],
    );
    assert!(out.status.success());
    assert_eq!(
        env_of(&parse_unit(&fs::read_to_string(&path).unwrap()))["BERTH_DIR"],
        other.to_str().unwrap()
    );

    let out = berth_for(&world, &other, &["uninstall", "--platform", "systemd"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Removed {}", path.display())));
    assert!(!path.exists());
}

/// `systemd-analyze verify` on the written unit, where the machine has it; otherwise the
/// skip is said out loud.
fn verify_with_systemd_analyze(path: &Path) {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(path)
        .output()
    else {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed here");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains(path.file_name().unwrap().to_str().unwrap()),
        "systemd-analyze verify {}:\n{stderr}",
        path.display()
    );
}

/// `systemd-analyze security` on the unit file scores it at most `limit` (lower is
/// safer), where the machine has it; otherwise the skip is said out loud.
fn security_score_at_most(path: &Path, limit: f64) {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(path)
        .output()
    else {
        eprintln!("SKIPPED systemd-analyze security: systemd-analyze is not installed here");
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score: f64 = stdout
        .lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no score:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(score <= limit, "exposure {score} > {limit}:\n{stdout}");
}

#[test]
fn launchd_agent_is_a_valid_plist_with_the_argv_and_environment() {
    let world = World::new();
    let state = world.home.join("state <&> 'x'");
    let out = berth_for(&world, &state, &["install", "--platform", "launchd"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = world
        .home
        .join("Library/LaunchAgents/dev.berth.berth-state-x.plist");
    let value = plist::Value::from_file(&path).expect("a valid property list");
    let dict = value.as_dictionary().unwrap();
    assert_eq!(dict["Label"].as_string(), Some("dev.berth.berth-state-x"));
    let argv: Vec<&str> = dict["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(argv[0], berth_bin().to_str().unwrap());
    assert_eq!(
        argv[1..],
        [
            "run",
            "--watch",
            "--queue-dir",
            world.queue.to_str().unwrap(),
            "--berth-dir",
            state.to_str().unwrap(),
            "--allowed-root",
            world.code.to_str().unwrap(),
        ]
    );
    let env = dict["EnvironmentVariables"].as_dictionary().unwrap();
    assert_eq!(env["BERTH_DIR"].as_string(), state.to_str());
    assert_eq!(env["HOME"].as_string(), world.home.to_str());
    assert!(env["PATH"].as_string().unwrap().contains("/usr/bin"));
    assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
    assert_eq!(
        dict["StandardErrorPath"].as_string(),
        state.join("berth.err.log").to_str()
    );
    let out = berth_for(&world, &state, &["uninstall", "--platform", "launchd"]);
    assert!(out.status.success());
    assert!(!path.exists());
}
