//! The daemon's HTTP routes on `--metrics-addr` (served by [`crate::http`]):
//!
//! - `GET /metrics` (any query string; `HEAD` too): the OpenMetrics text Prometheus
//!   scrapes;
//! - `GET /healthz`: 200 while the process serves at all;
//! - `GET /readyz`: 200 when a tick ended within 2 x `poll_secs` and a rule set is loaded,
//!   else 503 with the reason.
//!
//! The queue page adds its routes to the same [`Router`] (`crate::endpoint`).

use std::sync::Arc;

use super::Telemetry;
use crate::http::{Response, Router};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The telemetry routes, reading from `telemetry`.
pub fn routes(telemetry: Arc<Telemetry>) -> Router {
    let ready = Arc::clone(&telemetry);
    Router::new()
        .get("/metrics", move |_| {
            Response::new(200, CONTENT_TYPE, telemetry.render())
        })
        .get("/healthz", |_| Response::text(200, "ok\n"))
        .get("/readyz", move |_| match ready.readiness() {
            Ok(()) => Response::text(200, "ready\n"),
            Err(why) => Response::text(503, format!("not ready: {why}\n")),
        })
}
