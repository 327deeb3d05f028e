//! Which connection a new one past the cap closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;

use super::*;

/// The slot code says "a flood of idle connections can never lock out a scrape, only delay
/// the oldest", and issue 17 wants `/metrics` working under a flood of idle connections.
/// But the connection closed past the cap is the oldest whatever it is doing: a scrape
/// whose answer a handler is building is closed by the next `max_connections` connects
/// that send nothing, its answer built and thrown away. A flood that connects faster than
/// a scrape is answered (64 connects in the time a `/metrics` render takes) leaves every
/// scrape unanswered, while idle connections it could have closed instead stay open.
#[test]
fn idle_connections_past_the_cap_do_not_close_a_request_being_answered() {
    let limits = Limits {
        max_connections: 4,
        ..Limits::default()
    };
    let (entered, in_handler) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let (entered, released) = (Mutex::new(entered), Mutex::new(released));
    let router = Router::new()
        .get("/slow", move |_| {
            entered.lock().unwrap().send(()).unwrap();
            released.lock().unwrap().recv().unwrap();
            Response::text(200, "answered")
        })
        .get("/x", |_| Response::text(200, "x"));
    let server = Server::start("127.0.0.1:0", router, limits).unwrap();
    let mut scrape = TcpStream::connect(server.addr()).unwrap();
    scrape
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    scrape
        .write_all(b"GET /slow HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    in_handler.recv().unwrap();
    // Connections that send nothing, then one more whose answer (the other handler thread's)
    // says the accept loop admitted all of them.
    let idle: Vec<TcpStream> = (1..limits.max_connections)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    let mut last = TcpStream::connect(server.addr()).unwrap();
    last.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    last.write_all(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = last.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    release.send(()).unwrap();
    let mut scraped = Vec::new();
    let _ = scrape.read_to_end(&mut scraped);
    let scraped = String::from_utf8_lossy(&scraped);
    assert!(
        scraped.ends_with("answered"),
        "the request being answered was closed by {} connections after it ({} of them idle): got {scraped:?}",
        idle.len() + 1,
        idle.len()
    );
}

/// Reads the rest of one answer (head, then `Content-Length` bytes of body) from `stream`;
/// its head as read, or `None` if the server closed the connection.
fn read_answer(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(head)
}

/// What a newcomer asking `/healthz` gets: its status line, or "" if closed unanswered.
fn health(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Past the cap a newcomer closes only a connection waiting for a request head, and a
/// keep-alive connection that pipelines its requests is never seen waiting (its next head
/// is already read when an answer ends). Two clients (the cap) each pipeline three 8 MiB
/// answers (what `/api/queue` may be) and read every answer whole: a newcomer asking
/// `/healthz` between rounds, while every slot is answering, waits for the first answer to
/// end and takes that slot, the pipelined head already read being dropped. Refusing it
/// instead (`503`, as 2e713a2 did) kept it out for all 100 answers of every such client.
#[test]
fn a_newcomer_takes_the_slot_of_a_pipelining_client_when_its_answer_ends() {
    const BODY: usize = 8 * 1024 * 1024;
    const ROUNDS: usize = 3;
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let router = Router::new()
        .get("/big", |_| Response::text(200, "q".repeat(BODY)))
        .get("/healthz", |_| Response::text(200, "ok"));
    let server = Server::start("127.0.0.1:0", router, limits).unwrap();
    let mut clients: Vec<TcpStream> = (0..limits.max_connections)
        .map(|_| {
            let mut client = TcpStream::connect(server.addr()).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            client
                .write_all(&b"GET /big HTTP/1.1\r\n\r\n".repeat(ROUNDS + 1))
                .unwrap();
            client
        })
        .collect();
    // Each client's first answer has begun: every slot is answering.
    for client in &mut clients {
        let mut start = [0u8; 12];
        client.read_exact(&mut start).unwrap();
        assert_eq!(&start, b"HTTP/1.1 200");
    }
    let mut refused = 0;
    for round in 0..ROUNDS {
        // A client a newcomer closed is done with (round 0: the rest of the answer whose
        // status line was read above).
        clients.retain_mut(|client| {
            read_answer(client).is_some_and(|head| round == 0 || head.starts_with("HTTP/1.1 200"))
        });
        // Every slot is answering (round 0: each client's next answer has begun).
        if health(server.addr()).starts_with("HTTP/1.1 503") {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 0,
        "a newcomer asking /healthz was refused 503 in {refused} of {ROUNDS} rounds, by {} clients that pipeline their requests",
        limits.max_connections
    );
}
