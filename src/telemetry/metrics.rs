//! The Prometheus families berth exports. Counters move as things happen; gauges that
//! describe state on disk (records by status, halt events, the rule set) are refreshed when
//! a scrape asks, so an idle daemon does no work for them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForgeCallLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// Which of the fault watch's passes: `runs` (the build-state dir) or `queue`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabel {
    pub pass: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabel {
    pub lane: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleSetLabels {
    pub hash: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every family, registered once in [`Metrics::new`].
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub records: Family<StatusLabel, Gauge>,
    pub passed_over: Family<ReasonLabel, Gauge>,
    pub ticks: Counter,
    pub tick_seconds: Histogram,
    pub forge_calls: Family<ForgeCallLabels, Counter>,
    pub landings: Family<OutcomeLabel, Counter>,
    pub heartbeat_age: Family<LaneLabel, Gauge>,
    pub rule_fallbacks: Family<RuleLabels, Counter>,
    pub rules_reload_ok: Gauge,
    pub rule_set: Family<RuleSetLabels, Gauge>,
    pub halts_pending: Gauge,
    pub halts_withheld: Family<PassLabel, Gauge>,
    pub build_info: Family<BuildLabels, Gauge>,
    pub last_tick: FloatGauge,
    pub cpu_seconds: FloatGauge,
    pub resident_bytes: Gauge,
    pub open_fds: Gauge,
    pub max_fds: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("berth"),
            records: Family::default(),
            passed_over: Family::default(),
            ticks: Counter::default(),
            // 5 ms .. ~80 s: a tick is a directory scan plus forge calls with a timeout.
            tick_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            forge_calls: Family::default(),
            landings: Family::default(),
            heartbeat_age: Family::default(),
            rule_fallbacks: Family::default(),
            rules_reload_ok: Gauge::default(),
            rule_set: Family::default(),
            halts_pending: Gauge::default(),
            halts_withheld: Family::default(),
            build_info: Family::default(),
            last_tick: FloatGauge::default(),
            cpu_seconds: FloatGauge::default(),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            max_fds: Gauge::default(),
        };
        metrics
            .build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        let registry = &mut metrics.registry;
        registry.register(
            "records",
            "Queue records by status",
            metrics.records.clone(),
        );
        registry.register(
            "records_passed_over",
            "Queued records selection passes over until their file is written again, by reason (claim_too_large: claiming it would pass the record size cap)",
            metrics.passed_over.clone(),
        );
        registry.register("ticks", "Ticks run", metrics.ticks.clone());
        registry.register(
            "tick_duration_seconds",
            "Wall time of a tick's bookkeeping and selection",
            metrics.tick_seconds.clone(),
        );
        registry.register(
            "forge_calls",
            "Forge calls by kind (list_queued, check_pr, merge_proof) and result (ok, error)",
            metrics.forge_calls.clone(),
        );
        registry.register(
            "landings",
            "Finished landings by outcome",
            metrics.landings.clone(),
        );
        registry.register(
            "lane_lock_heartbeat_age_seconds",
            "Seconds since the last successful refresh of each lane lock this daemon holds",
            metrics.heartbeat_age.clone(),
        );
        registry.register(
            "rule_fallbacks",
            "Rule answers replaced by the built-in default (failed, slow or invalid), per rule file and function",
            metrics.rule_fallbacks.clone(),
        );
        registry.register(
            "rules_last_reload_ok",
            "1 when the last rule load or reload was accepted, 0 when it was refused",
            metrics.rules_reload_ok.clone(),
        );
        registry.register(
            "rule_set",
            "The active rule set (value 1), labelled with its sha256 and source",
            metrics.rule_set.clone(),
        );
        registry.register(
            "halt_events_pending",
            "Halt events not yet resolved",
            metrics.halts_pending.clone(),
        );
        registry.register(
            "halt_events_withheld",
            "Halt events and resolved markers the last fault watch pass held back past the cap on pending files",
            metrics.halts_withheld.clone(),
        );
        registry.register(
            "build_info",
            "The running build (value 1), labelled with its version",
            metrics.build_info.clone(),
        );
        registry.register(
            "last_tick_timestamp_seconds",
            "Unix time the last tick ended (0 before the first)",
            metrics.last_tick.clone(),
        );
        registry.register(
            "lane_lock_leftovers_removed",
            "Lane lock ref .lock files left by a dead writer in a local origin and removed",
            crate::lane_lock::LEFTOVERS_REMOVED.clone(),
        );
        registry.register(
            "lane_lock_writers_blocked",
            "Local-origin lane lock writes that found the writers' lock held past the wait (the holder is named in the log)",
            crate::lane_lock::WRITERS_BLOCKED.clone(),
        );
        registry.register(
            "lock_busy_tries",
            "Tries to take an advisory lock (a record's, a lock file's) that found it held by another process",
            crate::atomic_file::BUSY_LOCK_TRIES.clone(),
        );
        registry.register(
            "landing_leftovers_killed",
            "Landing processes killed by their mark once their step ended or their daemon was gone (what left the step's process group)",
            crate::runner::LEFTOVERS_KILLED.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time the daemon used since it started",
            metrics.cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the daemon",
            metrics.resident_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Descriptors the daemon has open",
            metrics.open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "The daemon's open-files limit (soft)",
            metrics.max_fds.clone(),
        );
        metrics
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding into a String cannot fail");
        text
    }
}
