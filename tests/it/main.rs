//! berth's integration tests: one test binary, real git repositories, real bare remotes,
//! real child processes and signals, in temp dirs.

mod support;

mod chaos;
mod chaos_check;
mod chaos_faults;
mod chaos_world;
mod checkout;
mod clear_errors;
mod cli_help;
mod crash;
mod daemon;
mod demo;
mod doc_links;
mod doctor;
mod error_style;
mod examples;
mod faults;
mod forge;
mod gates;
mod gstack_compat;
mod hostile;
mod http;
mod hung_push;
mod idle;
mod install;
mod installed;
mod lane_lock;
mod learned_budget;
mod lease;
mod liveness;
mod lock_alias;
mod lock_cas;
mod lock_cli;
mod lock_model;
mod module_cycles;
mod queue_cli;
mod queue_page;
mod replay;
mod rule_edges;
mod rules;
mod runner;
mod service;
mod takeover;
mod throughput;
mod writes_heard;
