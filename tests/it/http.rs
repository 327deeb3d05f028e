//! The HTTP endpoint (`--metrics-addr`) cannot hurt the daemon: a flood of idle
//! connections past the process's descriptor limit leaves landings, queue reads and the
//! endpoint itself working; requests of clients already gone never run ahead of a scrape;
//! scrapes at once each count the queue right.

use std::fs;
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
        &crate::support::serving_metrics_args(&config),
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

/// Scenario: two scrapes of `/metrics` at once (a Prometheus scrape and a local user's
/// `curl`, or two Prometheus replicas). Each refresh cleared the shared `berth_records`
/// family and counted the queue into it again, with no lock over the pair: one scrape's
/// clear landed between the other's clear and encode, and that scrape reported some
/// records twice (or none).
#[test]
fn concurrent_metrics_scrapes_each_count_every_record_once() {
    use berth::queue_view::{QueueView, Refresh};
    use berth::store::QueueStore;
    let world = World::new();
    let repo = world.code.join("widget");
    for pr in 1..=300 {
        world.record(&repo, pr).write();
    }
    let telemetry = std::sync::Arc::new(telemetry_of(&world));
    let mut view = QueueView::new();
    view.refresh(&QueueStore::new(&world.queue), &Refresh::Sweep);
    telemetry.queue_seen(&view);
    let queued = |text: &str| -> Option<String> {
        text.lines()
            .find(|l| l.starts_with("berth_records{status=\"queued\"}"))
            .map(str::to_owned)
    };
    let scrapers: Vec<_> = (0..2)
        .map(|_| {
            let telemetry = std::sync::Arc::clone(&telemetry);
            std::thread::spawn(move || (0..40).map(|_| telemetry.render()).collect::<Vec<_>>())
        })
        .collect();
    let wrong: Vec<Option<String>> = scrapers
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .map(|text| queued(&text))
        .filter(|line| line.as_deref() != Some("berth_records{status=\"queued\"} 300"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of 80 concurrent scrapes miscounted 300 queued records, e.g. {:?}",
        wrong.len(),
        wrong.first().cloned().flatten()
    );
}

fn telemetry_of(world: &World) -> berth::telemetry::Telemetry {
    use berth::telemetry::{Sources, Telemetry};
    Telemetry::new(
        Sources {
            berth_dir: world.root.join("berth"),
            halts: berth::faults::HaltStore::new(world.root.join("skill-faults")),
            fallbacks: Default::default(),
        },
        "gh",
        Duration::from_secs(60),
    )
}

/// Scenario: a local user scrapes `/metrics` in a loop (one refresh at a time, back to
/// back) over a queue of 300 records and a halt dir of pending events. Each scrape read
/// every queue file and every halt event; now the records come from the last tick's view
/// and the halt dir is read again only when its listing moved: no file of either is read.
#[test]
fn a_scrape_reads_no_queue_or_halt_file() {
    use crate::fault_watch_cost::reads_of;
    use berth::queue_view::{QueueView, Refresh};
    use berth::store::QueueStore;
    let world = World::new();
    let repo = world.code.join("widget");
    for pr in 1..=300 {
        world.record(&repo, pr).write();
    }
    let pending = world
        .root
        .join("skill-faults")
        .join(berth::faults::halt_store::PENDING_DIR);
    fs::create_dir_all(&pending).unwrap();
    for n in 0..20 {
        fs::write(
            pending.join(format!("run-{n}.json")),
            r#"{"event": "halt"}"#,
        )
        .unwrap();
    }
    let telemetry = telemetry_of(&world);
    let mut view = QueueView::new();
    view.refresh(&QueueStore::new(&world.queue), &Refresh::Sweep);
    telemetry.queue_seen(&view);
    // Past the window in which a stamp proves nothing.
    std::thread::sleep(Duration::from_millis(300));
    let mut first = String::new();
    let counted = reads_of(&pending, || first = telemetry.render());
    assert!(counted > 0, "the first scrape counts the pending events");
    let mut scrapes = Vec::new();
    let queue_reads = reads_of(&world.queue, || {
        let halt_reads = reads_of(&pending, || {
            scrapes = (0..10).map(|_| telemetry.render()).collect();
        });
        assert_eq!(
            halt_reads, 0,
            "10 scrapes read halt events {halt_reads} times"
        );
    });
    assert_eq!(
        queue_reads, 0,
        "10 scrapes read queue files {queue_reads} times"
    );
    assert!(
        first.contains("berth_records{status=\"queued\"} 300"),
        "{first}"
    );
    assert!(
        scrapes
            .iter()
            .all(|s| s.contains("berth_records{status=\"queued\"} 300"))
    );
}

/// Scenario: a local user opens connections to `--metrics-addr`, sends one request each
/// for a slow page and closes. Each request was handed to `spawn_blocking`, whose queue is
/// unbounded and not cancelled with the connection: 400 requests from clients long gone
/// kept both handler threads busy, and a scrape from a fresh connection waited behind all
/// of them. Now 2 run and 16 wait (docs/daemon.md); every other request is answered 503 at
/// once (or its connection closed by a newcomer), so a scrape waits behind at most those.
///
/// The slow handler holds until the test opens a gate, so what the server did with each
/// request is counted, never timed: a loaded machine accepting the 400 slowly changes
/// nothing here.
#[test]
fn requests_of_closed_connections_do_not_queue_ahead_of_a_scrape() {
    use berth::http::{Limits, Response, Router, Server};
    use std::io::{ErrorKind, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    const CLIENTS: usize = 400;
    // The documented bound: 2 handler threads and 16 places in their queue.
    const HANDLER_THREADS: usize = 2;
    const RUNNING_AND_WAITING: usize = HANDLER_THREADS + 16;
    let slow_runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (ran, held) = (Arc::clone(&slow_runs), Arc::clone(&gate));
    // How many slow requests had run when the scrape was served: what it waited behind.
    let ran_before_scrape = Arc::new(AtomicUsize::new(usize::MAX));
    let (counted, seen) = (Arc::clone(&slow_runs), Arc::clone(&ran_before_scrape));
    let router = Router::new()
        .get("/slow", move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
            let (open, opened) = &*held;
            let guard = open.lock().unwrap();
            // Bounded, so a failing run ends instead of hanging the server's drop.
            let _ = opened.wait_timeout_while(guard, Duration::from_secs(60), |open| !*open);
            Response::text(200, "slow\n")
        })
        .get("/metrics", move |_| {
            seen.store(counted.load(Ordering::SeqCst), Ordering::SeqCst);
            Response::text(200, "ok\n")
        });
    let server = Server::start("127.0.0.1:0", router, Limits::default()).unwrap();
    let mut clients: Vec<(TcpStream, bool)> = (0..CLIENTS)
        .map(|_| {
            let mut client = TcpStream::connect(server.addr()).unwrap();
            client.write_all(b"GET /slow HTTP/1.1\r\n\r\n").unwrap();
            client.set_nonblocking(true).unwrap();
            (client, false)
        })
        .collect();
    // While the gate keeps both handlers busy, every request but those running or holding
    // a place is answered (503) or its connection closed: at most 18 clients hear nothing.
    let answered_at_once = CLIENTS - RUNNING_AND_WAITING;
    let mut answered = 0;
    let all_but_a_queue_answered = crate::support::wait_until(Duration::from_secs(60), || {
        for (client, done) in clients.iter_mut().filter(|(_, done)| !*done) {
            let read = client.read(&mut [0u8; 1]);
            *done = !matches!(read, Err(e) if e.kind() == ErrorKind::WouldBlock);
            answered += usize::from(*done);
        }
        answered >= answered_at_once
    });
    assert!(
        all_but_a_queue_answered,
        "of {CLIENTS} requests, {answered} were answered while the handlers were busy"
    );
    // The clients still waiting close too: their requests are those of clients gone. Only
    // theirs can run from here on.
    drop(clients);
    {
        let (open, opened) = &*gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    // A scraper honours `Retry-After` while the queue is still full.
    let mut answer = String::new();
    for _ in 0..100 {
        let mut scrape = TcpStream::connect(server.addr()).unwrap();
        scrape
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        scrape
            .write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        answer.clear();
        let _ = scrape.read_to_string(&mut answer);
        if !answer.starts_with("HTTP/1.1 503") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Two ran before the gate opened; after it, only the requests of the clients that had
    // heard nothing.
    let bound = HANDLER_THREADS + RUNNING_AND_WAITING;
    let before = ran_before_scrape.load(Ordering::SeqCst);
    assert!(
        before <= bound,
        "the scrape was served after {before} requests of closed connections had run"
    );
    let ran = slow_runs.load(Ordering::SeqCst);
    assert!(ran <= bound, "{ran} requests of closed connections ran");
}

/// Scenario: a client sends one whole request and then half-closes its side
/// (`shutdown(SHUT_WR)`, as `printf 'GET /metrics HTTP/1.0\r\n\r\n' | nc -N host port`
/// or any HTTP/1.0 client that signals the end of its request does), and reads the answer.
/// Both handler threads are busy for a moment with two slow requests. The waiting
/// request's "client gone" watch reads the FIN (`read` = 0) and drops the request unrun:
/// the client, still reading, gets no answer at all, however idle the server is after.
#[test]
fn a_request_whose_client_half_closed_after_sending_it_is_still_answered() {
    use berth::http::{Limits, Response, Router, Server};
    use std::io::{Read, Write};
    let router = Router::new()
        .get("/slow", |_| {
            std::thread::sleep(Duration::from_millis(300));
            Response::text(200, "slow\n")
        })
        .get("/metrics", |_| Response::text(200, "ok\n"));
    let server = Server::start("127.0.0.1:0", router, Limits::default()).unwrap();
    let busy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(b"GET /slow HTTP/1.1\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = client.read_to_string(&mut answer);
    drop(busy);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "a half-closed client's request got no answer: {answer:?}"
    );
}
