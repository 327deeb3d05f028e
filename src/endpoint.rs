//! The daemon's HTTP endpoint (`--metrics-addr`): the telemetry routes (`/metrics`,
//! `/healthz`, `/readyz`) and the queue page (`/`, `/pr/...`, `/api/...`) on one bounded
//! server ([`crate::http`]). `berth run` and `berth demo` start it the same way.

use std::sync::Arc;

use crate::daemon::Shared;
use crate::http::{Limits, Server};
use crate::queue_page::PageSources;

/// `addr` as the socket address to bind: a bare port means loopback (`9464` is
/// `127.0.0.1:9464`), so nothing is exposed unless a host is named.
pub fn bind_addr(addr: &str) -> String {
    match addr.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => addr.to_owned(),
    }
}

/// Serves `shared`'s metrics and queue page on `addr` until the server is dropped.
pub fn start(addr: &str, shared: &Arc<Shared>, limits: Limits) -> std::io::Result<Server> {
    let allowed = shared.allowed_roots();
    let page = crate::queue_page::routes(PageSources {
        store: shared.records().store().clone(),
        berth_dir: shared.berth_dir().to_owned(),
        halts: crate::faults::HaltStore::long_lived(
            shared
                .config()
                .faults_dir
                .clone()
                .unwrap_or_else(crate::paths::default_faults_dir),
        ),
        allowlist: Box::new(move || allowed.load_full()),
        order: Arc::clone(shared.order()),
    });
    let routes = crate::telemetry::server::routes(Arc::clone(shared.telemetry())).merge(page);
    Server::start(&bind_addr(addr), routes, limits)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_port_binds_loopback() {
        assert_eq!(super::bind_addr("9464"), "127.0.0.1:9464");
        assert_eq!(super::bind_addr("0.0.0.0:9464"), "0.0.0.0:9464");
        assert_eq!(super::bind_addr("[::1]:80"), "[::1]:80");
    }
}
