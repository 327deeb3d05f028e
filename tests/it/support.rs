//! The test world: a temp dir with a fake `$HOME`, a queue dir, real git repos and bare
//! remotes, and a fluent way to plant records and run the `berth` binary against them.

#![allow(dead_code)] // each test module uses a different part of the builder

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use serde_json::{Value, json};

pub struct World {
    _root: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    pub queue: PathBuf,
    /// `$HOME/code`: an allowed root by default.
    pub code: PathBuf,
}

impl World {
    pub fn new() -> World {
        let temp = tempfile::tempdir().expect("temp dir");
        let root = temp.path().canonicalize().expect("realpath of temp dir");
        let home = root.join("home");
        let code = home.join("code");
        let queue = home.join(".gstack/build-state/release-queue");
        fs::create_dir_all(&code).unwrap();
        fs::create_dir_all(&queue).unwrap();
        World {
            _root: temp,
            root,
            home,
            queue,
            code,
        }
    }

    /// Leaves the world's files (logs included) in place when it is dropped, and returns
    /// where they are: for a long run worth diagnosing after the fact.
    pub fn keep(&mut self) -> &Path {
        self._root.disable_cleanup(true);
        &self.root
    }

    /// A `git` command with a fixed identity and no user or system config.
    pub fn git(&self, cwd: &Path) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(cwd)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "berth test")
            .env("GIT_AUTHOR_EMAIL", "test@berth.invalid")
            .env("GIT_COMMITTER_NAME", "berth test")
            .env("GIT_COMMITTER_EMAIL", "test@berth.invalid");
        cmd
    }

    pub fn run_git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.git(cwd).args(args).output().expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} in {}: {}",
            cwd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A bare remote at `<root>/remotes/<name>.git` with `main` holding one commit.
    pub fn bare_remote(&self, name: &str) -> PathBuf {
        let remotes = self.root.join("remotes");
        fs::create_dir_all(&remotes).unwrap();
        let bare = remotes.join(format!("{name}.git"));
        self.run_git(
            &remotes,
            &["init", "-q", "--bare", "-b", "main", &format!("{name}.git")],
        );
        let seed = self.root.join(format!("seed-{name}"));
        self.run_git(
            &self.root,
            &["init", "-q", "-b", "main", seed.to_str().unwrap()],
        );
        fs::write(seed.join("README"), format!("{name}\n")).unwrap();
        self.run_git(&seed, &["add", "README"]);
        self.run_git(&seed, &["commit", "-q", "-m", "seed"]);
        self.run_git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
        bare
    }

    /// A clone of `remote_url` at `<dir>/<name>` (defaults: `$HOME/code`).
    pub fn clone_into(&self, dir: &Path, name: &str, remote_url: &str) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        self.run_git(dir, &["clone", "-q", remote_url, name]);
        dir.join(name)
    }

    /// A repo under `$HOME/code/<name>` with one commit and `origin` set to `origin`.
    pub fn repo(&self, name: &str, origin: &str) -> PathBuf {
        let path = self.code.join(name);
        self.run_git(&self.code, &["init", "-q", "-b", "main", name]);
        fs::write(path.join("README"), "x\n").unwrap();
        self.run_git(&path, &["add", "README"]);
        self.run_git(&path, &["commit", "-q", "-m", "init"]);
        self.run_git(&path, &["remote", "add", "origin", origin]);
        path
    }

    /// Starts a record for `repo`; finish it with `.write()`.
    pub fn record(&self, repo: &Path, pr: u64) -> RecordBuilder<'_> {
        RecordBuilder {
            world: self,
            fields: json!({
                "runId": format!("run-{pr}"),
                "repoPath": repo.to_str().unwrap(),
                "baseBranch": "main",
                "featureBranch": format!("feat/pr-{pr}"),
                "prNumber": pr,
                "version": "1.0.0",
                "livingPlanPath": repo.join("PLAN.md").to_str().unwrap(),
                "worktreePath": repo.to_str().unwrap(),
                "queuedAt": "2026-11-24T00:00:00.000Z",
                "status": "queued",
            }),
            file: None,
        }
    }

    /// The `berth` binary, isolated: this world's `$HOME` and queue, no inherited allowlist,
    /// rules root or log filter, run from a directory that is not inside any git repo.
    pub fn berth_std(&self) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("berth"));
        cmd.current_dir(&self.root)
            .env("HOME", &self.home)
            .env("BERTH_QUEUE_DIR", &self.queue)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GSTACK_DAEMON_REPO_ALLOWLIST")
            .env_remove("BERTH_PROJECT_ROOT")
            .env_remove("BERTH_RULES_ROOT")
            .env_remove("BERTH_LOG")
            .env_remove("RUST_LOG")
            .env_remove("BERTH_LOG_FORMAT")
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_METRICS_ADDR")
            .env_remove("XDG_CONFIG_HOME");
        cmd
    }

    pub fn berth(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.berth_std())
    }

    pub fn read_record(&self, id: &str) -> Value {
        self.read_record_in(&self.queue, id)
    }

    /// Rewrites record `id` as a landing in flight, claimed by `owner` and last written at
    /// `updated` (ISO 8601): what a daemon's claim leaves on disk, planted.
    pub fn plant_claim(&self, id: &str, owner: &str, updated: &str) {
        let mut record = self.read_record(id);
        record["status"] = "landing".into();
        record["claimedBy"] = owner.into();
        record["lastUpdatedAt"] = updated.into();
        fs::write(self.queue.join(format!("{id}.json")), record.to_string()).unwrap();
    }

    /// Record `id` of the queue dir `queue`.
    pub fn read_record_in(&self, queue: &Path, id: &str) -> Value {
        let text = fs::read_to_string(queue.join(format!("{id}.json")))
            .unwrap_or_else(|e| panic!("record {id}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// Every `*.json` in the queue with its bytes, to prove files were left untouched.
    pub fn queue_snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&self.queue)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }
}

pub struct RecordBuilder<'w> {
    world: &'w World,
    fields: Value,
    file: Option<String>,
}

impl RecordBuilder<'_> {
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.fields[field] = value.into();
        self
    }

    pub fn remove(mut self, field: &str) -> Self {
        self.fields.as_object_mut().unwrap().remove(field);
        self
    }

    /// Overrides the file name (default: the id berth would compute).
    pub fn file(mut self, name: &str) -> Self {
        self.file = Some(name.to_owned());
        self
    }

    /// Writes the record as a producer would and returns its id.
    pub fn write(self) -> String {
        let queue = self.world.queue.clone();
        self.write_to(&queue)
    }

    /// Writes the record into `queue` (one of several queue dirs) and returns its id: a
    /// temp file renamed into place, so a daemon watching the dir never reads half of it.
    pub fn write_to(self, queue: &Path) -> String {
        let id = match self.file {
            Some(name) => name,
            None => {
                let identity = self.fields["repoIdentity"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        format!("path:{}", self.fields["repoPath"].as_str().unwrap_or(""))
                    });
                berth::safe_key::record_id(
                    &identity,
                    self.fields["baseBranch"].as_str().unwrap_or(""),
                    self.fields["prNumber"].as_u64().unwrap_or(0),
                )
            }
        };
        let text = serde_json::to_string_pretty(&self.fields).unwrap() + "\n";
        // A short hidden temp name: the id itself may already be at the file-name limit.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = queue.join(format!(".record-{}-{n}.tmp", std::process::id()));
        fs::write(&temp, text).unwrap();
        fs::rename(&temp, queue.join(format!("{id}.json"))).unwrap();
        id
    }
}

/// A repo landed through the `git` forge: a bare remote, a clone under `$HOME/code`, and a
/// landing script that really merges the feature branch into the base and pushes.
pub struct GitLane<'w> {
    pub world: &'w World,
    pub remote_url: String,
    pub clone: PathBuf,
}

impl World {
    /// A clone of a fresh bare remote `name`, origin set to `remote_url` (a path or a
    /// `git://` URL served by a `git daemon` over `<root>/remotes`).
    pub fn git_lane(&self, name: &str, remote_url: Option<String>) -> GitLane<'_> {
        let bare = self.bare_remote(name);
        let url = remote_url.unwrap_or_else(|| bare.to_str().unwrap().to_owned());
        let clone = self.clone_into(&self.code, name, &url);
        GitLane {
            world: self,
            remote_url: url,
            clone,
        }
    }

    /// `exec <land.sh> "$1" "$2" <root>/ledger "$3"`: the tail of a [`World::step_config`]
    /// script that lands for real, appending to `<root>/ledger`.
    pub fn exec_land(&self) -> String {
        format!(
            "exec {land} \"$1\" \"$2\" {ledger} \"$3\"",
            land = self.land_script().display(),
            ledger = self.root.join("ledger").display(),
        )
    }

    /// `<root>/NAME`: a git-forge config polling each second with a 120 s lock TTL and 5 s
    /// heartbeats whose land step is `sh -c SCRIPT sh BRANCH BASE PR`.
    pub fn step_config(&self, name: &str, script: &str) -> PathBuf {
        let path = self.root.join(name);
        fs::write(
            &path,
            format!(
                "forge = \"git\"\npoll_secs = 1\nlock_ttl_secs = 120\nheartbeat_secs = 5\nland_command = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{branch}}\", \"{{base}}\", \"{{pr}}\"]\n"
            ),
        )
        .unwrap();
        path
    }

    /// `<root>/land.sh BRANCH BASE LEDGER PR`: merge `origin/BRANCH` into `BASE`, push, and
    /// append the PR number to the ledger.
    pub fn land_script(&self) -> PathBuf {
        let path = self.root.join("land.sh");
        fs::write(
            &path,
            "#!/bin/sh\nset -e\nbranch=$1 base=$2 ledger=$3 pr=$4\n\
             git fetch -q origin \"$base\"\n\
             git checkout -q --no-track -B \"$base\" \"origin/$base\"\n\
             git merge -q --no-ff -m \"land $branch\" \"origin/$branch\"\n\
             git push -q origin \"$base\"\n\
             echo \"$pr\" >> \"$ledger\"\n",
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        path
    }

    /// Writes `<root>/berth.toml` and returns its path.
    pub fn config(&self, toml: &str) -> PathBuf {
        let path = self.root.join("berth.toml");
        fs::write(&path, toml).unwrap();
        path
    }

    /// A `git://` server over `<root>/remotes` (where `bare_remote` puts remotes).
    pub fn git_daemon(&self) -> berth::git_daemon::GitDaemon {
        let remotes = self.root.join("remotes");
        fs::create_dir_all(&remotes).unwrap();
        berth::git_daemon::GitDaemon::start(&remotes).expect("git daemon starts")
    }

    /// `berth` set up for daemon runs: the test's git identity (landing scripts commit),
    /// berth's private state in `berth_dir`.
    pub fn daemon_std(&self, berth_dir: &Path) -> Command {
        let mut cmd = self.berth_std();
        cmd.env("BERTH_DIR", berth_dir)
            .env("GIT_AUTHOR_NAME", "berth test")
            .env("GIT_AUTHOR_EMAIL", "test@berth.invalid")
            .env("GIT_COMMITTER_NAME", "berth test")
            .env("GIT_COMMITTER_EMAIL", "test@berth.invalid");
        cmd
    }

    /// `berth` for a daemon run that the test waits for; state in [`World::berth_state`].
    pub fn berth_daemon(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.daemon_std(&self.berth_state()))
    }

    /// `berth run --once --config <config>`, asserted by the caller.
    pub fn run_once(&self, config: &Path) -> assert_cmd::assert::Assert {
        self.berth_daemon()
            .args(["run", "--once", "--config", config.to_str().unwrap()])
            .assert()
    }

    /// `berth <args>` started in the background (a daemon the test signals), with extra
    /// environment; `berth_dir` tells apart daemons that play separate machines. Its
    /// output is appended to `<berth_dir>.log` (a restarted daemon keeps its history).
    pub fn spawn_berth(
        &self,
        args: &[&str],
        berth_dir: &Path,
        env: &[(&str, &Path)],
    ) -> std::process::Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(berth_dir.with_extension("log"))
            .unwrap();
        let mut cmd = self.daemon_std(berth_dir);
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("berth starts")
    }

    /// Waits (up to `limit`) until `done` holds, polling; false on time-out.
    pub fn wait_for(&self, limit: std::time::Duration, done: impl FnMut() -> bool) -> bool {
        wait_until(limit, done)
    }

    /// The pid the step of `daemon` (berth dir `berth_dir`) writes to `pid_file`, waited
    /// for up to 90 s; past that `daemon` is killed and the test fails with its log.
    pub fn step_pid(
        &self,
        pid_file: &Path,
        daemon: &mut std::process::Child,
        berth_dir: &Path,
    ) -> i32 {
        let began = self.wait_for(std::time::Duration::from_secs(90), || {
            fs::read_to_string(pid_file).is_ok_and(|pid| pid.trim().parse::<i32>().is_ok())
        });
        if !began {
            let _ = daemon.kill();
            let _ = daemon.wait();
            let log = fs::read_to_string(berth_dir.with_extension("log")).unwrap_or_default();
            panic!("the step never started:\n{log}");
        }
        read_pid(pid_file)
    }

    /// Waits (up to `limit`) until the daemon whose berth dir is `berth_dir` has finished
    /// `ticks` more ticks, counted by the `lastTick` its health file reports; false on
    /// time-out. What a test that must let the daemon work a while counts, instead of
    /// sleeping.
    pub fn wait_ticks(&self, berth_dir: &Path, ticks: usize, limit: std::time::Duration) -> bool {
        let health = berth_dir.join("daemon-health.json");
        let last_tick = || -> Option<String> {
            let text = fs::read_to_string(&health).ok()?;
            let value: Value = serde_json::from_str(&text).ok()?;
            Some(value["lastTick"]["at"].as_str()?.to_owned())
        };
        let mut seen = last_tick();
        let mut counted = 0;
        self.wait_for(limit, || {
            let now = last_tick();
            if now.is_some() && now != seen {
                counted += 1;
                seen = now;
            }
            counted >= ticks
        })
    }

    /// [`World::spawn_berth`], run as the last arguments of `wrapper` (e.g. `unshare …`),
    /// with the same environment. Its output goes to `<berth_dir>.log`.
    pub fn spawn_berth_wrapped(
        &self,
        wrapper: &[&str],
        args: &[&str],
        berth_dir: &Path,
    ) -> std::process::Child {
        let log = fs::File::create(berth_dir.with_extension("log")).unwrap();
        let inner = self.daemon_std(berth_dir);
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..]).arg(inner.get_program()).args(args);
        for (key, value) in inner.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd.current_dir(&self.root)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("wrapped berth starts")
    }

    /// `<root>/berth.toml` for the `git` forge, landing with [`World::land_script`] (which
    /// appends each PR it lands to the ledger), plus `extra` TOML lines.
    pub fn git_forge_config(&self, extra: &str) -> PathBuf {
        let land = self.land_script();
        self.config(&format!(
            "forge = \"git\"\nland_command = [\"{}\", \"{{branch}}\", \"{{base}}\", \"{}\", \"{{pr}}\"]\n{extra}",
            land.display(),
            self.root.join("ledger").display()
        ))
    }

    /// The PRs the landing script landed, in order.
    pub fn ledger(&self) -> Vec<u64> {
        fs::read_to_string(self.root.join("ledger"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    }

    /// The refs under `refs/gstack/release-locks/` on a remote, as `git ls-remote` sees them.
    pub fn lock_refs(&self, remote_url: &str) -> Vec<String> {
        self.run_git(
            &self.root,
            &["ls-remote", remote_url, "refs/gstack/release-locks/*"],
        )
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
    }
}

impl GitLane<'_> {
    /// Takes this lane's `main` lock on origin for another holder (`holder-host:42:7`, its
    /// own scratch repo under `<root>/holder`); returns the lock's ref.
    pub fn hold_lock(&self) -> String {
        let lane_key = berth::lane_lock::Lane {
            repo_identity: berth::identity::repo_identity(&self.clone).unwrap(),
            base_branch: "main".into(),
        };
        berth::lane_lock::LockClient::new(
            &self.world.root.join("holder"),
            berth::lane_lock::LockSettings::default(),
        )
        .unwrap()
        .acquire(&self.remote_url, &lane_key, "holder-host:42:7", &self.clone)
        .unwrap();
        berth::lane_lock::lock_ref_name(&lane_key)
    }

    /// Holds origin's writers' lock (the `flock` on its `berth-lane-locks.lock`) for as long
    /// as the returned file stays open: every lock write on origin waits for it.
    pub fn hold_writers_lock(&self) -> fs::File {
        use std::os::fd::AsRawFd as _;
        let writers = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&self.remote_url).join("berth-lane-locks.lock"))
            .unwrap();
        // SAFETY: flock on a descriptor this function owns.
        assert_eq!(
            unsafe { nix::libc::flock(writers.as_raw_fd(), nix::libc::LOCK_EX) },
            0
        );
        writers
    }

    /// Pushes `feat/pr-<pr>` onto `base` and queues it as PR `pr`; returns the record id.
    pub fn queue(&self, pr: u64, base: &str) -> String {
        let feature = self.push_feature(&format!("feat/pr-{pr}"), base);
        self.world
            .record(&self.clone, pr)
            .set("featureBranch", feature)
            .set("baseBranch", base)
            .write()
    }

    /// Queues PR `pr` of this lane for a second daemon: in its own queue dir
    /// (`release-queue-b`, returned with the id) from its own clone (`code/b`), whose
    /// checkout is the feature branch, off `main` as a producer's is.
    pub fn queue_for_second_daemon(&self, pr: u64) -> (PathBuf, String) {
        let w = self.world;
        let queue_b = w.queue.with_file_name("release-queue-b");
        fs::create_dir_all(&queue_b).unwrap();
        let clone_b = w.clone_into(&w.code.join("b"), "widget", &self.remote_url);
        let feature = self.push_feature(&format!("feat/pr-{pr}"), "main");
        w.run_git(&clone_b, &["fetch", "-q", "origin"]);
        w.run_git(&clone_b, &["checkout", "-q", "-B", &feature, "FETCH_HEAD"]);
        let id = w
            .record(&clone_b, pr)
            .set("featureBranch", feature)
            .write_to(&queue_b);
        (queue_b, id)
    }

    /// Pushes a feature branch with one new file, and returns the branch name.
    pub fn push_feature(&self, branch: &str, base: &str) -> String {
        let w = self.world;
        w.run_git(&self.clone, &["fetch", "-q", "origin"]);
        w.run_git(
            &self.clone,
            &["checkout", "-q", "-B", branch, &format!("origin/{base}")],
        );
        let file = format!("{}.txt", branch.replace('/', "-"));
        fs::write(self.clone.join(&file), branch).unwrap();
        w.run_git(&self.clone, &["add", &file]);
        w.run_git(&self.clone, &["commit", "-q", "-m", branch]);
        w.run_git(&self.clone, &["push", "-q", "origin", branch]);
        w.run_git(&self.clone, &["checkout", "-q", "--detach"]);
        branch.to_owned()
    }

    /// Creates `base` on the remote from `main`.
    pub fn push_base(&self, base: &str) {
        self.world.run_git(
            &self.clone,
            &[
                "push",
                "-q",
                "origin",
                &format!("origin/main:refs/heads/{base}"),
            ],
        );
    }

    /// Whether `branch` on the remote contains `feature`'s head.
    pub fn merged(&self, feature: &str, base: &str) -> bool {
        let w = self.world;
        w.run_git(&self.clone, &["fetch", "-q", "origin"]);
        w.git(&self.clone)
            .args([
                "merge-base",
                "--is-ancestor",
                &format!("origin/{feature}"),
                &format!("origin/{base}"),
            ])
            .status()
            .unwrap()
            .success()
    }
}

/// The rules engine's side of the world: a rules root beside the queue, and the daemon's
/// decision log.
impl World {
    /// `<root>/rules-root` with empty `rules/` and `policies/`: pass it as `--rules-root`.
    pub fn rules_root(&self) -> PathBuf {
        let root = self.root.join("rules-root");
        fs::create_dir_all(root.join("rules")).unwrap();
        fs::create_dir_all(root.join("policies")).unwrap();
        root
    }

    /// Writes `text` to `rel` (e.g. `policies/landing.rhai`) under [`World::rules_root`].
    pub fn write_rule(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.rules_root().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    /// `berth run --watch --config <config>`, its log in `<root>/berth-state.log`.
    pub fn spawn_watch(&self, config: &Path) -> std::process::Child {
        let args = ["run", "--watch", "--config", config.to_str().unwrap()];
        self.spawn_berth(&args, &self.berth_state(), &[])
    }

    /// `berth run --watch --rules-root <rules root>`, its log in `<root>/berth-state.log`.
    pub fn spawn_watching(&self, config: &Path) -> std::process::Child {
        let (config, root) = (config.to_str().unwrap(), self.rules_root());
        let args = [
            "run",
            "--watch",
            "--config",
            config,
            "--rules-root",
            root.to_str().unwrap(),
        ];
        self.spawn_berth(&args, &self.berth_state(), &[])
    }

    /// `berth run <mode> --config <config>` (`mode` is `--watch` or `--once`) at the debug
    /// log level, with `env` added, its log in `<root>/berth-state.log`.
    pub fn spawn_run_debug(
        &self,
        mode: &str,
        config: &Path,
        env: &[(&str, &Path)],
    ) -> std::process::Child {
        let args = ["run", mode, "--config", config.to_str().unwrap()];
        let mut env = env.to_vec();
        env.push(("BERTH_LOG", Path::new("berth=debug")));
        self.spawn_berth(&args, &self.berth_state(), &env)
    }

    /// The state dir [`World::berth_daemon`] gives the daemon.
    pub fn berth_state(&self) -> PathBuf {
        self.root.join("berth-state")
    }

    /// Every line of the daemon's `decisions.jsonl`.
    pub fn decisions(&self) -> Vec<Value> {
        fs::read_to_string(self.berth_state().join("decisions.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("decision lines are JSON"))
            .collect()
    }
}

/// A GitHub-hosted repo as berth sees it: `origin` is `git@github.com:acme/widget.git`,
/// the user's own git config points that URL at a local bare remote (so lane locks really
/// land somewhere), and `gh` is the stand-in replaying JSON from a replies dir.
pub struct GhLane<'w> {
    pub world: &'w World,
    pub bare: PathBuf,
    pub repo: PathBuf,
    pub replies: PathBuf,
    pub log: PathBuf,
}

impl World {
    pub fn gh_lane(&self) -> GhLane<'_> {
        let bare = self.bare_remote("widget");
        let github_url = "git@github.com:acme/widget.git";
        fs::write(
            self.home.join(".gitconfig"),
            format!("[url \"{}\"]\n\tinsteadOf = {github_url}\n", bare.display()),
        )
        .unwrap();
        let repo = self.clone_into(&self.code, "widget", bare.to_str().unwrap());
        self.run_git(&repo, &["remote", "set-url", "origin", github_url]);
        let replies = self.root.join("gh-replies");
        fs::create_dir_all(&replies).unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gh");
        for entry in fs::read_dir(fixtures).unwrap().flatten() {
            fs::copy(entry.path(), replies.join(entry.file_name())).unwrap();
        }
        // Discovery finds nothing new unless a test says otherwise.
        fs::write(replies.join("pr-list.acme.widget.json"), "[]").unwrap();
        GhLane {
            world: self,
            bare,
            repo,
            replies,
            log: self.root.join("gh.log"),
        }
    }
}

impl GhLane<'_> {
    /// Queues PR #42 of the fixtures (`feat/search` into `main`), as its producer would,
    /// with `feat/search` on the remote for the landing to check out.
    pub fn queue_pr_42(&self) -> String {
        self.world.run_git(
            &self.repo,
            &[
                "push",
                "-q",
                self.bare.to_str().unwrap(),
                "main:refs/heads/feat/search",
            ],
        );
        self.record_pr_42()
    }

    /// PR #42's record (`feat/search` into `main`), as its producer writes it, wherever the
    /// test put the branch.
    pub fn record_pr_42(&self) -> String {
        self.world
            .record(&self.repo, 42)
            .set("featureBranch", "feat/search")
            .set("repoIdentity", "github.com/acme/widget")
            .write()
    }

    /// The stand-in's recorded `gh pr view` answer for PR #42.
    pub fn pr_42_view(&self) -> PathBuf {
        self.replies.join("pr-view.acme.widget.42.json")
    }

    /// Edits the stand-in's recorded answer for PR #42; returns it as edited.
    pub fn edit_pr_42(&self, edit: impl FnOnce(&mut Value)) -> Value {
        let view = self.pr_42_view();
        let mut pr: Value = serde_json::from_str(&fs::read_to_string(&view).unwrap()).unwrap();
        edit(&mut pr);
        fs::write(&view, pr.to_string()).unwrap();
        pr
    }

    /// A config using the `gh` forge and the given landing argv (a TOML array).
    pub fn config(&self, land_command: &str, extra: &str) -> PathBuf {
        let gh = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gh-stand-in/gh");
        self.world.config(&format!(
            "forge = \"gh\"\ngh_program = \"{}\"\nland_command = {land_command}\n{extra}",
            gh.display()
        ))
    }

    /// `berth` with the stand-in's environment.
    pub fn berth(&self) -> assert_cmd::Command {
        let mut cmd = self.world.berth_daemon();
        cmd.env("GH_STANDIN_DIR", &self.replies)
            .env("GH_STANDIN_LOG", &self.log);
        cmd
    }

    /// Every call the stand-in saw, as its argv.
    pub fn calls(&self) -> Vec<Vec<String>> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let call: Value = serde_json::from_str(l).unwrap();
                serde_json::from_value(call["argv"].clone()).unwrap()
            })
            .collect()
    }

    pub fn lock_refs(&self) -> Vec<String> {
        self.world.lock_refs(self.bare.to_str().unwrap())
    }
}

// A daemon serving metrics, and reading them.

/// Every `.rs` file under `dir`, at any depth: what the tests that read berth's own source
/// (its error style, module sizes, import cycles) walk.
/// Waits (up to `limit`) until `done` holds, polling every 50 ms; false on time-out.
pub fn wait_until(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Field 22 of `/proc/<pid>/stat`: what berth stamps as the process's start.
/// The pid written to `path`.
pub fn read_pid(path: &Path) -> i32 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

pub fn start_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(19).unwrap().parse().unwrap()
}

/// An old-form owner stamp of this machine naming `pid` with its real start time: what a
/// berth of this host wrote, or what a planter copies from a running process.
pub fn stamp_of(pid: u32) -> String {
    format!("{}:{pid}:{}", berth::ownership::machine(), start_ticks(pid))
}

/// An owner stamp of this host whose process is gone.
pub fn dead_owner() -> String {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    format!("{}:{pid}:1", berth::ownership::machine())
}

pub fn stop(mut daemon: Child) {
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    daemon.wait().unwrap();
}

/// `GET /metrics` over a plain TCP connection; the body.
pub fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The value of the sample line starting with `prefix` (name and labels).
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `berth run --watch --config CONFIG --metrics-addr 127.0.0.1:0 --log-format json`: a
/// watching daemon that serves its endpoint on a free loopback port and logs JSON.
pub fn serving_metrics_args(config: &std::path::Path) -> [&str; 8] {
    [
        "run",
        "--watch",
        "--config",
        config.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]
}

/// [`serving_metrics_args`] plus `extra`, its state in [`World::berth_state`], its log
/// beside it.
pub fn spawn_serving_metrics(world: &World, config: &std::path::Path, extra: &[&str]) -> Child {
    let mut args = serving_metrics_args(config).to_vec();
    args.extend_from_slice(extra);
    world.spawn_berth(&args, &world.berth_state(), &[])
}

/// The address a daemon from [`spawn_serving_metrics`] logged it serves on, once it has.
pub fn served_addr(world: &World) -> Option<String> {
    let log = fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    let line = log.lines().find(|l| l.contains("serving metrics on"))?;
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value["addr"].as_str().map(str::to_owned)
}

/// The log of the daemon whose state is [`World::berth_state`]; empty before it writes one.
pub fn berth_log(world: &World) -> String {
    fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default()
}

/// How many ticks a daemon from [`spawn_serving_metrics`] has finished, once it serves.
pub fn ticks(world: &World) -> Option<f64> {
    sample(&scrape(&served_addr(world)?), "berth_ticks_total")
}

/// Whether `more` ticks finish after the current count (within 60 s).
pub fn ticks_after(world: &World, more: u32) -> bool {
    let Some(now) = ticks(world) else {
        return false;
    };
    world.wait_for(Duration::from_secs(60), || {
        ticks(world).is_some_and(|n| n >= now + f64::from(more))
    })
}

/// [`spawn_serving_metrics`], returned once its first `first` ticks have finished.
pub fn spawn_ticking(world: &World, config: &std::path::Path, first: u32) -> Child {
    let daemon = spawn_serving_metrics(world, config, &[]);
    assert!(
        world.wait_for(Duration::from_secs(60), || {
            ticks(world).is_some_and(|n| n >= f64::from(first))
        }),
        "{first} ticks never finished: {}",
        berth_log(world)
    );
    daemon
}

/// `METHOD PATH` over one connection; the status line and the body.
pub fn request(addr: &str, method: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("the endpoint accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}
