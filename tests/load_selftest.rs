//! The load generator (`common::load`) against in-test servers, no libcluster involved:
//!
//! * keep-alive against a server that closes some kept connections while idle (without
//!   saying `Connection: close`): those requests are resent once, counted in `retried`, and
//!   nothing fails; the client's counts match what the server sent;
//! * one connection per request (`Connection: close`, read to EOF): nothing fails, one
//!   connection per response;
//! * 500 responses, a request cap and `wait_completed`: every 500 is a failure, exactly;
//! * refused connects, a server that never answers (timeouts), and malformed responses (short
//!   body, wrong body, data after the response) are failures; chunked and split responses
//!   are parsed.
//!
//! Every wait is bounded; every server thread is stopped and joined (bounded) at the end.

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::load::{self, LoadOptions, LoadReport};

/// The pids the test server's acceptor threads claim to be.
const FAKE_PIDS: [i32; 4] = [1001, 1002, 1003, 1004];
/// How long server threads may take to stop.
const SERVER_STOP: Duration = Duration::from_secs(5);

/// What the test server does besides answering like `examples/hello.c`.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// Every Nth connection is closed, idle, right after its `idle_close_after`th response
    /// (which said `Connection: keep-alive`); 0: never.
    idle_close_every: u64,
    idle_close_after: u64,
    /// Every Nth request (counted over the server) is answered 500; 0: never.
    error_every: u64,
}

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    requests: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    idle_closes: AtomicU64,
}

/// A hello.c look-alike on 127.0.0.1: one acceptor thread per fake pid, a thread per
/// connection. Stopped (and its threads joined, bounded) on drop.
struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    acceptors: Vec<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TestServer {
    fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptors = FAKE_PIDS
            .iter()
            .map(|&pid| {
                let listener = listener.try_clone().expect("clone listener");
                let (stop, stats, conns) = (stop.clone(), stats.clone(), conns.clone());
                std::thread::spawn(move || {
                    // Blocking accept; `stop` wakes each acceptor with a connection of its own.
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let n = stats.connections.fetch_add(1, Ordering::SeqCst) + 1;
                        let (stop, stats) = (stop.clone(), stats.clone());
                        let h = std::thread::spawn(move || serve(stream, pid, n, behaviour, &stop, &stats));
                        let mut conns = conns.lock().unwrap();
                        conns.retain(|h| !h.is_finished());
                        conns.push(h);
                    }
                })
            })
            .collect();
        TestServer { addr, stop, stats, acceptors, conns }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// One connection: answers each complete request; closes on `Connection: close`, on EOF, on
/// stop, or idle after its `idle_close_after`th response when it is an idle-close connection.
fn serve(mut s: TcpStream, pid: i32, conn_no: u64, b: Behaviour, stop: &AtomicBool, stats: &Stats) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut served = 0u64;
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let close = head.contains("\nconnection: close");
            let req_no = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
            let error = b.error_every > 0 && req_no.is_multiple_of(b.error_every);
            let (status, body) =
                if error { ("500 Internal Server Error", "oops\n".to_string()) } else { ("200 OK", format!("hello from worker {pid}\n")) };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
                body.len(),
                if close { "close" } else { "keep-alive" }
            );
            if s.write_all(resp.as_bytes()).is_err() {
                return;
            }
            if error { &stats.errors } else { &stats.ok }.fetch_add(1, Ordering::SeqCst);
            served += 1;
            if close {
                return;
            }
            if b.idle_close_every > 0 && conn_no.is_multiple_of(b.idle_close_every) && served == b.idle_close_after {
                stats.idle_closes.fetch_add(1, Ordering::SeqCst);
                return;
            }
            continue;
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return,
        }
    }
}

/// Joins `handles`, waiting until `deadline` at most; how many did not finish.
fn join_by(handles: Vec<JoinHandle<()>>, deadline: Instant) -> usize {
    let mut pending = handles;
    while !pending.is_empty() && Instant::now() < deadline {
        pending.retain(|h| !h.is_finished());
        std::thread::sleep(Duration::from_millis(2));
    }
    pending.len()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for _ in &self.acceptors {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
        let deadline = Instant::now() + SERVER_STOP;
        let left = join_by(std::mem::take(&mut self.acceptors), deadline);
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        let left = left + join_by(conns, deadline);
        if left > 0 && !std::thread::panicking() {
            panic!("{left} test server threads did not stop within {SERVER_STOP:?}");
        }
    }
}

fn opts(port: u16, keep_alive: bool) -> LoadOptions {
    LoadOptions { clients: 8, keep_alive, duration: Duration::from_secs(1), ..LoadOptions::new(port) }
}

/// The checks every clean run passes: the client's successes are what the server sent.
fn assert_clean(r: &LoadReport, server: &TestServer) {
    assert!(r.ok > 0, "{r}");
    assert_eq!(r.failed(), 0, "{r}");
    assert!(r.failures.is_empty(), "{r}");
    assert_eq!(r.by_pid.values().sum::<u64>(), r.ok, "{r}");
    assert!(r.pids().is_subset(&FAKE_PIDS.into_iter().collect::<BTreeSet<_>>()), "{r}");
    assert_eq!(r.ok, server.stats.ok.load(Ordering::SeqCst), "responses the server sent vs read: {r}");
    assert_eq!(r.connections, server.stats.connections.load(Ordering::SeqCst), "connections: {r}");
    assert!(r.elapsed >= Duration::from_millis(900) && r.elapsed < Duration::from_secs(4), "{r}");
}

#[test]
fn keep_alive_resends_after_idle_close() {
    let server = TestServer::start(Behaviour { idle_close_every: 1, idle_close_after: 20, ..Behaviour::default() });
    let run = load::start(opts(server.port(), true));
    assert!(run.wait_completed(1, Duration::from_secs(5)), "no response at all");
    let r = run.finish(Duration::from_secs(5));
    eprintln!("keep-alive: {r}");
    assert_clean(&r, &server);
    let closes = server.stats.idle_closes.load(Ordering::SeqCst);
    assert!(r.retried > 0, "no resend after {closes} idle closes: {r}");
    // Each idle close is met by the next request on that connection, unless its client
    // stopped first (at most one per client).
    assert!(r.retried <= closes && closes - r.retried <= 8, "{closes} idle closes: {r}");
    // Connections are kept: 20 responses on each, but the last one of each client.
    assert!(r.connections.saturating_sub(8) * 20 <= r.ok, "{r}");
}

#[test]
fn close_mode_one_connection_per_request() {
    let server = TestServer::start(Behaviour::default());
    let r = load::start(opts(server.port(), false)).finish(Duration::from_secs(5));
    eprintln!("close: {r}");
    assert_clean(&r, &server);
    assert_eq!(r.retried, 0, "{r}");
    assert_eq!(r.connections, r.ok, "{r}");
}

#[test]
fn server_errors_are_failures() {
    for keep_alive in [true, false] {
        let server = TestServer::start(Behaviour { error_every: 5, ..Behaviour::default() });
        let o = LoadOptions { max_requests: Some(500), duration: Duration::from_secs(10), ..opts(server.port(), keep_alive) };
        let run = load::start(o);
        assert!(run.wait_completed(400, Duration::from_secs(5)), "keep_alive {keep_alive}: 400 of 500 requests are 200");
        let r = run.finish(Duration::from_secs(5));
        eprintln!("500s, keep_alive {keep_alive}: {r}");
        assert_eq!((r.ok, r.failed()), (400, 100), "{r}");
        assert_eq!(server.stats.errors.load(Ordering::SeqCst), 100, "{r}");
        assert!(r.failures.iter().all(|f| f.contains("status 500")), "{r}");
        assert_eq!(r.retried, 0, "{r}");
        assert!(r.elapsed < Duration::from_secs(5), "the cap did not end the run: {r}");
    }
}

#[test]
fn refused_connects_are_failures() {
    let port = common::free_port();
    let o = LoadOptions { clients: 2, duration: Duration::from_millis(200), ..LoadOptions::new(port) };
    let r = load::start(o).finish(Duration::from_secs(5));
    assert_eq!((r.ok, r.connections), (0, 0), "{r}");
    assert!(r.failed() > 0 && r.failures.iter().all(|f| f.contains("connect to")), "{r}");
}

#[test]
fn a_silent_server_times_out_and_stop_is_bounded() {
    // Connections complete in the backlog; nobody accepts, nobody answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let o = LoadOptions { clients: 2, io_timeout: Duration::from_millis(300), ..LoadOptions::new(port) };
    let run = load::start(o);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let r = run.stop();
    assert!(t.elapsed() < Duration::from_secs(2), "stop took {:?}", t.elapsed());
    assert_eq!((r.ok, r.failed()), (0, 2), "{r}");
    assert!(r.failures.iter().all(|f| f.contains("new connection: timed out reading the response (0 bytes")), "{r}");
    drop(listener);
}

/// A server that answers each connection's request with `parts` (written apart, so the
/// client reads them in separate reads), then closes. Runs `requests` requests in close
/// mode with one client and returns the report.
fn raw(parts: &[&[u8]], requests: u64) -> LoadReport {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    let server = std::thread::spawn(move || {
        for _ in 0..requests {
            let Ok((mut s, _)) = listener.accept() else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.set_nodelay(true);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            for p in &parts {
                let _ = s.write_all(p);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let o = LoadOptions {
        clients: 1,
        keep_alive: false,
        max_requests: Some(requests),
        duration: Duration::from_secs(5),
        ..LoadOptions::new(port)
    };
    let r = load::start(o).finish(Duration::from_secs(10));
    assert_eq!(join_by(vec![server], Instant::now() + SERVER_STOP), 0, "raw server did not finish");
    r
}

#[test]
fn split_and_chunked_responses_parse() {
    let r = raw(&[b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 21\r\nConnection: close\r\n\r\nhello from ", b"worker 42\n"], 2);
    assert_eq!((r.ok, r.failed()), (2, 0), "{r}");
    let r = raw(&[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n", b"e;x=y\r\nfrom worker 7\n\r\n0\r\n\r\n"], 2);
    assert_eq!((r.ok, r.failed(), r.pids()), (2, 0, BTreeSet::from([7])), "{r}");
}

#[test]
fn malformed_responses_are_failures() {
    let cases: [(&[&[u8]], &str); 5] = [
        (&[b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nhello from worker 1\n"], "short body: EOF after 20 of 40"),
        (&[b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n"], "not \"hello from worker <pid>\""),
        (&[b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nhello from worker 1\nextra"], "5 bytes after the response"),
        (&[b"HTTP/1.1 200 OK\r\nContent-Le"], "EOF after 27 bytes"),
        (&[b"garbage\r\n\r\n"], "bad status line"),
    ];
    for (parts, want) in cases {
        let r = raw(parts, 1);
        assert_eq!((r.ok, r.failed()), (0, 1), "{r}");
        assert!(r.failures[0].contains(want), "want {want:?}: {r}");
    }
}

#[test]
fn a_failed_resend_is_a_failure() {
    // One connection, one keep-alive answer, then the connection and the listener go: the
    // second request meets the idle close, is resent once, and the resend fails (refused, or
    // reset if it reached the backlog before the listener closed).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: keep-alive\r\n\r\nhello from worker 9\n");
    });
    let o = LoadOptions { clients: 1, max_requests: Some(2), duration: Duration::from_secs(5), ..LoadOptions::new(port) };
    let r = load::start(o).finish(Duration::from_secs(10));
    assert_eq!(join_by(vec![server], Instant::now() + SERVER_STOP), 0, "server did not finish");
    eprintln!("failed resend: {r}");
    assert_eq!((r.ok, r.retried, r.failed()), (1, 1, 1), "{r}");
    assert!(r.failures[0].contains("request 2, new connection (resend after"), "{r}");
}
