//! The handler threads and the requests waiting for them. A handler reads the disk, so it
//! runs on one of [`HANDLER_THREADS`] blocking threads; a request waits for one in a queue
//! of at most [`MAX_WAITING`], and while it waits its connection is watched: a request
//! whose connection failed (reset) is dropped unrun. A client's end of input (FIN) is not
//! its going: one that half-closes after its request (`nc -N`, HTTP/1.0 clients) still
//! reads the answer, and the server cannot tell it from a closed one without writing, so
//! such a request keeps its place; [`MAX_WAITING`] bounds what closed clients can put
//! ahead of a scrape. Past [`MAX_WAITING`] a request is answered 503 at once (load shed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{Request, Response, Router};

/// How many handlers run at once (each on a blocking thread of the server's runtime).
pub const HANDLER_THREADS: usize = 2;
/// How many requests may wait for a handler; the next one is answered 503.
pub const MAX_WAITING: usize = 16;

/// The handler threads' permits and the count of requests waiting for one.
pub struct Handlers {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Default for Handlers {
    fn default() -> Handlers {
        Handlers {
            permits: Arc::new(Semaphore::new(HANDLER_THREADS)),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// A place in the queue, given back when dropped (served, or its client gone).
struct Waiting<'h>(&'h AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Handlers {
    fn wait(&self) -> Option<Waiting<'_>> {
        let taken = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_WAITING).then_some(n + 1)
            });
        taken.ok().map(|_| Waiting(&self.waiting))
    }

    /// The router's answer to `request`, run once a handler thread is free; `None` if the
    /// client closed its connection (`stream`) first. Bytes the client sends meanwhile (a
    /// pipelined request) are kept in `buffer`, up to `max` bytes.
    pub async fn run(
        &self,
        router: &Arc<Router>,
        request: Request,
        stream: &mut TcpStream,
        buffer: &mut Vec<u8>,
        max: usize,
    ) -> Option<Response> {
        let Some(place) = self.wait() else {
            return Some(
                Response::text(
                    503,
                    format!("busy: {MAX_WAITING} requests wait for a handler; try again\n"),
                )
                .with_header("Retry-After: 1"),
            );
        };
        let permit = tokio::select! {
            // A client gone before its turn comes is never served, even if a thread is free.
            biased;
            () = client_gone(stream, buffer, max) => return None,
            permit = Arc::clone(&self.permits).acquire_owned() => permit.ok()?,
        };
        drop(place);
        let router = Arc::clone(router);
        let answer = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            router.handle(&request)
        })
        .await;
        Some(answer.unwrap_or_else(|e| {
            tracing::error!("an HTTP handler failed: {e}");
            Response::text(500, "internal error\n")
        }))
    }
}

/// Returns when the connection failed (the client is gone); reads what the client sends
/// meanwhile into `buffer`, and past `max` bytes of it, or once the client's input ended
/// (it may still be reading: a half-close), stops watching.
async fn client_gone(stream: &mut TcpStream, buffer: &mut Vec<u8>, max: usize) {
    loop {
        let room = max.saturating_sub(buffer.len());
        if room == 0 {
            return std::future::pending().await;
        }
        let mut chunk = [0u8; 1024];
        // `read` is cancel-safe: when the handler's turn comes first, nothing was read.
        match stream.read(&mut chunk[..room.min(1024)]).await {
            Ok(0) => return std::future::pending().await,
            Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}
