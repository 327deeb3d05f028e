//! What a running daemon tells the outside: Prometheus metrics (`--metrics-addr`) and the
//! health file `berth status` and `berth doctor` read. The daemon calls a handful of hooks
//! (a tick ended, a landing ended, a lock is held, the forge answered). A scrape reads no
//! queue file: the records are counted from the view the last tick refreshed; the halt
//! dir and the rules status are read again only when their stamps moved.

pub mod forge;
pub mod health;
pub mod metrics;
pub mod process;
pub mod server;
mod stamped;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::faults::halt_store::{HaltStatus, HaltStore};
use crate::lane_lock::LockWatch;
use crate::queue_view::QueueView;
use crate::rules::RulesStatus;
use crate::rules::decisions::FallbackCounts;
use stamped::Stamped;

pub use health::{ConfigReload, ForgeAnswer, Health, TickReport};
pub use metrics::Metrics;

/// Where the scrape-time gauges read from.
#[derive(Debug)]
pub struct Sources {
    pub berth_dir: PathBuf,
    pub halts: HaltStore,
    pub fallbacks: Arc<FallbackCounts>,
}

#[derive(Debug)]
pub struct Telemetry {
    metrics: Metrics,
    sources: Sources,
    health: Mutex<Health>,
    locks: Mutex<Vec<LockWatch>>,
    /// The poll interval: ready means a tick ended within twice it.
    poll: Duration,
    last_tick: Mutex<Option<Instant>>,
    /// The last scrape's text and when its refresh started. Held over a whole refresh and
    /// encode: the gauge families are cleared and refilled in place, so two at once would
    /// count into each other.
    rendered: Mutex<Option<(Instant, String)>>,
    /// The queue as the last tick's view held it.
    queue: Mutex<QueueCounts>,
    /// Pending halt events, counted again when the halt dir's listing moved.
    halts_pending: Stamped<usize>,
    rules_status: Stamped<Option<RulesStatus>>,
}

/// Records by status, and unreadable queue files, as a tick's view held them.
#[derive(Debug, Default)]
struct QueueCounts {
    /// The view's generation they were counted at: a tick over an unchanged view counts
    /// nothing again.
    generation: Option<u64>,
    by_status: std::collections::BTreeMap<String, i64>,
    unreadable: usize,
}

/// Why the daemon is not ready (`/readyz` answers 503 with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    NoTickYet,
    TickOverdue { seconds_ago: u64, limit_secs: u64 },
    RulesNotLoaded,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::NoTickYet => write!(f, "no tick has ended yet"),
            NotReady::TickOverdue {
                seconds_ago,
                limit_secs,
            } => write!(
                f,
                "the last tick ended {seconds_ago} s ago, over {limit_secs} s (2 x poll_secs)"
            ),
            NotReady::RulesNotLoaded => write!(f, "no rule set is loaded"),
        }
    }
}

impl Telemetry {
    pub fn new(sources: Sources, forge: &str, poll: Duration) -> Telemetry {
        use crate::faults::halt_store::{PENDING_DIR, PROCESSED_DIR};
        let halt_dirs = [PENDING_DIR, PROCESSED_DIR].map(|sub| sources.halts.dir().join(sub));
        Telemetry {
            queue: Mutex::default(),
            halts_pending: Stamped::new(halt_dirs.to_vec()),
            rules_status: Stamped::new(vec![RulesStatus::path(&sources.berth_dir)]),
            poll,
            last_tick: Mutex::default(),
            rendered: Mutex::default(),
            metrics: Metrics::new(),
            health: Mutex::new(Health {
                pid: std::process::id(),
                version: crate::VERSION.into(),
                started_at: crate::clock::now_iso(),
                forge: forge.into(),
                ..Health::default()
            }),
            sources,
            locks: Mutex::default(),
        }
    }

    /// The daemon started in `mode` (`once` or `watch`): the first health file.
    pub fn started(&self, mode: &str) {
        let mut health = lock(&self.health);
        health.mode = mode.into();
        self.write_health(&health);
    }

    /// A tick refreshed its view of the queue: what scrapes count from until the next.
    pub fn queue_seen(&self, view: &QueueView) {
        if lock(&self.queue).generation == Some(view.generation()) {
            return;
        }
        let mut counts = QueueCounts {
            generation: Some(view.generation()),
            unreadable: view.unreadable().len() + view.unreadable_unlisted(),
            ..QueueCounts::default()
        };
        for stored in view.records() {
            *counts
                .by_status
                .entry(stored.record.status.to_string())
                .or_default() += 1;
        }
        *lock(&self.queue) = counts;
    }

    /// A tick's bookkeeping and selection ended after `took`.
    pub fn tick_done(&self, took: Duration, ok: bool, result: String) {
        self.metrics.ticks.inc();
        self.metrics.tick_seconds.observe(took.as_secs_f64());
        *lock(&self.last_tick) = Some(Instant::now());
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.metrics.last_tick.set(unix.as_secs_f64());
        let mut health = lock(&self.health);
        health.last_tick = Some(TickReport {
            at: crate::clock::now_iso(),
            duration_ms: took.as_millis() as u64,
            ok,
            result,
        });
        self.write_health(&health);
    }

    /// The forge answered `call` about `repo` (`error` when it failed).
    pub fn forge_answered(&self, call: &str, repo: &str, error: Option<String>) {
        let result = if error.is_none() { "ok" } else { "error" };
        self.metrics
            .forge_calls
            .get_or_create(&metrics::ForgeCallLabels {
                kind: call.into(),
                result: result.into(),
            })
            .inc();
        // In memory only: the next tick's health write carries it (a tick that never
        // ends is what `status` must show as a stale tick, not hide behind fresh forge data).
        lock(&self.health).last_forge_answer = Some(ForgeAnswer {
            at: crate::clock::now_iso(),
            call: call.into(),
            repo: repo.into(),
            ok: error.is_none(),
            error,
        });
    }

    /// A SIGHUP re-read the configuration file: written at once, so `doctor` and `status`
    /// see a refused file without waiting for a tick.
    pub fn config_reloaded(&self, ok: bool, detail: String) {
        let mut health = lock(&self.health);
        health.last_config_reload = Some(ConfigReload {
            at: crate::clock::now_iso(),
            ok,
            detail,
        });
        self.write_health(&health);
    }

    /// A landing ended with `outcome` (`landed`, `blocked`, `requeued`, …).
    pub fn landing_done(&self, outcome: &str) {
        self.metrics
            .landings
            .get_or_create(&metrics::OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// A fault watch `pass` (`runs`, `queue`) held back `withheld` filings past the cap on
    /// pending halt files.
    pub fn halts_withheld(&self, pass: &str, withheld: usize) {
        self.metrics
            .halts_withheld
            .get_or_create(&metrics::PassLabel { pass: pass.into() })
            .set(withheld as i64);
    }

    /// Selection now passes over `count` queued records for `reason`.
    pub fn passed_over(&self, reason: &str, count: usize) {
        self.metrics
            .passed_over
            .get_or_create(&metrics::ReasonLabel {
                reason: reason.into(),
            })
            .set(count as i64);
    }

    /// A lane lock this daemon now holds and refreshes.
    pub fn lock_held(&self, watch: LockWatch) {
        let mut locks = lock(&self.locks);
        let now = Instant::now();
        locks.retain(|w| w.age(now).is_some());
        locks.push(watch);
    }

    /// The health as last written.
    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// Ready: a tick ended within twice the poll interval, and a rule set is loaded.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let limit = self.poll * 2;
        let Some(at) = *lock(&self.last_tick) else {
            return Err(NotReady::NoTickYet);
        };
        if at.elapsed() > limit {
            return Err(NotReady::TickOverdue {
                seconds_ago: at.elapsed().as_secs(),
                limit_secs: limit.as_secs(),
            });
        }
        match self.rules_status() {
            Some(_) => Ok(()),
            None => Err(NotReady::RulesNotLoaded),
        }
    }

    /// Refreshes the gauges that describe state on disk and encodes every family, one
    /// scrape at a time. A scrape that waited for another whose refresh started after it
    /// asked takes that one's text: it counts everything this one would, and the queue
    /// and halt dir are scanned once for both.
    pub fn render(&self) -> String {
        let asked = Instant::now();
        let mut rendered = lock(&self.rendered);
        if let Some((started, text)) = rendered.as_ref()
            && *started >= asked
        {
            return text.clone();
        }
        let started = Instant::now();
        self.refresh();
        let text = self.metrics.encode();
        *rendered = Some((started, text.clone()));
        text
    }

    fn refresh(&self) {
        let m = &self.metrics;
        let stats = process::sample();
        let set = |gauge: &prometheus_client::metrics::gauge::Gauge, value: Option<u64>| {
            gauge.set(value.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)));
        };
        m.cpu_seconds.set(stats.cpu_seconds.unwrap_or(0.0));
        set(&m.resident_bytes, stats.resident_bytes);
        set(&m.open_fds, stats.open_fds);
        set(&m.max_fds, stats.max_fds);
        m.records.clear();
        {
            let queue = lock(&self.queue);
            for (status, count) in &queue.by_status {
                m.records
                    .get_or_create(&metrics::StatusLabel {
                        status: status.clone(),
                    })
                    .set(*count);
            }
            if queue.unreadable > 0 {
                m.records
                    .get_or_create(&metrics::StatusLabel {
                        status: "unreadable".into(),
                    })
                    .set(queue.unreadable as i64);
            }
        }
        m.heartbeat_age.clear();
        let now = Instant::now();
        for watch in lock(&self.locks).iter() {
            if let Some((lane, age)) = watch.age(now) {
                m.heartbeat_age
                    .get_or_create(&metrics::LaneLabel {
                        lane: format!("{}:{}", lane.repo_identity, lane.base_branch),
                    })
                    .set(age.as_secs() as i64);
            }
        }
        for ((file, function), count) in self.sources.fallbacks.snapshot() {
            let counter = m.rule_fallbacks.get_or_create(&metrics::RuleLabels {
                rule: file.into(),
                function: function.into(),
            });
            counter.inc_by(count.saturating_sub(counter.get()));
        }
        if let Some(rules) = self.rules_status() {
            m.rules_reload_ok.set(i64::from(rules.last_reload.ok));
            m.rule_set.clear();
            m.rule_set
                .get_or_create(&metrics::RuleSetLabels {
                    hash: rules.active_hash,
                    source: rules.active_source,
                })
                .set(1);
        }
        let pending = self.halts_pending.get_whole(|| {
            let listing = self.sources.halts.list();
            let pending = listing.halts.iter();
            let count = pending.filter(|h| h.status == HaltStatus::Pending).count();
            // Kept only from a listing with nothing left out or unreadable: a torn event
            // gstack rewrites whole in place changes neither its name nor the dir's stamp.
            (
                count,
                listing.left_out.unread_files == 0 && listing.unreadable.is_empty(),
            )
        });
        m.halts_pending.set(pending as i64);
    }

    fn rules_status(&self) -> Option<RulesStatus> {
        self.rules_status
            .get(|| RulesStatus::read(&self.sources.berth_dir).ok().flatten())
    }

    fn write_health(&self, health: &Health) {
        if let Err(e) = health.write(&self.sources.berth_dir) {
            tracing::warn!(
                "cannot write the health file in {}: {e}",
                self.sources.berth_dir.display()
            );
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod halts_pending_tests {
    use super::*;
    use crate::faults::HaltStore;
    use crate::faults::halt::sample::event;

    fn pending_gauge(text: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("berth_halt_events_pending "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pending gauge in:\n{text}"))
    }

    /// A telemetry over `dir`'s `faults` store, made once the halt dirs' stamps are past
    /// the window in which a stamp proves nothing.
    fn telemetry_once_still(dir: &std::path::Path) -> Telemetry {
        crate::file_stamp::age_past_racy_window();
        Telemetry::new(
            Sources {
                berth_dir: dir.join("berth"),
                halts: HaltStore::long_lived(dir.join("faults")),
                fallbacks: Arc::default(),
            },
            "git",
            Duration::from_secs(1),
        )
    }

    /// The pending gauge is a listing's count kept while the halt dirs' stamps stay. A
    /// listing past its 64 MiB read budget is partial ("a later listing reads them"), but
    /// its count is kept as the gauge for as long as no event comes or goes: 401 pending
    /// events of 200 stdout lines of 1,000 characters (~200 KiB, within the 1,000 the cap
    /// allows) show as ~320 on every scrape, hiding the rest from alerts for good.
    #[test]
    fn the_pending_gauge_counts_every_pending_event_once_the_dir_is_still() {
        const EVENTS: usize = 401;
        let dir = tempfile::tempdir().unwrap();
        let faults = dir.path().join("faults");
        let store = HaltStore::new(&faults);
        let line = "x".repeat(1_000);
        let tail = vec![line.as_str(); crate::faults::halt::STDOUT_TAIL_LINES].join("\n");
        for n in 0..EVENTS {
            store
                .emit(&event(&format!("run-{n:03}"), "X", &tail))
                .unwrap();
        }
        let telemetry = telemetry_once_still(dir.path());
        let first = pending_gauge(&telemetry.render());
        let later: Vec<u64> = (0..3).map(|_| pending_gauge(&telemetry.render())).collect();
        assert_eq!(
            later.last().copied(),
            Some(EVENTS as u64),
            "pending gauge: first scrape {first}, later scrapes {later:?}"
        );
    }

    /// The gauge keeps a listing's count while the halt dirs' stamps stay, though an event
    /// file it could not read (torn, mid-write by a producer that writes in place) is
    /// counted nowhere: once that file is whole, its name and the dir are unchanged, so
    /// every later scrape keeps the count without it, the pending event hidden from alerts
    /// until some other event comes or goes.
    #[test]
    fn an_event_unreadable_at_one_scrape_is_counted_once_it_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let faults = dir.path().join("faults");
        let store = HaltStore::new(&faults);
        for run in ["run-a", "run-b"] {
            store.emit(&event(run, "X", "")).unwrap();
        }
        let mut paths: Vec<_> =
            std::fs::read_dir(faults.join(crate::faults::halt_store::PENDING_DIR))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
        paths.sort();
        let whole = std::fs::read(&paths[1]).unwrap();
        std::fs::write(&paths[1], &whole[..whole.len() / 2]).unwrap();
        let telemetry = telemetry_once_still(dir.path());
        let torn = pending_gauge(&telemetry.render());
        std::fs::write(&paths[1], &whole).unwrap();
        let listed = HaltStore::new(&faults).list();
        assert_eq!(listed.halts.len(), 2, "{listed:?}");
        let later: Vec<u64> = (0..3).map(|_| pending_gauge(&telemetry.render())).collect();
        assert_eq!(
            later.last().copied(),
            Some(2),
            "pending gauge: torn scrape {torn}, later scrapes {later:?}"
        );
    }
}
