//! Clients for the connection tests (fast lane, reuseport policy): each sends one request
//! and reads to EOF; who answered, and whether every client got a proper answer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Proc;

/// How long one client waits for its answer (covers a stalled worker being detected, ~1 s,
/// several times over).
pub const CLIENT_WAIT: Duration = Duration::from_secs(10);

/// A client's answer: who served it, and (from a fixture worker) whether the connection came
/// non-blocking and the request line the worker read.
#[derive(Debug, Clone)]
pub struct Answer {
    pub pid: i32,
    pub nb: Option<bool>,
    pub line: Option<String>,
}

/// One client: connects to 127.0.0.1:`port`, sends an HTTP/1.1 request for `/<tag>` (one
/// line is all the fixture reads; a Node http server answers the whole request), reads to
/// EOF. `Err` says what went wrong: refused, reset, timed out, or EOF without an answer.
pub fn ask(port: u16, tag: &str) -> Result<Answer, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(CLIENT_WAIT)).map_err(|e| e.to_string())?;
    s.write_all(format!("GET /{tag} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| format!("read ({} bytes so far {out:?}): {e}", out.len()))?;
    parse_answer(&out).ok_or_else(|| if out.is_empty() { "EOF without an answer".into() } else { format!("unexpected answer {out:?}") })
}

pub fn parse_answer(out: &str) -> Option<Answer> {
    if let Some(rest) = out.strip_prefix("pid=") {
        let line = rest.lines().next()?;
        let (pid, rest) = line.split_once(' ')?;
        let (nb, line) = rest.strip_prefix("nb=")?.split_once(" line=")?;
        return Some(Answer { pid: pid.parse().ok()?, nb: Some(nb == "1"), line: Some(line.to_string()) });
    }
    // A Node worker (lane_worker.js): an HTTP response whose body is "node worker <pid>\n".
    let body = out.split("\r\n\r\n").nth(1)?;
    let pid = body.strip_prefix("node worker ")?.trim_end().parse().ok()?;
    Some(Answer { pid, nb: None, line: None })
}

/// A running client: its tag and its thread.
pub type Client = (String, JoinHandle<Result<Answer, String>>);

/// `n` clients at once (tags `<prefix><i>`); `answered` counts those that have an answer.
pub fn clients(port: u16, n: usize, prefix: &str) -> (Vec<Client>, Arc<AtomicUsize>) {
    let answered = Arc::new(AtomicUsize::new(0));
    let handles = (0..n)
        .map(|i| {
            let tag = format!("{prefix}{i}");
            let t = tag.clone();
            let count = answered.clone();
            let h = std::thread::spawn(move || {
                let r = ask(port, &t);
                if r.is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                r
            });
            (tag, h)
        })
        .collect();
    (handles, answered)
}

/// Joins the clients; panics listing every client without a proper answer (reset, EOF,
/// timeout, or an answer to another request). Returns answers per pid.
pub fn collect(handles: Vec<Client>, p: &Proc) -> BTreeMap<i32, Vec<Answer>> {
    let n = handles.len();
    let mut per_pid: BTreeMap<i32, Vec<Answer>> = BTreeMap::new();
    let mut failures = Vec::new();
    for (tag, h) in handles {
        match h.join().expect("client thread") {
            Ok(a) => {
                if let Some(line) = &a.line
                    && *line != format!("GET /{tag} HTTP/1.1")
                {
                    failures.push(format!("{tag}: answered another request: {line:?}"));
                }
                per_pid.entry(a.pid).or_default().push(a);
            }
            Err(e) => failures.push(format!("{tag}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} clients got no proper answer:\n{}\nanswers per pid: {:?}\noutput:\n{}",
        failures.len(),
        failures.join("\n"),
        per_pid.iter().map(|(k, v)| (*k, v.len())).collect::<BTreeMap<_, _>>(),
        output(p)
    );
    per_pid
}

pub fn output(p: &Proc) -> String {
    p.lines.lock().unwrap().join("\n")
}

/// The fixture worker's line once it has its server: (port, fd_kind).
pub fn server_line(p: &mut Proc, id: u64) -> (u16, String) {
    let v = p.expect(move |v| v["worker"] == id && v.get("fd_kind").is_some(), &format!("worker {id}'s server"));
    (v["port"].as_u64().expect("port") as u16, v["fd_kind"].as_str().unwrap().to_string())
}

/// Forks a fixture worker with `env` and waits until it has its server.
/// Returns (id, pid, port, fd_kind).
pub fn fork_server(p: &mut Proc, env: &str) -> (u64, i32, u16, String) {
    let (id, pid) = p.fork(env);
    let (port, kind) = server_line(p, id);
    (id, pid, port, kind)
}

/// Waits (bounded by `CLIENT_WAIT`) until `counter` reaches `want`; returns its value.
pub fn wait_for(counter: &AtomicUsize, want: usize) -> usize {
    let deadline = Instant::now() + CLIENT_WAIT;
    while counter.load(Ordering::SeqCst) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    counter.load(Ordering::SeqCst)
}
