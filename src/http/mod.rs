//! A small HTTP/1.1 server for berth's own endpoints (`--metrics-addr`): `GET`/`HEAD`
//! only, no request bodies, every resource bounded (see [`Limits`]). It runs on a thread
//! and runtime of its own, so nothing a client does reaches the daemon's loop; the
//! handlers (a [`Router`]) read what the daemon publishes.
//!
//! Architecture Invariant: a client holds at most one descriptor, one bounded buffer and
//! one task, for a bounded time, and the number of clients is capped far below the
//! process's descriptor limit; past the cap the oldest connection is closed. At most 16
//! requests wait for the 2 handler threads (past it: 503), and a waiting request whose
//! client went away is dropped unrun. Answers being written hold one copy of their body
//! each, 64 MiB of them together (past it: 503).

mod budget;
mod handlers;
mod request;
mod response;
mod router;
mod server;

pub use request::{Method, Request};
pub use response::Response;
pub use router::{Handler, Router};
pub use server::{Limits, Server};
