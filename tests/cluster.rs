//! Integration tests with real processes: the fixture primary (examples/fixture.rs) forks
//! fixture workers; the tests connect to the served port and watch the primary's events.

mod common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::time::Duration;

use common::{Proc, fetch_pid, free_port};
use serde_json::Value;

fn listening_port(p: &mut Proc, id: u64) -> u16 {
    let ev = p.event("listening", id);
    ev["port"].as_u64().expect("port") as u16
}

#[test]
fn fork_online_listening_with_nodes_payload() {
    let mut p = Proc::fixture(&[]);
    let (id1, pid1) = p.fork("");
    let (id2, _) = p.fork("");
    assert_eq!((id1, id2), (1, 2), "worker ids count from 1 as in Node");
    let online = p.event("online", id1);
    assert_eq!(online["pid"], pid1);
    let l1 = p.event("listening", id1);
    let l2 = p.event("listening", id2);
    assert_eq!(l1["address"], "127.0.0.1");
    assert_eq!(l1["addressType"], 4);
    assert_ne!(l1["port"], 0, "listening reports the real port, not 0");
    assert_eq!(l1["port"], l2["port"], "every worker's first listen(0) shares one port");
    let c = p.cmd("count", "count");
    assert_eq!(c["ids"], serde_json::json!([1, 2]));
}

#[test]
fn round_robin_gives_each_of_three_workers_its_share() {
    let mut p = Proc::fixture(&[]);
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(p.fork("").1);
    }
    let port = listening_port(&mut p, 1);
    for id in 2..=3 {
        assert_eq!(listening_port(&mut p, id), port);
    }
    let mut served: HashMap<i32, usize> = HashMap::new();
    for _ in 0..30 {
        *served.entry(fetch_pid(port)).or_default() += 1;
    }
    for pid in &pids {
        let n = served.get(pid).copied().unwrap_or(0);
        assert!((8..=12).contains(&n), "worker {pid} served {n} of 30: {served:?}");
    }
    assert_eq!(served.len(), 3, "only our workers answer: {served:?}");
}

#[test]
fn exit_code_and_signal_are_reported() {
    let mut p = Proc::fixture(&[]);
    let (id, pid) = p.fork("FIXTURE_MODE=exit:7");
    p.event("disconnect", id);
    let ex = p.event("exit", id);
    assert_eq!((ex["pid"].as_i64(), ex["code"].as_i64(), ex["signal"].as_i64()), (Some(pid as i64), Some(7), Some(0)));
    assert_eq!(ex["ead"], false);

    let (id, _) = p.fork("FIXTURE_MODE=idle");
    p.event("online", id);
    assert_eq!(p.cmd(&format!("kill {id} 9"), "killed")["killed"], id.to_string());
    let ex = p.event("exit", id);
    assert_eq!((ex["code"].as_i64(), ex["signal"].as_i64()), (Some(-1), Some(9)));
    assert_eq!(p.cmd("count", "count")["count"], 0, "dead and disconnected workers leave the table");
    let again = p.cmd(&format!("kill {id} 9"), "error");
    assert_eq!(again["error"], -libc::ESRCH, "kill of a dead worker is ESRCH");
}

#[test]
fn primary_bind_error_reaches_the_worker() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork(&format!("FIXTURE_PORT={port}"));
    let r = p.expect(|v| v["worker"] == id && v.get("error").is_some(), "the worker's bind error");
    assert_eq!(r["error"], -libc::EADDRINUSE);
    assert!(r["message"].as_str().unwrap().contains(&port.to_string()), "{r}");
    // The key was dropped: once the port is free, another worker binds it.
    drop(taken);
    let (id2, _) = p.fork(&format!("FIXTURE_PORT={port}"));
    assert_eq!(listening_port(&mut p, id2), port);
}

#[test]
fn invalid_server_requests_fail_cleanly_in_the_worker() {
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork("FIXTURE_PORT=70000");
    let r = p.expect(|v| v["worker"] == id && v.get("error").is_some(), "invalid port error");
    assert_eq!(r["error"], -libc::EINVAL);
    let (id, _) = p.fork("FIXTURE_ADDR=not..an..address");
    let r = p.expect(|v| v["worker"] == id && v.get("error").is_some(), "invalid address error");
    assert_eq!(r["error"], -libc::EINVAL);
}

#[test]
fn fork_is_refused_in_a_worker() {
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork("FIXTURE_MODE=tryfork");
    let r = p.expect(|v| v["worker"] == id && v.get("tryfork").is_some(), "tryfork result");
    assert_eq!(r["tryfork"], cluster::testing::capi::error::CLUSTER_E_WRONG_ROLE);
}

/// `docs/design.md` §5: a connection handed to a worker that dies before taking it goes to another
/// worker. Node v20 leaks it (the client hangs).
#[test]
fn connection_of_a_dying_worker_is_served_by_another() {
    let mut p = Proc::fixture(&[]);
    let (stuck, stuck_pid) = p.fork("FIXTURE_MODE=noaccept");
    let port = listening_port(&mut p, stuck);
    // With only the stuck worker attached, the next connection is handed to it.
    let client = std::thread::spawn(move || common::fetch(port));
    std::thread::sleep(Duration::from_millis(300));
    let (good, good_pid) = p.fork("");
    assert_eq!(listening_port(&mut p, good), port);
    // The good worker serves new connections meanwhile.
    assert_eq!(fetch_pid(port), good_pid);
    p.cmd(&format!("kill {stuck} 9"), "killed");
    p.event("exit", stuck);
    let answer = client.join().unwrap().expect("the client of the dead worker is answered");
    assert_eq!(answer.trim().parse::<i32>().unwrap(), good_pid, "not {stuck_pid}");
}

/// A worker stopped with SIGSTOP cannot ack; its in-flight connection and everything
/// behind it still gets answered once it is killed.
#[test]
fn sigstopped_worker_loses_no_client_when_killed() {
    let mut p = Proc::fixture(&[]);
    let (a, a_pid) = p.fork("");
    let port = listening_port(&mut p, a);
    let (b, b_pid) = p.fork("");
    listening_port(&mut p, b);
    // Every thread of A stopped before the clients connect (kill returns before they are:
    // a connection A's program received first would be its own, and die with it).
    let _cont = common::stop(a_pid);
    let clients: Vec<_> = (0..6).map(|_| std::thread::spawn(move || common::fetch(port))).collect();
    std::thread::sleep(Duration::from_millis(300));
    p.cmd(&format!("kill {a} 9"), "killed");
    p.event("exit", a);
    for c in clients {
        let pid: i32 = c.join().unwrap().expect("answered").trim().parse().unwrap();
        assert_eq!(pid, b_pid);
    }
}

fn hostile(kind: &str) -> (Proc, u16, i32) {
    let mut p = Proc::fixture(&[]);
    let (good, good_pid) = p.fork("");
    let port = listening_port(&mut p, good);
    let (bad, _) = p.fork(&format!("FIXTURE_MODE=raw:{kind}"));
    let err = p.event("error", bad);
    assert_eq!(err["code"], cluster::testing::capi::error::CLUSTER_E_PROTOCOL, "{err}");
    assert!(!err["message"].as_str().unwrap().is_empty());
    p.event("disconnect", bad);
    (p, port, good_pid)
}

#[test]
fn malformed_json_closes_only_that_workers_channel() {
    let (_p, port, good) = hostile("badjson");
    assert_eq!(fetch_pid(port), good, "the other worker still serves");
}

#[test]
fn blank_line_closes_only_that_workers_channel() {
    let (_p, port, good) = hostile("blank");
    assert_eq!(fetch_pid(port), good);
}

#[test]
fn oversized_line_closes_only_that_workers_channel() {
    let (_p, port, good) = hostile("oversize");
    assert_eq!(fetch_pid(port), good);
}

#[test]
fn fd_without_node_handle_closes_only_that_workers_channel() {
    let (mut p, port, good) = hostile("fdnohandle");
    assert_eq!(fetch_pid(port), good);
    // The stray fd (/dev/null) was closed, not kept.
    let inherited = p.inherited_fds();
    let fds = p.cmd("fds", "primary_fds");
    let leaked = fds["primary_fds"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["target"] == "/dev/null" && !inherited.contains(&f["fd"].as_i64().unwrap()));
    assert!(!leaked, "primary kept the stray fd: {fds}");
}

#[test]
fn nonsense_query_server_gets_an_error_reply() {
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork("FIXTURE_MODE=raw:badquery");
    let r = p.expect(|v| v.get("worker_raw_reply").is_some(), "raw reply");
    let reply: Value = serde_json::from_str(r["worker_raw_reply"].as_str().unwrap().trim()).unwrap();
    assert_eq!(reply["cmd"], "NODE_CLUSTER");
    assert_eq!(reply["ack"], 1);
    assert_eq!(reply["errno"], -libc::EINVAL);
    p.event("error", id);
}

#[test]
fn primary_holds_no_leaked_fd_and_all_are_cloexec() {
    let mut p = Proc::fixture(&[]);
    // Warm up: the distributor's fds (epoll, eventfds) exist after the first fork.
    let (w, _) = p.fork("FIXTURE_MODE=idle");
    p.event("online", w);
    p.cmd(&format!("kill {w} 9"), "killed");
    p.event("exit", w);
    let before = p.cmd("fds", "primary_fds")["primary_fds"].clone();

    let (a, _) = p.fork("FIXTURE_MODE=fds");
    let port = listening_port(&mut p, a);
    let (b, _) = p.fork("");
    listening_port(&mut p, b);
    for _ in 0..6 {
        fetch_pid(port);
    }
    // Whoever ran the tests may have left fds without CLOEXEC; those pass through to the
    // workers as they would with Node. Everything else must be CLOEXEC.
    let inherited = p.inherited_fds();
    let ours = |f: &Value| {
        let fd = f["fd"].as_i64().unwrap();
        fd > 2 && !inherited.contains(&fd)
    };
    let wr = p.expect(|v| v["worker"] == a && v.get("fds").is_some(), "worker fd report");
    for f in wr["fds"].as_array().unwrap() {
        assert!(!ours(f) || f["cloexec"] == true, "worker fd {f} is not CLOEXEC");
    }
    assert!(wr["fds"].as_array().unwrap().iter().any(|f| f["fd"] == 3 && f["cloexec"] == true), "channel fd 3 made CLOEXEC: {wr}");
    let during = p.cmd("fds", "primary_fds")["primary_fds"].clone();
    for f in during.as_array().unwrap() {
        assert!(!ours(f) || f["cloexec"] == true, "primary fd {f} is not CLOEXEC");
    }
    for id in [a, b] {
        p.cmd(&format!("kill {id} 9"), "killed");
        p.event("exit", id);
    }
    let after = p.cmd("fds", "primary_fds")["primary_fds"].clone();
    let nums = |v: &Value| v.as_array().unwrap().iter().map(|f| f["fd"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(nums(&after), nums(&before), "primary fds before {before} after {after}");
}

#[test]
fn workers_exit_when_the_primary_dies() {
    let mut p = Proc::fixture(&[]);
    let (a, pid_a) = p.fork("FIXTURE_MODE=idle");
    let (b, pid_b) = p.fork("");
    p.event("online", a);
    listening_port(&mut p, b);
    common::kill_pid(p.pid());
    let _ = p.child.wait();
    for pid in [pid_a, pid_b] {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // A dead child of a dead parent is reaped by init; signal 0 then fails with ESRCH.
        // SAFETY: kill with signal 0 only checks for existence.
        while unsafe { libc::kill(pid, 0) } == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "worker {pid} outlived its primary");
    }
}

#[test]
fn a_port_in_use_by_nobody_else_is_free_after_the_last_worker_leaves() {
    let port = free_port();
    let mut p = Proc::fixture(&[]);
    let (a, _) = p.fork(&format!("FIXTURE_PORT={port}"));
    assert_eq!(listening_port(&mut p, a), port);
    p.cmd(&format!("kill {a} 9"), "killed");
    p.event("exit", a);
    // The primary closed the listening socket with its last worker.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Err(_) => break,
            Ok(_) if std::time::Instant::now() > deadline => panic!("port {port} still accepts"),
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// libcluster workers may take several connections in flight (opt-in); the least-loaded
/// policy then keeps new connections away from a worker that does not accept.
#[test]
fn least_loaded_keeps_connections_away_from_a_stuck_worker() {
    let mut p = Proc::fixture(&[]);
    p.cmd("inflight 4", "inflight");
    p.cmd("leastloaded", "leastloaded");
    let (stuck, _) = p.fork("FIXTURE_MODE=noaccept");
    let port = listening_port(&mut p, stuck);
    let (good, good_pid) = p.fork("");
    listening_port(&mut p, good);
    // At most one connection (the first, when both were equally idle) can go to the stuck
    // worker while it lives; with plain round-robin it would hold up to four.
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..8 {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(common::fetch(port));
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut answered = Vec::new();
    while answered.len() < 7 {
        let r = rx.recv_timeout(common::TIMEOUT).expect("7 of 8 answered while the stuck worker lives");
        answered.push(r.expect("answered").trim().parse::<i32>().unwrap());
    }
    p.cmd(&format!("kill {stuck} 9"), "killed");
    while answered.len() < 8 {
        let r = rx.recv_timeout(common::TIMEOUT).expect("the last one after the kill (nothing lost)");
        answered.push(r.expect("answered").trim().parse::<i32>().unwrap());
    }
    assert!(answered.iter().all(|&pid| pid == good_pid), "{answered:?}");
}
