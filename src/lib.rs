//! berth: a release-queue daemon with an embedded Rhai rules engine.
//!
//! The binary is a thin shell over this library; see `ARCHITECTURE.md` for the map.

/// Counts the heap each rule call holds, to stop one past its bound (`rules::memory`).
#[global_allocator]
static ALLOCATOR: rules::memory::CountingAlloc = rules::memory::CountingAlloc;

/// berth's version and the commit it was built from (`build.rs`): `0.1.0 (1a2b3c4d5e6f)`,
/// or `0.1.0 (unknown commit)` when built outside a git checkout.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BERTH_COMMIT"), ")");

pub mod atomic_file;
pub mod boot_clock;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod doctor;
pub mod endpoint;
pub mod faults;
pub mod file_owner;
pub mod file_stamp;
pub mod forge;
pub mod forge_state;
pub mod gates;
pub mod git_daemon;
pub mod git_timeouts;
pub mod gstack_text;
pub mod hostile_file;
pub mod http;
pub mod identity;
pub mod instance;
pub mod lane_lock;
pub mod logging;
pub mod open_files;
pub mod ownership;
pub mod paths;
pub mod pinned_dir;
pub mod private_dir;
pub mod proc_scan;
pub mod process_probe;
pub mod queue_order;
pub mod queue_page;
pub mod queue_report;
pub mod queue_view;
pub mod record;
pub mod rules;
pub mod runner;
pub mod safe_key;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod write_events;
