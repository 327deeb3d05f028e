//! The listener, its accept loop and one task per connection, all on a current-thread
//! runtime of the server's own thread.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::budget::AnswerBudget;
use super::handlers::{HANDLER_THREADS, Handlers};
use super::{Request, Response, Router};

mod slots;
use slots::{Admission, Held, Slots};

/// Every bound a client meets. The defaults are the documented numbers
/// (`docs/limits.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at once; a new one past it closes the oldest one waiting for a
    /// request head, or when every one is answering waits (at most twice the write timeout) for
    /// the first answer to end and takes its slot; a quarter as many may wait, the next is
    /// refused (`503`) (`slots`).
    pub max_connections: usize,
    /// From the connection (or the previous response) to a whole request head.
    pub head_timeout: Duration,
    /// To write one response.
    pub write_timeout: Duration,
    /// The request line and headers together.
    pub max_head_bytes: usize,
    /// Requests served on one connection before it is closed.
    pub max_requests_per_connection: usize,
    /// Bytes of answer bodies being written at once, together; an answer past it gets a
    /// 503 instead (one answer alone always fits).
    pub max_answer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_head_bytes: 8 * 1024,
            max_requests_per_connection: 100,
            max_answer_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// The defaults, with connections capped at a fifth of `open_files` (the process's
    /// descriptor limit): with the newcomers waiting for a slot (a quarter as many,
    /// `slots::queued_max`) the server holds at most a quarter of them, and the daemon's
    /// own work keeps the other three quarters.
    pub fn within(open_files: u64) -> Limits {
        let default = Limits::default();
        let fifth = usize::try_from(open_files / 5).unwrap_or(usize::MAX);
        Limits {
            max_connections: default.max_connections.min(fifth).max(1),
            ..default
        }
    }
}

/// How long the accept loop waits after a failed accept (`EMFILE`, `ENFILE`,
/// `ENOBUFS`): doubling from the first to the last, reset by the next accepted connection.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// The running server; dropping it stops the thread and closes every connection.
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (errors are the bind's) and serves `router` on a thread of its own.
    pub fn start(addr: &str, router: Router, limits: Limits) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(HANDLER_THREADS)
            .build()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("berth-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            accept_loop(listener, Arc::new(router), limits, stopped).await
                        }
                        Err(e) => tracing::error!("the HTTP listener cannot be served: {e}"),
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(Server {
            addr: bound,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Arc<Router>,
    limits: Limits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Mutex::new(Slots::default()));
    let handlers = Arc::new(Handlers::default());
    let budget = Arc::new(AnswerBudget::new(limits.max_answer_bytes));
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or buffers): the clients already in are served and
                // closed meanwhile; the loop waits and accepts again, it never ends here.
                tracing::warn!("HTTP accept failed: {e}; accepting again in {backoff:?}");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF.0;
        let (router, handlers, budget) = (
            Arc::clone(&router),
            Arc::clone(&handlers),
            Arc::clone(&budget),
        );
        match Slots::admit(&slots, limits.max_connections, &stop) {
            Admission::Now(held) => {
                tokio::spawn(async move {
                    connection(stream, held, &router, &handlers, &budget, limits).await
                });
            }
            // An answer being written ends within the write timeout; the second one covers
            // the handler run of one about to be written. Past both the newcomer is
            // refused: handlers that stall keep it no longer.
            Admission::Queued(slot) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(2 * limits.write_timeout, slot).await {
                        Ok(Ok(held)) => {
                            connection(stream, held, &router, &handlers, &budget, limits).await
                        }
                        _ => refuse(&stream),
                    }
                });
            }
            Admission::Refused => refuse(&stream),
        }
    }
}

/// Serves a connection until it ends or a newcomer closes it.
async fn connection(
    stream: TcpStream,
    held: Held,
    router: &Arc<Router>,
    handlers: &Handlers,
    budget: &AnswerBudget,
    limits: Limits,
) {
    let close = held.close.clone();
    tokio::select! {
        () = close.cancelled() => {}
        () = serve(stream, &held, router, handlers, budget, limits) => {}
    }
}

/// Tells a connection that found every slot answering (and no answer ending in time) to
/// come back, in what one write takes without waiting (its socket buffer is empty), and
/// closes it.
fn refuse(stream: &TcpStream) {
    let busy = Response::text(503, "busy: every connection is being answered; try again\n")
        .with_header("Retry-After: 1");
    let _ = stream.try_write(&busy.to_bytes(false, false));
}

/// Why no request head was read.
enum HeadError {
    /// The client closed, or the read failed: nothing to answer.
    Gone,
    TooLarge,
}

/// Serves requests on one connection until the client closes, stays idle past the head
/// timeout, asks to close, or has had its share of requests.
async fn serve(
    mut stream: TcpStream,
    held: &Held,
    router: &Arc<Router>,
    handlers: &Handlers,
    budget: &AnswerBudget,
    limits: Limits,
) {
    let mut buffer = Vec::with_capacity(1024);
    for served in 1..=limits.max_requests_per_connection {
        held.waiting(true);
        let head = tokio::time::timeout(
            limits.head_timeout,
            read_head(&mut stream, &mut buffer, limits.max_head_bytes),
        )
        .await;
        // From here to the answer's last byte a newcomer does not close this connection.
        held.waiting(false);
        let (response, head_only, keep_alive) = match head {
            Err(_) | Ok(Err(HeadError::Gone)) => return,
            Ok(Err(HeadError::TooLarge)) => (
                Response::text(431, "request head too large\n"),
                false,
                false,
            ),
            Ok(Ok(head)) => match Request::parse(&head) {
                Err(_) => (Response::text(400, "bad request\n"), false, false),
                Ok(request) if request.has_body => (
                    Response::text(400, "berth reads no request body\n"),
                    false,
                    false,
                ),
                Ok(request) => {
                    let keep_alive =
                        request.keep_alive && served < limits.max_requests_per_connection;
                    let head_only = request.method == super::Method::Head;
                    let answer = handlers
                        .run(
                            router,
                            request,
                            &mut stream,
                            &mut buffer,
                            limits.max_head_bytes,
                        )
                        .await;
                    match answer {
                        Some(response) => (response, head_only, keep_alive),
                        None => return,
                    }
                }
            },
        };
        let wire = Wire {
            head_only,
            keep_alive,
            timeout: limits.write_timeout,
        };
        if !send(&mut stream, response, wire, budget).await || !keep_alive {
            return;
        }
        // Between answers: a newcomer queued because every slot was answering takes this
        // one (a pipelined head already read is dropped), or a client that pipelines would
        // hold its slot for all its requests, never seen waiting for a head.
        if held.wanted() {
            return;
        }
    }
}

/// How one response goes on the wire.
#[derive(Clone, Copy)]
struct Wire {
    head_only: bool,
    keep_alive: bool,
    timeout: Duration,
}

/// Writes `response` within the write timeout, its body counted in `budget` until it is
/// written (or this future is dropped with its connection); an answer past the budget is
/// dropped here and a 503 written instead. Whether the write succeeded.
async fn send(
    stream: &mut TcpStream,
    response: Response,
    wire: Wire,
    budget: &AnswerBudget,
) -> bool {
    let body_bytes = if wire.head_only {
        0
    } else {
        response.body.len()
    };
    let (response, _held) = match budget.take(body_bytes) {
        Some(held) => (response, Some(held)),
        None => {
            // Before the 503 goes out, which may take the whole write timeout.
            drop(response);
            (over_budget(budget), None)
        }
    };
    let head = response.head(wire.keep_alive);
    let body = if wire.head_only {
        Vec::new()
    } else {
        response.body
    };
    let written = tokio::time::timeout(wire.timeout, write_answer(stream, &head, &body)).await;
    matches!(written, Ok(Ok(())))
}

/// The answer in place of one the budget has no room for; its few bytes are not counted.
fn over_budget(budget: &AnswerBudget) -> Response {
    Response::text(
        503,
        format!(
            "busy: answers being written hold the {} MiB they may; try again\n",
            budget.limit() >> 20
        ),
    )
    .with_header("Retry-After: 1")
}

/// Writes `head`, then `body`, with vectored writes: the body is written from where it lies
/// (never copied after the head), and the head is never a small write of its own for
/// Nagle's algorithm to hold the body behind.
async fn write_answer(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut parts = [io::IoSlice::new(head), io::IoSlice::new(body)];
    let mut left: &mut [io::IoSlice<'_>] = &mut parts;
    while !left.is_empty() {
        match stream.write_vectored(left).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => io::IoSlice::advance_slices(&mut left, n),
        }
    }
    Ok(())
}

/// Reads until a blank line ends a head of at most `max` bytes; bytes after it stay in
/// `buffer` for the next request.
async fn read_head(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    max: usize,
) -> Result<Vec<u8>, HeadError> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buffer[..end].to_vec();
            buffer.drain(..end + 4);
            return Ok(head);
        }
        if buffer.len() >= max {
            return Err(HeadError::TooLarge);
        }
        let mut chunk = [0u8; 1024];
        let want = chunk.len().min(max + 4 - buffer.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return Err(HeadError::Gone),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        // What arrived before the end, or before a reset (a head refused unread).
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut chunk) {
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn past_the_cap_the_oldest_connection_is_closed_and_a_new_one_served() {
        let limits = Limits {
            max_connections: 3,
            ..Limits::default()
        };
        let router = Router::new().get("/x", |r| Response::text(200, format!("q={}", r.query)));
        let server = Server::start("127.0.0.1:0", router, limits).unwrap();
        let mut idle: Vec<std::net::TcpStream> = (0..10)
            .map(|_| std::net::TcpStream::connect(server.addr()).unwrap())
            .collect();
        let answer = get(
            server.addr(),
            "GET /x?a=1 HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("q=a=1"),
            "{answer}"
        );
        // The first connections were closed: a read sees the end, not a hang.
        idle[0]
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(idle[0].read(&mut [0u8; 8]).unwrap(), 0);
        let head = get(server.addr(), "HEAD /x HTTP/1.0\r\n\r\n");
        assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");
        let big = format!("GET /x HTTP/1.1\r\nA: {}\r\n\r\n", "a".repeat(9000));
        assert!(get(server.addr(), &big).starts_with("HTTP/1.1 431"));
        assert!(get(server.addr(), "GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn keep_alive_serves_pipelined_requests_up_to_the_limit() {
        let limits = Limits {
            max_requests_per_connection: 2,
            ..Limits::default()
        };
        let server = Server::start(
            "127.0.0.1:0",
            Router::new().get("/x", |_| Response::text(200, "x")),
            limits,
        )
        .unwrap();
        let answer = get(server.addr(), &"GET /x HTTP/1.1\r\n\r\n".repeat(3));
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
        assert!(answer.contains("Connection: keep-alive") && answer.contains("Connection: close"));
    }

    /// Resident memory of this process, in KiB.
    fn resident_kib() -> u64 {
        crate::telemetry::process::sample()
            .resident_bytes
            .expect("Linux gives VmRSS")
            / 1024
    }

    /// Clients that ask for an 8 MiB answer (what `/api/queue` may be) on every one of the
    /// 64 connections and then read no further: each answer waits in its connection for
    /// the write timeout, held twice (the response's body and the bytes `to_bytes` copied
    /// from it). docs/limits.md bounds the connections and the answer, not what they hold
    /// together: here ~1 GiB resident for as long as the clients keep asking, where one
    /// copy per connection (the 64 × 8 MiB the documented numbers imply) is 512 MiB.
    #[test]
    fn answers_held_for_slow_readers_hold_one_copy_each() {
        const BODY: usize = 8 * 1024 * 1024;
        let limits = Limits {
            write_timeout: Duration::from_secs(120),
            ..Limits::default()
        };
        let router = Router::new().get("/big", |_| {
            Response::new(200, "application/json", vec![b'x'; BODY])
        });
        let server = Server::start("127.0.0.1:0", router, limits).unwrap();
        let before = resident_kib();
        let clients: Vec<std::net::TcpStream> = (0..limits.max_connections)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                stream.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
                // The answer has started: it was built and is being written.
                let mut first = [0u8; 1];
                stream.read_exact(&mut first).unwrap();
                stream
            })
            .collect();
        let held_mib = resident_kib().saturating_sub(before) / 1024;
        let one_copy_each_mib = (limits.max_connections * BODY) as u64 >> 20;
        drop(clients);
        assert!(
            held_mib <= one_copy_each_mib,
            "{} slow readers of an 8 MiB answer hold {held_mib} MiB resident (one copy each: {one_copy_each_mib} MiB)",
            limits.max_connections
        );
    }

    /// Past the budget of answers being written, an answer is dropped once built and a 503
    /// goes out at once; a `HEAD` (no body to hold) still gets its headers, and once the
    /// slow reader goes its share is free again.
    #[test]
    fn an_answer_past_the_budget_gets_a_503_at_once() {
        const BODY: usize = 8 * 1024 * 1024;
        let limits = Limits {
            write_timeout: Duration::from_secs(120),
            max_answer_bytes: 1024 * 1024,
            ..Limits::default()
        };
        let router = Router::new().get("/big", |_| {
            Response::new(200, "application/json", vec![b'x'; BODY])
        });
        let server = Server::start("127.0.0.1:0", router, limits).unwrap();
        let mut slow = std::net::TcpStream::connect(server.addr()).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        slow.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
        slow.read_exact(&mut [0u8; 1]).unwrap();
        let close = "HTTP/1.1\r\nConnection: close\r\n\r\n";
        let refused = get(server.addr(), &format!("GET /big {close}"));
        assert!(
            refused.starts_with("HTTP/1.1 503") && refused.contains("Retry-After: 1\r\n"),
            "{refused}"
        );
        let head = get(server.addr(), &format!("HEAD /big {close}"));
        assert!(
            head.starts_with("HTTP/1.1 200")
                && head.contains(&format!("Content-Length: {BODY}\r\n"))
        );
        drop(slow);
        // Its write fails at the reset, which gives its share back.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = get(server.addr(), &format!("GET /big {close}"));
            if answer.starts_with("HTTP/1.1 200") {
                assert_eq!(answer.len(), head.len() + BODY);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still refused: {answer}"
            );
        }
    }

    #[test]
    fn connections_are_capped_below_the_descriptor_limit() {
        assert_eq!(Limits::within(1024).max_connections, 64);
        assert_eq!(Limits::within(100).max_connections, 20);
        assert_eq!(Limits::within(0).max_connections, 1);
    }
}

#[cfg(test)]
mod eviction;
