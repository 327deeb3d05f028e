//! A lane lock refresh that hangs (an origin that takes the push and never answers) stalls
//! nothing but its own landing: `/metrics` answers and another lane lands meanwhile.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{World, scrape, served_addr, spawn_serving_metrics, stop};

/// A TCP forwarder to a `git daemon` that, once told to, holds every push (a
/// `git-receive-pack` request) open and never answers it. Fetches still pass, so only the
/// lock's refresh hangs.
struct PushBlackHole {
    port: u16,
    holding: Arc<AtomicBool>,
    /// The pushes held so far, and how many of them their client gave up on.
    held: Arc<Mutex<Vec<TcpStream>>>,
    given_up: Arc<AtomicUsize>,
}

impl PushBlackHole {
    fn start(git_daemon_port: u16) -> PushBlackHole {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let hole = PushBlackHole {
            port: listener.local_addr().unwrap().port(),
            holding: Arc::default(),
            held: Arc::default(),
            given_up: Arc::default(),
        };
        let (holding, held, given_up) = (
            Arc::clone(&hole.holding),
            Arc::clone(&hole.held),
            Arc::clone(&hole.given_up),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (holding, held, given_up) = (
                    Arc::clone(&holding),
                    Arc::clone(&held),
                    Arc::clone(&given_up),
                );
                std::thread::spawn(move || {
                    serve(client, git_daemon_port, &holding, &held, &given_up)
                });
            }
        });
        hole
    }

    fn url_for(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    fn hold_pushes(&self) {
        self.holding.store(true, Ordering::SeqCst);
    }

    fn pushes_held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    fn pushes_given_up(&self) -> usize {
        self.given_up.load(Ordering::SeqCst)
    }

    /// Hangs up on every held push (the client sees the connection end).
    fn let_go(&self) {
        self.holding.store(false, Ordering::SeqCst);
        for stream in self.held.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// One connection: read git's first pkt-line, then hold it (a push while holding) or
/// forward both ways.
fn serve(
    mut client: TcpStream,
    port: u16,
    holding: &AtomicBool,
    held: &Mutex<Vec<TcpStream>>,
    given_up: &AtomicUsize,
) {
    let mut len = [0u8; 4];
    if client.read_exact(&mut len).is_err() {
        return;
    }
    let n = usize::from_str_radix(std::str::from_utf8(&len).unwrap_or("0"), 16).unwrap_or(0);
    let mut request = vec![0u8; n.saturating_sub(4)];
    if client.read_exact(&mut request).is_err() {
        return;
    }
    let is_push = String::from_utf8_lossy(&request).starts_with("git-receive-pack");
    if is_push && holding.load(Ordering::SeqCst) {
        held.lock().unwrap().push(client.try_clone().unwrap());
        // Read (and drop) until the client hangs up: that is it giving up on the push.
        let mut sink = [0u8; 4096];
        while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
        given_up.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let Ok(mut server) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return;
    };
    if server.write_all(&len).is_err() || server.write_all(&request).is_err() {
        return;
    }
    let (mut from_client, mut to_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Write);
}

#[test]
fn a_hung_lock_refresh_stalls_neither_metrics_nor_another_lane() {
    let world = World::new();
    let server = world.git_daemon();
    let hole = PushBlackHole::start(server.port());
    let hung = world.git_lane("hung", Some(hole.url_for("hung.git")));
    let healthy = world.git_lane("healthy", None);
    // PR 1 (the hung lane) waits in its land step, holding its lane; PR 2 lands.
    let config = world.config(&format!(
        "forge = \"git\"\npoll_secs = 1\nmax_lanes = 2\nheartbeat_secs = 1\nlock_ttl_secs = 600\nremote_timeout_secs = 600\n\
         land_command = [\"sh\", \"-c\", \"if [ \\\"$4\\\" = 1 ]; then exec sleep 600; fi; exec {} \\\"$@\\\"\", \"land\", \"{{branch}}\", \"{{base}}\", \"{}\", \"{{pr}}\"]\n",
        world.land_script().display(),
        world.root.join("ledger").display()
    ));
    let first = hung.queue(1, "main");
    let daemon = spawn_serving_metrics(&world, &config, &[]);
    let log = || fs::read_to_string(world.berth_state().with_extension("log")).unwrap_or_default();
    let mut addr = String::new();
    let landing = world.wait_for(Duration::from_secs(60), || {
        addr = served_addr(&world).unwrap_or_default();
        !addr.is_empty() && world.read_record(&first)["status"] == "landing"
    });
    hole.hold_pushes();
    let hanging = landing && world.wait_for(Duration::from_secs(60), || hole.pushes_held() > 0);

    // The refresh hangs now (for up to `remote_timeout_secs`): a scrape still answers,
    // and the other lane lands.
    // A scrape that times out (it waited on the hung push) counts as no answer.
    let scraped = hanging
        .then(|| std::panic::catch_unwind(|| scrape(&addr)).ok())
        .flatten();
    let second = healthy.queue(2, "main");
    let landed = hanging
        && world.wait_for(Duration::from_secs(120), || {
            world.read_record(&second)["status"] == "landed"
        });
    let still_hanging = hole.pushes_given_up() == 0;
    hole.let_go();
    stop(daemon);

    assert!(landing, "PR 1 never started landing; log:\n{}", log());
    assert!(
        hanging,
        "no lock refresh reached the origin; log:\n{}",
        log()
    );
    assert!(
        scraped.is_some_and(|m| m.contains("berth_lane_lock_heartbeat_age_seconds")),
        "the scrape did not report the held lock"
    );
    assert!(
        landed,
        "PR 2 did not land while PR 1's refresh hung; log:\n{}",
        log()
    );
    assert!(
        still_hanging,
        "the refresh gave up before PR 2 landed: the test proved nothing"
    );
    assert_eq!(world.ledger(), vec![2]);
}
