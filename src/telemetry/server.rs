//! `--metrics-addr HOST:PORT`: `GET /metrics` in the OpenMetrics text format that
//! Prometheus scrapes, served by `tiny_http` on one thread of its own (a scrape reads the
//! queue dir; it never waits on the daemon's loop, and the loop never waits on it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context as _;

use super::Telemetry;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running endpoint; dropping it stops the thread.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn start(addr: &str, telemetry: Arc<Telemetry>) -> anyhow::Result<MetricsServer> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| {
                format!("cannot serve metrics on --metrics-addr {addr} (expected HOST:PORT, free)")
            })?;
        let bound = server
            .server_addr()
            .to_ip()
            .context("the metrics listener has no IP address")?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("berth-metrics".into())
            .spawn(move || serve(&serving, &telemetry))
            .context("cannot start the metrics thread")?;
        Ok(MetricsServer {
            server,
            addr: bound,
            thread: Some(thread),
        })
    }

    /// The bound address (the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, telemetry: &Telemetry) {
    for request in server.incoming_requests() {
        let response = match (request.method(), request.url()) {
            (tiny_http::Method::Get, "/metrics") => {
                let header = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE)
                    .expect("a valid header");
                tiny_http::Response::from_string(telemetry.render()).with_header(header)
            }
            _ => tiny_http::Response::from_string("berth serves GET /metrics only\n")
                .with_status_code(404),
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!("metrics response not delivered: {e}");
        }
    }
}
