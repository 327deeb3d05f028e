//! The HTTP endpoint (`--metrics-addr`) cannot hurt the daemon: a flood of idle
//! connections past the process's descriptor limit leaves landings, queue reads and the
//! endpoint itself working.

use std::net::TcpStream;
use std::time::Duration;

use crate::support::World;
use crate::support::{request, sample, served_addr, stop};

#[test]
fn a_flood_of_idle_connections_leaves_landings_reads_and_metrics_working() {
    const LIMIT: u64 = 256;
    const FLOOD: u64 = 5_000;
    let world = World::new();
    let lane = world.git_lane("widget", None);
    let config = world.git_forge_config("poll_secs = 1\n");
    let state = world.berth_state();
    let nofile = format!("--nofile={LIMIT}:{LIMIT}");
    let daemon = world.spawn_berth_wrapped(
        &["prlimit", &nofile, "--"],
        &[
            "run",
            "--watch",
            "--config",
            config.to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        &state,
    );
    let log = || std::fs::read_to_string(state.with_extension("log")).unwrap_or_default();
    let mut addr = String::new();
    assert!(
        world.wait_for(Duration::from_secs(30), || served_addr(&world)
            .map(|a| addr = a)
            .is_some()),
        "{}",
        log()
    );
    // 5,000 connections, about twenty times the daemon's descriptor limit, all held open and
    // silent.
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let flood: Vec<TcpStream> = (0..FLOOD)
        .filter_map(|_| TcpStream::connect_timeout(&target, Duration::from_secs(2)).ok())
        .collect();
    assert!(flood.len() as u64 > LIMIT, "only {} connected", flood.len());

    let id = lane.queue(1, "main");
    assert!(
        world.wait_for(Duration::from_secs(60), || world.read_record(&id)["status"]
            == "landed"),
        "the record did not land during the flood: {}\n{}",
        world.read_record(&id),
        log()
    );
    let (status, metrics) = request(&addr, "GET", "/metrics?name[]=berth_ticks");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(
        sample(&metrics, "berth_process_max_fds"),
        Some(LIMIT as f64),
        "{metrics}"
    );
    let open = sample(&metrics, "berth_process_open_fds").unwrap();
    assert!(open < LIMIT as f64 / 2.0, "{open} descriptors open");
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "berth_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(sample(&metrics, "berth_last_tick_timestamp_seconds").unwrap() > 1.0e9);
    assert!(sample(&metrics, "berth_process_cpu_seconds").unwrap() > 0.0);
    assert!(sample(&metrics, "berth_process_resident_memory_bytes").unwrap() > 0.0);
    let (status, body) = request(&addr, "HEAD", "/metrics");
    assert!(
        status.starts_with("HTTP/1.1 200") && body.is_empty(),
        "{status} {body:?}"
    );
    assert_eq!(
        request(&addr, "GET", "/healthz"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    assert_eq!(
        request(&addr, "GET", "/readyz"),
        ("HTTP/1.1 200 OK".into(), "ready\n".into())
    );
    assert!(request(&addr, "GET", "/nope").0.starts_with("HTTP/1.1 404"));
    assert!(
        request(&addr, "POST", "/metrics")
            .0
            .starts_with("HTTP/1.1 405")
    );
    drop(flood);
    stop(daemon);
}
