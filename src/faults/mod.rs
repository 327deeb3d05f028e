//! Faults (DESIGN §7): what is wrong with an orchestrator run or with the queue, and how an
//! investigator hears about it.
//!
//! - [`fault`]: the fault model every detector returns, and its validation;
//! - [`state_jsonpath`]: the path language of learned patterns;
//! - [`learned`], [`learned_match`], [`pid_lock`], [`proposals`]: learned patterns, their
//!   validation, hit counting and the investigator's propose/promote/reject flow;
//! - [`halt`], [`halt_store`], [`registry`]: halt events, their files and the per-run
//!   active-fault registry that makes every tick emit only what is new.
//!
//! - [`rules`], [`detect`]: the detector contracts and `state_jsonpath` primitive given to
//!   the rules engine, and running the detectors (`rules/detectors/**/*.rhai`,
//!   `rules/learned.rhai`) over a run or the queue;
//! - [`watch`], [`state_file`], [`run_cache`], [`queue_facts`]: the daemon's per-tick pass
//!   over the build-state dir (each state file parsed again, and each run's detectors run
//!   again, only when what they read changed) and the queue.

pub mod attachment;
pub mod detect;
pub mod fault;
pub mod halt;
pub mod halt_store;
pub mod json_file;
pub mod learned;
pub mod learned_match;
pub mod parse_budget;
pub mod pid_lock;
pub mod proposals;
pub mod queue_facts;
pub mod read_budget;
pub mod registry;
pub mod rules;
pub mod run_cache;
pub mod run_id;
pub mod state_file;
pub mod state_jsonpath;
pub mod watch;

pub use fault::{Fault, Severity};
pub use halt::{HaltEvent, fault_id};
pub use halt_store::HaltStore;
pub use state_jsonpath::state_jsonpath;
