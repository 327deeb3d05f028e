//! Review b22 (failing): what "being answered" covers when a connection pipelines its
//! requests.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::*;

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

/// 2e713a2: past the cap a newcomer closes only a connection waiting for a request head;
/// with every slot answering it gets `503` and `Retry-After: 1`, "each answer ends within
/// its handler's run and the 10 s write timeout" (docs/daemon.md). But a keep-alive
/// connection that pipelines its requests is never seen waiting: its next head is already
/// read when an answer ends, so it stays "answering" for all of its 100 requests. Here two
/// clients (the cap) each pipeline three 8 MiB answers (what `/api/queue` may be) and read
/// every answer whole, well within the write timeout; a newcomer asking `/healthz` after
/// each round of answers has ended is refused every time. With 64 such clients reading each
/// answer in just under 10 s, `/metrics`, `/healthz` and `/readyz` answer nobody else for
/// 100 × 10 s, and again on their next connects. Before 2e713a2 the newcomer closed the
/// oldest connection and was answered.
#[test]
fn a_retry_after_the_answers_being_written_have_ended_is_served() {
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
    let mut refused_after_an_end = 0;
    for round in 0..ROUNDS {
        // A client a newcomer closed is done with (round 0: the rest of the answer whose
        // status line was read above).
        clients.retain_mut(|client| {
            read_answer(client).is_some_and(|head| round == 0 || head.starts_with("HTTP/1.1 200"))
        });
        // Every answer being written when the last newcomer was refused has ended.
        if health(server.addr()).starts_with("HTTP/1.1 503") {
            refused_after_an_end += 1;
        }
    }
    assert_eq!(
        refused_after_an_end, 0,
        "a newcomer asking /healthz was refused 503 after each of {ROUNDS} rounds in which every answer being written ended, by {} clients that pipeline their requests",
        limits.max_connections
    );
}
