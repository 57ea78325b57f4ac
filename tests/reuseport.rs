//! The reuseport policy (`NODE_CLUSTER_SCHED_POLICY=reuseport`) with real processes:
//!
//! * each worker gets a listener of its own in one SO_REUSEPORT group (the kernel deals,
//!   no primary on the path), libcluster and unmodified Node workers alike;
//! * nothing lost: connections waiting in a worker's accept queue reach the other worker
//!   when the first is killed, closes its server or is disconnected (the primary keeps its
//!   copy of the listener and serves it through Node's `newconn`);
//! * a replacement worker takes the orphaned listener over.
//!
//! Clients send one request and read to EOF (`common::clients`). Every wait is bounded;
//! every process a test starts is killed by pid on drop (`common::Proc`), pass or fail.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::clients::{ask, clients, collect, fork_server, output};
use common::{Proc, root};
use serde_json::Value;

const POLICY: (&str, &str) = ("NODE_CLUSTER_SCHED_POLICY", "reuseport");

/// The TCP sockets listening on 127.0.0.1:`port`, and the connections waiting in their
/// accept queues (`/proc/net/tcp`: state 0A, `rx_queue` is the accept backlog).
fn listeners(port: u16) -> (usize, usize) {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    let mut n = 0;
    let mut queued = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && f[1] == local && f[3] == "0A" {
            n += 1;
            let rx = f[4].split(':').nth(1).unwrap_or("0");
            queued += usize::from_str_radix(rx, 16).unwrap_or(0);
        }
    }
    (n, queued)
}

/// Waits (bounded) until `f` holds.
fn until(what: &str, p: &Proc, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", output(p));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two libcluster workers: two listeners on the port (one each, the primary's copies are
/// the same sockets), the worker's server is a listener it accepts on itself (behind the
/// epoll fd it polls), and both answer.
#[test]
fn each_worker_gets_its_own_listener_and_both_answer() {
    let mut p = Proc::fixture(&[POLICY]);
    let (_, a_pid, port, a_kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    let (_, b_pid, b_port, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    assert_eq!(port, b_port, "one port for the group");
    assert_eq!(a_kind, "epoll", "a listener of its own (not the lane, not Node's path)");
    assert_eq!(listeners(port).0, 2, "one SO_REUSEPORT listener per worker");
    let per_pid = collect(clients(port, 40, "c").0, &p);
    assert_eq!(per_pid.keys().copied().collect::<Vec<_>>(), {
        let mut v = vec![a_pid, b_pid];
        v.sort();
        v
    });
}

#[derive(Clone, Copy, Debug)]
enum Leave {
    Kill,
    Close,
    Disconnect,
}

/// Workers A and B both hold their connections (they accept none), 20 clients connect and
/// wait in the two accept queues; A leaves; B starts accepting. Every client is answered by
/// B, none reset: A's queue was served through the primary's copy of A's listener.
fn nothing_lost(leave: Leave) {
    const N: usize = 20;
    let mut p = Proc::fixture(&[POLICY]);
    let (a, _, port, _) = fork_server(&mut p, "FIXTURE_MODE=drip:0");
    let (b, b_pid, _, _) = fork_server(&mut p, "FIXTURE_MODE=drip:0");
    let (handles, _) = clients(port, N, "c");
    // Every client waits in an accept queue (or, moved by the primary, in B's server).
    until("clients in the accept queues", &p, || listeners(port).1 >= N / 2);
    match leave {
        Leave::Kill => {
            p.cmd(&format!("kill {a} 9"), "killed");
            let e = p.event("exit", a);
            assert_eq!(e["signal"], 9, "{e}");
        }
        Leave::Close => {
            p.cmd(&format!("send {a} {{\"close\":1}}"), "sent");
            p.expect(move |v| v["worker"] == a && v.get("closed").is_some(), "A closed its server");
        }
        Leave::Disconnect => {
            p.cmd(&format!("disconnect {a}"), "disconnecting");
            p.expect(move |v| v["worker"] == a && v.get("server_closed").is_some(), "A's server closed by the disconnect");
        }
    }
    p.cmd(&format!("send {b} {{\"drip\":1}}"), "sent");
    let per_pid = collect(handles, &p);
    assert_eq!(per_pid.keys().copied().collect::<Vec<_>>(), vec![b_pid], "only B answers");
    assert_eq!(per_pid[&b_pid].len(), N);
    // A's listener stays in the group, served by the primary until someone takes it over.
    for i in 0..8 {
        assert_eq!(ask(port, &format!("after{i}")).unwrap_or_else(|e| panic!("{e}\n{}", output(&p))).pid, b_pid);
    }
}

#[test]
fn killed_worker_loses_no_client() {
    nothing_lost(Leave::Kill);
}

#[test]
fn worker_closing_its_server_loses_no_client() {
    nothing_lost(Leave::Close);
}

#[test]
fn disconnected_worker_loses_no_client() {
    nothing_lost(Leave::Disconnect);
}

/// A worker dies; its replacement takes its listener over (still two listeners on the port,
/// not three) and answers its share again.
#[test]
fn a_replacement_takes_the_orphaned_listener_over() {
    let mut p = Proc::fixture(&[POLICY]);
    let (a, _, port, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    let (_, b_pid, _, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    p.cmd(&format!("kill {a} 9"), "killed");
    p.event("exit", a);
    assert_eq!(listeners(port).0, 2, "the dead worker's listener stays (the primary's copy)");
    let (_, c_pid, _, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    assert_eq!(listeners(port).0, 2, "taken over, not a third one");
    let per_pid = collect(clients(port, 40, "c").0, &p);
    assert!(per_pid.contains_key(&c_pid) && per_pid.contains_key(&b_pid), "both answer: {:?}", per_pid.keys());
}

/// Unmodified Node workers (tests/node/worker_http.js) take their listener as a shared
/// handle; when one is killed, what the kernel hashes to its listener reaches the other
/// through Node's `newconn` (a Node worker takes one for a shared server too).
#[test]
fn node_workers_take_their_listeners_and_a_dead_ones_is_served() {
    let script = root().join("tests/node/worker_http.js");
    let mut p = Proc::fixture(&[POLICY]);
    p.cmd(&format!("setup node {}", script.display()), "setup");
    let mut ports = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..2 {
        let (id, pid) = p.fork("PORT=0");
        let l = p.event("listening", id);
        ports.push(l["port"].as_u64().expect("port") as u16);
        pids.push(pid);
    }
    let port = ports[0];
    assert_eq!(ports[1], port);
    assert_eq!(listeners(port).0, 2, "one listener per Node worker");
    let before = collect(clients(port, 30, "n").0, &p);
    assert_eq!(before.len(), 2, "both Node workers answer: {:?}", before.keys());
    p.cmd("kill 1 9", "killed");
    let e: Value = p.event("exit", 1);
    assert_eq!(e["signal"], 9, "{e}");
    let after: BTreeMap<i32, _> = collect(clients(port, 30, "m").0, &p);
    assert_eq!(after.keys().copied().collect::<Vec<_>>(), vec![pids[1]], "every connection reached the survivor");
}
