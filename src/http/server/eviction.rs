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
