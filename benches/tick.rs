//! What a tick costs (issue 9 §5): `cargo bench --bench tick` prints one table.
//!
//! The world: 10,000 records in 100 real git repos (origin `github.com/bench/repo-NN`), a
//! settled queue (per repo 95 landed and proven, 5 blocked and not due), built once into
//! `target/bench-fixtures/` and reused by later runs. The forge is a stand-in that answers
//! at once and counts its calls: in-process a [`CountingForge`], for the `berth` process the
//! `gh` stand-in of the tests, which logs every call. Every timing sits beside a baseline
//! measured in the same run: reading and parsing the same files with serde_json in a
//! plain loop.
//!
//! Environment:
//! - `BERTH_BENCH_IDLE_SECS` (default 60): how long the idle `run --watch` rows watch.
//! - `BERTH_BENCH_SKIP_100K=1`: leaves out the 100,000-record row (its fixture takes a
//!   minute to build the first time).
//! - `BERTH_BENCH_ROWS=one_record_changed,cold_tick`: runs only the rows of those names
//!   (the functions below), and `BERTH_BENCH_REPEAT=N` runs each N times, printing the
//!   last: what `perf record` needs to see one row.
//!
//! Each row of the table is one function in [`ROWS`]; add a row by adding a function.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth::config::Config;
use berth::daemon::{Shared, Wake, bookkeeping};
use berth::forge::{
    Forge, ForgeError, ForgeKind, ForgeRepo, MergeProof, PrCheck, PrRef, PrState, QueuedPr,
};
use berth::gates::Allowlist;
use berth::queue_view::Refresh;
use berth::store::QueueStore;

#[path = "support/learned_world.rs"]
mod learned_world;
#[path = "support/proc_stat.rs"]
mod proc_stat;

const REPOS: usize = 100;
const RECORDS: usize = 10_000;
const BIG: usize = 100_000;

/// One line of the table.
struct Row {
    measure: &'static str,
    target: String,
    measured: String,
    ok: Option<bool>,
}

/// A row of the table: one function over the shared bench state.
type RowFn = fn(&mut Bench) -> Row;

/// The table, in order. A new row is a new function here.
const ROWS: &[(&str, RowFn)] = &[
    ("baseline", baseline),
    ("cold_tick", cold_tick),
    ("cold_tick_in_process", cold_tick_in_process),
    ("unchanged_tick", unchanged_tick),
    ("poll_tick_with_sweep", poll_tick_with_sweep),
    ("one_record_changed", one_record_changed),
    ("cold_100k", cold_100k),
    ("forge_calls_settled", forge_calls_settled),
    ("idle_watch_10k", idle_watch_10k),
    ("idle_watch_empty", idle_watch_empty),
    ("learned_patterns", learned_patterns),
];

fn main() {
    // Backtracking learned patterns run on a worker process: berth's binary.
    berth::faults::learned_match::worker::use_program(std::path::Path::new(env!(
        "CARGO_BIN_EXE_berth"
    )));
    let only = std::env::var("BERTH_BENCH_ROWS").ok();
    let selected = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == name))
    };
    let repeat: usize = std::env::var("BERTH_BENCH_REPEAT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut bench = Bench::new();
    let rows: Vec<Row> = ROWS
        .iter()
        .filter(|(name, _)| selected(name))
        .filter_map(|(_, row)| (0..repeat).map(|_| row(&mut bench)).last())
        .collect();
    print_table(&rows);
}

fn print_table(rows: &[Row]) {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header(["measure", "target", "measured", "ok?"]);
    for row in rows {
        let ok = match row.ok {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "—",
        };
        table.add_row([row.measure, &row.target, &row.measured, ok]);
    }
    println!();
    println!("{table}");
}

/// What the rows share: the fixture, the baseline, the in-process daemon and its forge.
struct Bench {
    fixture: Fixture,
    baseline: Duration,
    cold_process: Option<Duration>,
    forge: Arc<CountingForge>,
    shared: Option<Shared>,
    _state: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let fixture = Fixture::cached(RECORDS);
        let baseline = median(5, || {
            let started = Instant::now();
            let parsed = read_and_parse(&fixture.queue);
            assert_eq!(parsed, RECORDS);
            started.elapsed()
        });
        Bench {
            fixture,
            baseline,
            cold_process: None,
            forge: Arc::new(CountingForge::default()),
            shared: None,
            _state: tempfile::tempdir().expect("temp state dir"),
        }
    }

    /// The in-process daemon over the 10,000-record fixture (made on first use).
    fn shared(&mut self) -> &Shared {
        if self.shared.is_none() {
            self.shared = Some(in_process(&self.fixture, self._state.path(), &self.forge));
        }
        self.shared.as_ref().expect("just made")
    }
}

/// The baseline: every `*.json` in `dir` read and parsed with serde_json, in a plain loop.
fn read_and_parse(dir: &Path) -> usize {
    let mut parsed = 0;
    for entry in std::fs::read_dir(dir).expect("queue dir").flatten() {
        let bytes = std::fs::read(entry.path()).expect("record file");
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        parsed += usize::from(value.is_object());
    }
    parsed
}

fn median(runs: usize, mut once: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| once()).collect();
    times.sort();
    times[runs / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

// ---- rows -------------------------------------------------------------------------------

fn baseline(b: &mut Bench) -> Row {
    Row {
        measure: "baseline: read + parse 10,000 files (serde_json loop)",
        target: "—".into(),
        measured: ms(b.baseline),
        ok: None,
    }
}

fn cold_tick(b: &mut Bench) -> Row {
    let took = median(3, || run_once(&b.fixture).0);
    b.cold_process = Some(took);
    let ratio = took.as_secs_f64() / b.baseline.as_secs_f64();
    Row {
        measure: "cold tick (fresh process, first tick)",
        target: "≤ 2× baseline".into(),
        measured: format!("{} ({ratio:.1}×)", ms(took)),
        ok: Some(ratio <= 2.0),
    }
}

fn cold_tick_in_process(b: &mut Bench) -> Row {
    let took = median(3, || {
        let state = tempfile::tempdir().expect("temp state dir");
        let shared = in_process(&b.fixture, state.path(), &b.forge);
        let started = Instant::now();
        bookkeeping(&shared, Wake::Poll, &Refresh::Sweep);
        started.elapsed()
    });
    let ratio = took.as_secs_f64() / b.baseline.as_secs_f64();
    Row {
        measure: "  of which the tick itself (in-process, first tick)",
        target: "—".into(),
        measured: format!("{} ({ratio:.1}×)", ms(took)),
        ok: None,
    }
}

fn unchanged_tick(b: &mut Bench) -> Row {
    let shared = b.shared();
    bookkeeping(shared, Wake::Poll, &Refresh::Sweep);
    let took = median(21, || {
        let started = Instant::now();
        bookkeeping(shared, Wake::Poll, &Refresh::Files(BTreeSet::new()));
        started.elapsed()
    });
    Row {
        measure: "unchanged tick (poll tick, watcher saw nothing)",
        target: "≤ 5 ms".into(),
        measured: ms(took),
        ok: Some(took <= Duration::from_millis(5)),
    }
}

fn poll_tick_with_sweep(b: &mut Bench) -> Row {
    let shared = b.shared();
    let took = median(5, || {
        let started = Instant::now();
        bookkeeping(shared, Wake::Poll, &Refresh::Sweep);
        started.elapsed()
    });
    Row {
        measure: "  unchanged, with a stat sweep (first tick, every reconcile_every_secs)",
        target: "—".into(),
        measured: ms(took),
        ok: None,
    }
}

fn one_record_changed(b: &mut Bench) -> Row {
    let file = b.fixture.queue.join(b.fixture.blocked_file.clone());
    let original = std::fs::read(&file).expect("the blocked record");
    let read_one = median(21, || {
        let started = Instant::now();
        let bytes = std::fs::read(&file).expect("record");
        let _: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        started.elapsed()
    });
    let name = b.fixture.blocked_file.clone();
    let shared = b.shared();
    bookkeeping(shared, Wake::Poll, &Refresh::Sweep);
    let mut n = 0;
    let took = median(11, || {
        n += 1;
        let mut value: serde_json::Value = serde_json::from_slice(&original).expect("JSON");
        value["lastError"] = format!("land: exited {n}").into();
        berth::atomic_file::write_atomic(&file, value.to_string().as_bytes(), 0o600)
            .expect("record written");
        let named = Refresh::Files([name.clone()].into());
        let started = Instant::now();
        let (report, _) = bookkeeping(shared, Wake::Watcher, &named);
        assert!(!report.nothing_changed, "the change was not seen");
        started.elapsed()
    });
    berth::atomic_file::write_atomic(&file, &original, 0o600).expect("record restored");
    let budget = Duration::from_millis(5) + read_one;
    Row {
        measure: "one record changed (watcher wake)",
        target: format!("≤ 5 ms + read of that file ({})", ms(read_one)),
        measured: ms(took),
        ok: Some(took <= budget),
    }
}

fn cold_100k(b: &mut Bench) -> Row {
    let measure = "100,000 records, cold (fresh process)";
    if std::env::var_os("BERTH_BENCH_SKIP_100K").is_some() {
        return Row {
            measure,
            target: "≤ 12× the 10,000-record time".into(),
            measured: "skipped (BERTH_BENCH_SKIP_100K)".into(),
            ok: None,
        };
    }
    let big = Fixture::cached(BIG);
    let ten = b.cold_process.unwrap_or_else(|| run_once(&b.fixture).0);
    let took = median(3, || run_once(&big).0);
    let ratio = took.as_secs_f64() / ten.as_secs_f64();
    Row {
        measure,
        target: "≤ 12× the 10,000-record time".into(),
        measured: format!("{} ({ratio:.1}×)", ms(took)),
        ok: Some(ratio <= 12.0),
    }
}

fn forge_calls_settled(b: &mut Bench) -> Row {
    let (_, gh_calls) = run_once(&b.fixture);
    let before = b.forge.calls();
    let shared = b.shared();
    bookkeeping(shared, Wake::Poll, &Refresh::Sweep);
    bookkeeping(shared, Wake::Poll, &Refresh::Files(BTreeSet::new()));
    let in_process = b.forge.calls() - before;
    Row {
        measure: "forge calls per tick, settled queue (100 repos)",
        target: "0 (no live record, nothing due)".into(),
        measured: format!("{gh_calls} (`gh`, fresh process); {in_process} (in-process, 2 ticks)"),
        ok: Some(gh_calls == 0 && in_process == 0),
    }
}

fn idle_watch_10k(b: &mut Bench) -> Row {
    let secs: u64 = std::env::var("BERTH_BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let daemon = Watching::start(&b.fixture.queue, &b.fixture);
    daemon.wait_for_first_tick();
    let (cpu_before, _) = daemon.usage();
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu_after, rss_kb) = daemon.usage();
    let calls = daemon.gh_calls();
    drop(daemon);
    let cpu = cpu_after - cpu_before;
    let rss_mb = rss_kb as f64 / 1024.0;
    Row {
        measure: if secs == 60 {
            "idle `run --watch` over 10,000 records for 60 s"
        } else {
            "idle `run --watch` over 10,000 records (BERTH_BENCH_IDLE_SECS)"
        },
        target: "≤ 0.1 s CPU, RSS ≤ 40 MB".into(),
        measured: format!("{cpu:.2} s CPU in {secs} s, RSS {rss_mb:.1} MB, {calls} gh calls"),
        ok: Some(cpu <= 0.1 && rss_mb <= 40.0),
    }
}

fn idle_watch_empty(b: &mut Bench) -> Row {
    let empty = tempfile::tempdir().expect("empty queue");
    let daemon = Watching::start(empty.path(), &b.fixture);
    daemon.wait_for_first_tick();
    std::thread::sleep(Duration::from_secs(2));
    let (_, rss_kb) = daemon.usage();
    drop(daemon);
    let rss_mb = rss_kb as f64 / 1024.0;
    Row {
        measure: "idle `run --watch`, empty queue",
        target: "RSS ≤ 20 MB".into(),
        measured: format!("RSS {rss_mb:.1} MB"),
        ok: Some(rss_mb <= 20.0),
    }
}

fn learned_patterns(_: &mut Bench) -> Row {
    let rules = berth::rules::Rules::embedded().expect("shipped rules load");
    let set = rules.current();
    let dir = tempfile::tempdir().expect("temp dir");
    let learned = learned_world::load_learned(dir.path());
    let state: serde_json::Value =
        serde_json::from_slice(&learned_world::state_bytes()).expect("state JSON");
    let (stdout, plan) = learned_world::run_texts(dir.path());
    let run = berth::faults::detect::RunInput::from_state(state, None, Some(&plan), Some(&stdout));
    let pass = learned_world::learned_pass(&set, &run, &learned, 15);
    Row {
        measure: "learned patterns: the 1,000 a file may hold, over a 2 MB state (2 MiB stdout)",
        target: "≤ 50 ms".into(),
        measured: format!(
            "{} ({} patterns compiled)",
            ms(pass),
            learned.patterns.len()
        ),
        ok: Some(pass <= Duration::from_millis(50)),
    }
}

// ---- the daemon, in-process and as a process --------------------------------------------

/// The config every run uses: the settled blocked records are never due (their check time
/// is fixed in the cached fixture), the faults dirs are empty and private to the run.
fn config_text(state: &Path) -> String {
    format!(
        "forge = \"gh\"\ngh_program = {:?}\nland_command = [\"true\"]\n\
         reconcile_every_secs = 315360000\n\
         build_state_dir = {:?}\nfaults_dir = {:?}\n",
        stand_in().display().to_string(),
        state.join("build-state").display().to_string(),
        state.join("faults").display().to_string(),
    )
}

fn in_process(fixture: &Fixture, state: &Path, forge: &Arc<CountingForge>) -> Shared {
    let config: Config = toml::from_str(&config_text(state)).expect("bench config");
    let (allowlist, _) = Allowlist::build(None, fixture.repos.to_str(), None);
    Shared::new(
        QueueStore::new(&fixture.queue),
        allowlist,
        config,
        state.join("berth"),
    )
    .expect("daemon parts")
    .with_forge(Arc::clone(forge) as Arc<dyn Forge>)
}

fn stand_in() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gh-stand-in/gh")
}

/// `berth` with the fixture's queue, an empty state, and the `gh` stand-in logging calls.
fn berth(fixture: &Fixture, queue: &Path, state: &Path) -> Command {
    std::fs::create_dir_all(state.join("gh-replies")).expect("replies dir");
    let config = state.join("berth.toml");
    std::fs::write(&config, config_text(state)).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.current_dir(state)
        .env("HOME", state)
        .env("BERTH_QUEUE_DIR", queue)
        .env("BERTH_DIR", state.join("berth"))
        .env("BERTH_CONFIG", &config)
        .env("GSTACK_DAEMON_REPO_ALLOWLIST", &fixture.repos)
        .env("GH_STANDIN_DIR", state.join("gh-replies"))
        .env("GH_STANDIN_LOG", state.join("gh.log"))
        .env_remove("BERTH_RULES_ROOT")
        .env_remove("BERTH_PROJECT_ROOT");
    cmd
}

fn gh_calls(state: &Path) -> usize {
    std::fs::read_to_string(state.join("gh.log"))
        .map(|log| log.lines().count())
        .unwrap_or(0)
}

/// `berth run --once` over `fixture`: its wall time and how many `gh` calls it made.
fn run_once(fixture: &Fixture) -> (Duration, usize) {
    let state = tempfile::tempdir().expect("temp state");
    let mut cmd = berth(fixture, &fixture.queue, state.path());
    cmd.args(["run", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let status = cmd.status().expect("berth runs");
    let took = started.elapsed();
    assert!(status.success(), "berth run --once failed: {status}");
    (took, gh_calls(state.path()))
}

/// A `berth run --watch` child, killed when dropped.
struct Watching {
    child: Child,
    state: tempfile::TempDir,
}

impl Watching {
    fn start(queue: &Path, fixture: &Fixture) -> Watching {
        let state = tempfile::tempdir().expect("temp state");
        let log = std::fs::File::create(state.path().join("berth.log")).expect("log");
        let child = berth(fixture, queue, state.path())
            .args(["run", "--watch"])
            .env("BERTH_LOG", "berth=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("berth starts");
        Watching { child, state }
    }

    /// Waits for the first tick's debug line (`tick changed=…`) and its bookkeeping to end.
    fn wait_for_first_tick(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let log = self.state.path().join("berth.log");
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("tick changed=")) {
            assert!(Instant::now() < deadline, "no first tick");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The tick line comes first; let the rest of the tick finish.
        let mut last = self.usage().0;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.usage().0;
            if now - last < 0.005 {
                break;
            }
            last = now;
        }
    }

    /// CPU seconds used so far (user + system) and resident memory in KiB.
    fn usage(&self) -> (f64, u64) {
        let pid = self.child.id();
        (
            proc_stat::cpu_time(pid).as_secs_f64(),
            proc_stat::resident_kib(pid),
        )
    }

    fn gh_calls(&self) -> usize {
        gh_calls(self.state.path())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

// ---- the forge stand-in -----------------------------------------------------------------

/// Answers at once and counts every question: nothing is queued, every PR is open.
#[derive(Default)]
struct CountingForge {
    calls: AtomicUsize,
}

impl CountingForge {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl Forge for CountingForge {
    fn kind(&self) -> ForgeKind {
        ForgeKind::Git
    }

    fn list_queued(&self, _repo: &ForgeRepo) -> Result<Vec<QueuedPr>, ForgeError> {
        self.count();
        Ok(Vec::new())
    }

    fn check_pr(&self, repo: &ForgeRepo, pr: &PrRef<'_>) -> Result<PrCheck, ForgeError> {
        self.count();
        Err(ForgeError::MissingBase {
            subject: berth::forge::Subject::pr(repo, pr.number),
            branch: pr.base_branch.to_owned(),
        })
    }

    fn merge_proof(&self, _repo: &ForgeRepo, _pr: &PrRef<'_>) -> Result<MergeProof, ForgeError> {
        self.count();
        Ok(open())
    }

    fn merge_proofs(
        &self,
        _repo: &ForgeRepo,
        prs: &[PrRef<'_>],
    ) -> Result<std::collections::HashMap<u64, MergeProof>, ForgeError> {
        self.count();
        Ok(prs.iter().map(|pr| (pr.number, open())).collect())
    }
}

fn open() -> MergeProof {
    MergeProof {
        merged: false,
        state: PrState::Open,
        merged_at: None,
        merge_commit: None,
    }
}

// ---- the fixture ------------------------------------------------------------------------

/// `target/bench-fixtures/tick-<records>/`: `repos/repo-NN` (real git repos) and `queue/`.
struct Fixture {
    root: PathBuf,
    repos: PathBuf,
    queue: PathBuf,
    /// A blocked record's file name, for the "one record changed" row.
    blocked_file: String,
}

/// Bump when the fixture's layout changes, so a cached one is rebuilt.
const FIXTURE_VERSION: &str = "1";

impl Fixture {
    fn cached(records: usize) -> Fixture {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let root = target
            .join("bench-fixtures")
            .join(format!("tick-{records}"));
        let fixture = Fixture {
            repos: root.join("repos"),
            queue: root.join("queue"),
            blocked_file: record_file(0, 95),
            root,
        };
        let ready = fixture.root.join("ready");
        if std::fs::read_to_string(&ready).ok().as_deref() != Some(FIXTURE_VERSION) {
            eprintln!("tick bench: building {}", fixture.root.display());
            let _ = std::fs::remove_dir_all(&fixture.root);
            fixture.build(records);
            std::fs::write(&ready, FIXTURE_VERSION).expect("ready marker");
        }
        fixture
    }

    fn build(&self, records: usize) {
        std::fs::create_dir_all(&self.queue).expect("queue dir");
        std::fs::create_dir_all(&self.repos).expect("repos dir");
        let per_repo = records / REPOS;
        let checked = "2026-01-01T00:00:00.000Z";
        for r in 0..REPOS {
            let repo = self.repos.join(format!("repo-{r:02}"));
            git(
                &self.repos,
                &["init", "-q", "-b", "main", repo.to_str().expect("utf-8")],
            );
            std::fs::write(repo.join("README"), "bench\n").expect("file");
            git(&repo, &["add", "README"]);
            git(&repo, &["commit", "-q", "-m", "init"]);
            let origin = format!("git@github.com:bench/repo-{r:02}.git");
            git(&repo, &["remote", "add", "origin", &origin]);
            for pr in 1..=per_repo {
                // Per repo: 95 in 100 landed and proven, the rest blocked and just checked.
                let blocked = pr % 100 >= 95 || pr % 100 == 0;
                let mut value = serde_json::json!({
                    "runId": format!("run-{r}-{pr}"),
                    "repoPath": repo.to_str(),
                    "baseBranch": "main",
                    "featureBranch": format!("feat/pr-{pr}"),
                    "prNumber": pr,
                    "version": "1.0.0",
                    "livingPlanPath": repo.join("PLAN.md").to_str(),
                    "worktreePath": repo.to_str(),
                    "queuedAt": "2026-01-01T00:00:00.000Z",
                    "repoIdentity": format!("github.com/bench/repo-{r:02}"),
                    "status": if blocked { "blocked" } else { "landed" },
                    "lastGithubCheckedAt": checked,
                    "lastGithubState": if blocked { "OPEN" } else { "MERGED" },
                });
                if blocked {
                    value["lastError"] = "land: exited 1".into();
                }
                std::fs::write(
                    self.queue.join(record_file(r, pr)),
                    serde_json::to_vec_pretty(&value).expect("JSON"),
                )
                .expect("record file");
            }
        }
    }
}

fn record_file(repo: usize, pr: usize) -> String {
    format!("github.com-bench-repo-{repo:02}-main-pr-{pr}.json")
}

fn git(cwd: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(cwd)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@berth.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@berth.invalid")
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}
