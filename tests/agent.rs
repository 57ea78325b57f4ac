//! HAProxy's agent check answered by the demo's primary (`AGENT_PORT`, `cluster_agent_listen`)
//! and the graceful stop with a drain delay (`DRAIN_DELAY_MS`), on real processes:
//!
//! * `ready up 100%` with every worker ready; a worker killed while its respawn waits a
//!   long backoff (`BACKOFF_BASE_MS` = 6000: the replacement is forked no sooner than 3 s
//!   later) gives `ready up 50%`, then `ready up 100%` once the replacement is ready;
//! * SIGTERM with `DRAIN_DELAY_MS` = 1500 under keep-alive and close-mode load: `drain` at
//!   once, no worker drains and every request succeeds during the delay, the drains begin
//!   after it, and the primary exits.
//!
//! Bounded waits throughout; every process is killed by pid on drop (`Demo`).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TIMEOUT;
use common::demo::{Demo, hello_bin, send_signal, worker_line};
use common::load::{self, LoadOptions};

/// The agent's port, from the demo's `agent-check on HOST:PORT` line.
fn agent_port(d: &Demo) -> u16 {
    let (_, l) = d.expect(0, TIMEOUT, "the agent-check line", |l| l.starts_with("agent-check on "));
    l.text.rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("port in the agent-check line")
}

/// One agent check: connect, read the line to EOF.
fn check(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the agent's line");
    out
}

/// Polls the agent (bounded) until it answers `want`; the answers seen meanwhile.
fn wait_answer(port: u16, want: &str, timeout: Duration) -> Result<Duration, Vec<String>> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let got = check(port);
        if got == want {
            return Ok(start.elapsed());
        }
        if seen.last() != Some(&got) {
            seen.push(got);
        }
        if start.elapsed() >= timeout {
            return Err(seen);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn agent_reports_ready_workers_against_the_target() {
    let d = Demo::start(&hello_bin(), &[("WORKERS", "2"), ("AGENT_PORT", "0"), ("BACKOFF_BASE_MS", "6000")]);
    let port = agent_port(&d);
    let (pids, _) = d.ready(0, 2, TIMEOUT);
    if let Err(seen) = wait_answer(port, "ready up 100%\n", TIMEOUT) {
        panic!("no `ready up 100%` with 2 of 2 ready: {seen:?}\n{}", d.output());
    }
    // One worker dies: its respawn waits at least 3 s (half of the 6 s backoff).
    let mark = d.mark();
    send_signal(pids[0], libc::SIGKILL);
    let killed_at = Instant::now();
    d.expect(mark, TIMEOUT, "the killed worker's death", |l| worker_line(l, "died") == Some(pids[0]));
    match wait_answer(port, "ready up 50%\n", Duration::from_secs(2)) {
        Ok(_) => assert!(killed_at.elapsed() < Duration::from_secs(3), "50% seen only after the respawn could be due"),
        Err(seen) => panic!("no `ready up 50%` with 1 of 2 ready: {seen:?}\n{}", d.output()),
    }
    // Still 50% a moment later (deterministic: the replacement cannot exist yet).
    assert_eq!(check(port), "ready up 50%\n");
    d.ready(mark, 1, Duration::from_secs(15));
    if let Err(seen) = wait_answer(port, "ready up 100%\n", TIMEOUT) {
        panic!("no `ready up 100%` after the respawn: {seen:?}\n{}", d.output());
    }
}

#[test]
fn term_with_a_drain_delay_says_drain_while_the_workers_serve() {
    let mut d = Demo::start(&hello_bin(), &[("WORKERS", "2"), ("AGENT_PORT", "0"), ("DRAIN_DELAY_MS", "1500")]);
    let port = agent_port(&d);
    d.ready(0, 2, TIMEOUT);
    wait_answer(port, "ready up 100%\n", TIMEOUT).expect("ready up 100% before the stop");
    let run = Duration::from_secs(600);
    let ka = load::start(LoadOptions { clients: 16, keep_alive: true, duration: run, ..LoadOptions::new(d.port) });
    let cl = load::start(LoadOptions { clients: 4, keep_alive: false, duration: run, ..LoadOptions::new(d.port) });
    assert!(ka.wait_completed(500, TIMEOUT) && cl.wait_completed(100, TIMEOUT), "load did not start");

    let mark = d.mark();
    let termed = Instant::now();
    d.signal(libc::SIGTERM);
    let took = wait_answer(port, "drain\n", Duration::from_secs(1)).unwrap_or_else(|seen| panic!("no drain within 1 s: {seen:?}"));
    assert!(took < Duration::from_millis(500), "drain took {took:?}");
    // During the delay the workers keep serving: requests complete, none fails, no drain.
    let (ka0, cl0) = (ka.completed(), cl.completed());
    while termed.elapsed() < Duration::from_millis(1100) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ka.completed() > ka0 + 100 && cl.completed() > cl0 + 20, "the workers stopped serving during the delay");
    assert_eq!(check(port), "drain\n");
    let early: Vec<String> = d.lines_from(mark).into_iter().map(|l| l.text).filter(|l| l.contains("draining")).collect();
    assert!(early.is_empty(), "drains began within the delay: {early:?}");
    // The load stops before the drains (a load balancer would have stopped sending).
    let (rk, rc) = (ka.stop(), cl.stop());
    assert_eq!(rk.failed(), 0, "keep-alive failures during the delay:\n{rk}\n{}", d.output());
    assert_eq!(rc.failed(), 0, "close-mode failures during the delay:\n{rc}\n{}", d.output());
    // Then the drains, and the primary's exit.
    let (_, first) = d.expect(mark, Duration::from_secs(5), "a worker draining", |l| l.contains("draining: disconnect"));
    let after = first.at.duration_since(termed);
    assert!(after >= Duration::from_millis(1400), "the drains began {after:?} after TERM, before the 1500 ms delay");
    let status = d.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("the primary did not exit:\n{}", d.output()));
    assert!(status.success(), "primary exited with {status}\n{}", d.output());
}
