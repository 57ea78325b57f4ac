//! The fast lane (issue 10) with real processes, sockets and fds:
//!
//! * negotiation: a libcluster worker under the libcluster primary receives its round-robin
//!   connections on a `SOCK_SEQPACKET` lane (its server fd is that socket); with
//!   `LIBCLUSTER_FAST_LANE=0` in the primary's environment it gets Node's path (an eventfd);
//!   each worker's connections come with the blocking flag it asked for, on both paths;
//! * never with Node peers: a real Node primary gives our worker no lane (it asked, Node
//!   ignored it), and our primary sends a real Node worker no libcluster field, even when
//!   that worker shares its server with a libcluster worker on the lane;
//! * nothing lost: connections waiting in a worker's queue (lane or Node path) reach the
//!   other worker when the first is killed, closes its server or is disconnected, and when
//!   it stalls (SIGSTOP) on the lane.
//!
//! The fixture (examples/fixture.rs) runs the primary and the libcluster workers. Clients
//! send one request line and read to EOF; the fixture's `line` and `drip` workers answer
//! `pid=<pid> nb=<0|1> line=<the request line>`. Every wait is bounded; every process a test
//! starts is killed by pid on drop (`common::Proc`), pass or fail.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::clients::{CLIENT_WAIT, ask, clients, collect, fork_server, output, server_line, wait_for};
use common::{Proc, fixture_bin, root, stop};
use serde_json::Value;

fn lane_env(on: bool) -> [(&'static str, &'static str); 1] {
    [("LIBCLUSTER_FAST_LANE", if on { "1" } else { "0" })]
}

/// The server fd a fixture worker gets from our primary: the lane's seqpacket socket, or
/// Node's path (the eventfd its channel reader feeds).
fn expected_kind(lane: bool) -> &'static str {
    if lane { "seqpacket" } else { "eventfd" }
}

// ---------------------------------------------------------------------------------------
// 1. Negotiation between libcluster peers.

/// Two libcluster workers under the libcluster primary: each server fd is the fast lane (an
/// AF_UNIX SOCK_SEQPACKET socket, not the eventfd of Node's path), sequential connections
/// reach both, and concurrent ones are all answered.
#[test]
fn libcluster_worker_gets_the_fast_lane() {
    let mut p = Proc::fixture(&[]);
    let (_, a_pid, port, a_kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    let (_, b_pid, b_port, b_kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    assert_eq!(b_port, port, "one shared round-robin port");
    assert_eq!((a_kind.as_str(), b_kind.as_str()), ("seqpacket", "seqpacket"), "the fast lane is the server fd");
    let mut seen = BTreeMap::new();
    for i in 0..6 {
        let a = ask(port, &format!("seq{i}")).unwrap_or_else(|e| panic!("request {i}: {e}\n{}", output(&p)));
        assert_eq!(a.line.as_deref(), Some(format!("GET /seq{i} HTTP/1.1").as_str()));
        assert_eq!(a.nb, Some(false), "a blocking server's connections come blocking");
        *seen.entry(a.pid).or_insert(0) += 1;
    }
    // Both get connections (the exact share depends on how soon each worker's previous
    // connection is seen taken; not asserted).
    assert!(seen.contains_key(&a_pid) && seen.contains_key(&b_pid), "both workers answered: {seen:?}");
    let (handles, _) = clients(port, 20, "par");
    let per_pid = collect(handles, &p);
    assert!(per_pid.keys().all(|pid| *pid == a_pid || *pid == b_pid), "{per_pid:?}");
}

/// `LIBCLUSTER_FAST_LANE=0` in the primary's environment: the same workers get Node's path
/// (the server fd is an eventfd fed by the channel reader), and connections still work.
#[test]
fn fast_lane_off_gives_nodes_path() {
    let mut p = Proc::fixture(&lane_env(false));
    let (_, a_pid, port, a_kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    let (_, b_pid, _, b_kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    assert_eq!((a_kind.as_str(), b_kind.as_str()), ("eventfd", "eventfd"), "no lane when it is off");
    let mut seen = BTreeMap::new();
    for i in 0..6 {
        let a = ask(port, &format!("seq{i}")).unwrap_or_else(|e| panic!("request {i}: {e}\n{}", output(&p)));
        assert_eq!(a.nb, Some(false));
        *seen.entry(a.pid).or_insert(0) += 1;
    }
    // Both get connections (the exact share depends on how soon each worker's previous
    // connection is seen taken; not asserted).
    assert!(seen.contains_key(&a_pid) && seen.contains_key(&b_pid), "both workers answered: {seen:?}");
    let (handles, _) = clients(port, 20, "par");
    collect(handles, &p);
}

/// Bit 2 of `libclusterLane`: a worker that wants non-blocking connections gets them, its
/// blocking neighbour on the same server gets blocking ones (the primary accepts once for
/// both), on the lane and on Node's path.
/// `nb_first`: the non-blocking worker attaches first (the primary then accepts
/// non-blocking and makes the other's connections blocking).
fn flags_per_worker(lane: bool, nb_first: bool) {
    let mut p = Proc::fixture(&lane_env(lane));
    let (blocking, nonblocking) = ("FIXTURE_MODE=line", "FIXTURE_MODE=line FIXTURE_NONBLOCK=1");
    let (blocking_pid, nb_pid, port, k1, k2) = if nb_first {
        let (_, nb_pid, port, k2) = fork_server(&mut p, nonblocking);
        let (_, blocking_pid, _, k1) = fork_server(&mut p, blocking);
        (blocking_pid, nb_pid, port, k1, k2)
    } else {
        let (_, blocking_pid, port, k1) = fork_server(&mut p, blocking);
        let (_, nb_pid, _, k2) = fork_server(&mut p, nonblocking);
        (blocking_pid, nb_pid, port, k1, k2)
    };
    assert_eq!((k1.as_str(), k2.as_str()), (expected_kind(lane), expected_kind(lane)));
    let mut seen = BTreeMap::new();
    for i in 0..8 {
        let a = ask(port, &format!("f{i}")).unwrap_or_else(|e| panic!("request {i}: {e}\n{}", output(&p)));
        let want_nb = if a.pid == nb_pid {
            true
        } else {
            assert_eq!(a.pid, blocking_pid);
            false
        };
        assert_eq!(a.nb, Some(want_nb), "connection {i} to pid {} (non-blocking worker: {nb_pid})", a.pid);
        *seen.entry(a.pid).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both answered: {seen:?}");
}

#[test]
fn connections_come_with_each_workers_flags_on_the_lane() {
    flags_per_worker(true, false);
    flags_per_worker(true, true);
}

#[test]
fn connections_come_with_each_workers_flags_on_nodes_path() {
    flags_per_worker(false, false);
    flags_per_worker(false, true);
}

/// The lane is for round-robin servers only: with `NODE_CLUSTER_SCHED_POLICY=none` the
/// worker gets the shared listening socket (its server fd is the epoll fd watching it).
#[test]
fn shared_handles_get_no_lane() {
    let mut p = Proc::fixture(&[("NODE_CLUSTER_SCHED_POLICY", "none")]);
    let (_, pid, port, kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    assert_eq!(kind, "epoll", "a shared handle's server fd");
    assert_eq!(ask(port, "x").unwrap_or_else(|e| panic!("{e}\n{}", output(&p))).pid, pid);
}

// ---------------------------------------------------------------------------------------
// 2. Never with Node peers.

/// A real Node primary (round-robin) runs two libcluster workers: they ask for the lane
/// (`libclusterLane` with bit 1 in `queryServer`), Node ignores it, so their server fds are
/// Node's path (eventfd), and every connection is answered by them.
#[test]
fn node_primary_gives_our_worker_no_lane() {
    let status = Command::new("node").arg("--version").stdout(std::process::Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "this test needs Node.js v20 (`node`) on PATH");
    let mut cmd = Command::new("node");
    cmd.arg(root().join("tests/node/lane_primary.js"))
        .arg(fixture_bin())
        .arg("2")
        .arg(serde_json::json!({"FIXTURE_MODE": "line"}).to_string())
        .env_remove("NODE_CLUSTER_SCHED_POLICY");
    let mut p = Proc::spawn(cmd);
    let mut pids = Vec::new();
    for id in 1..=2u64 {
        let f = p.event("fork", id);
        let pid = f["pid"].as_i64().unwrap() as i32;
        p.track(pid);
        pids.push(pid);
    }
    let mut port = 0;
    for id in 1..=2u64 {
        let q = p.expect(move |v| v["event"] == "internal" && v["id"] == id && v["msg"]["act"] == "queryServer", "queryServer");
        let lane = q["msg"]["libclusterLane"].as_i64().unwrap_or_else(|| panic!("our worker asks for the lane: {q}"));
        assert_eq!(lane & 1, 1, "{q}");
        let (wport, kind) = server_line(&mut p, id);
        assert_eq!(kind, "eventfd", "Node's primary gives no lane: worker {id}'s server fd");
        let l = p.event("listening", id);
        assert_eq!(l["port"].as_u64(), Some(wport as u64), "{l}");
        port = wport;
    }
    let mut seen = BTreeMap::new();
    for i in 0..6 {
        let a = ask(port, &format!("seq{i}")).unwrap_or_else(|e| panic!("request {i}: {e}\n{}", output(&p)));
        assert_eq!(a.line.as_deref(), Some(format!("GET /seq{i} HTTP/1.1").as_str()));
        *seen.entry(a.pid).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both workers answered: {seen:?}");
    let (handles, _) = clients(port, 12, "par");
    let per_pid = collect(handles, &p);
    assert!(per_pid.keys().all(|pid| pids.contains(pid)), "{per_pid:?}");
}

/// Our primary runs an unmodified Node worker (tests/node/lane_worker.js) next to a
/// libcluster worker on the same server: the libcluster worker is on the lane, the Node
/// worker on Node's path; both answer; and no message the Node worker received (the
/// `queryServer` reply, each `newconn`, ...) carries a libcluster field or a handle with the
/// reply.
#[test]
fn our_primary_gives_a_node_worker_no_lane() {
    let mut p = Proc::fixture(&[]);
    p.cmd(&format!("setup node {}", root().join("tests/node/lane_worker.js").display()), "setup");
    let (nid, npid) = p.fork("PORT=0");
    let l = p.event("listening", nid);
    let port = l["port"].as_u64().unwrap() as u16;
    p.cmd(&format!("setup {}", fixture_bin().display()), "setup");
    let (_, cpid, cport, ckind) = fork_server(&mut p, "FIXTURE_MODE=line");
    assert_eq!(cport, port, "the libcluster worker shares the Node worker's server");
    assert_eq!(ckind, "seqpacket", "the libcluster worker is on the lane next to a Node worker");

    let (mut node_hits, mut c_hits) = (0, 0);
    for i in 0..8 {
        let a = ask(port, &format!("m{i}")).unwrap_or_else(|e| panic!("request {i}: {e}\n{}", output(&p)));
        if a.pid == npid {
            node_hits += 1;
        } else {
            assert_eq!(a.pid, cpid);
            c_hits += 1;
        }
    }
    assert!(node_hits > 0 && c_hits > 0, "both answered: node {node_hits}, libcluster {c_hits}");
    let (handles, _) = clients(port, 12, "par");
    collect(handles, &p);

    // Everything the Node worker received, as Node parsed it: its queryServer reply, then
    // one newconn per connection it served (at least `node_hits`).
    let newconns =
        |p: &Proc| p.lines.lock().unwrap().iter().filter(|l| l.contains("\"node_internal\"") && l.contains("\"newconn\"")).count();
    let deadline = Instant::now() + common::TIMEOUT;
    while newconns(&p) < node_hits && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let received: Vec<Value> = p
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("node_internal").is_some())
        .collect();
    let reply = received
        .iter()
        .find(|v| v["node_internal"].get("key").is_some() && v["node_internal"].get("act").is_none())
        .unwrap_or_else(|| panic!("the Node worker printed its queryServer reply:\n{}", output(&p)));
    assert_eq!(reply["handle"], false, "a round-robin reply comes without an fd (no lane): {reply}");
    assert!(reply["node_internal"]["errno"].is_null(), "{reply}");
    assert!(newconns(&p) >= node_hits, "one newconn per connection the Node worker served:\n{}", output(&p));
    for v in &received {
        let text = v["node_internal"].to_string();
        assert!(!text.contains("libcluster"), "our primary sent a Node worker a libcluster field: {text}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. Nothing lost when a worker with connections waiting goes away.

#[derive(Clone, Copy, Debug)]
enum Leave {
    /// SIGKILL (through the primary's `kill`).
    Kill,
    /// The worker closes its server (`close{key}`) and stays alive.
    Close,
    /// The primary's `disconnect ID`.
    Disconnect,
}

/// Worker A holds connections in its queue (on the lane it takes one every 400 ms, so it
/// never looks stalled; on Node's path it takes none), worker B answers at once. 20
/// clients; once B has answered some, A leaves; every client is answered, none reset.
fn nothing_lost(lane: bool, leave: Leave) {
    nothing_lost_with(&lane_env(lane), lane, leave);
}

fn nothing_lost_with(env: &[(&str, &str)], lane: bool, leave: Leave) {
    const N: usize = 20;
    let mut p = Proc::fixture(env);
    let a_mode = if lane { "drip:400" } else { "drip:0" };
    let (a, a_pid, port, a_kind) = fork_server(&mut p, &format!("FIXTURE_MODE={a_mode}"));
    let (_, b_pid, _, b_kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    assert_eq!((a_kind.as_str(), b_kind.as_str()), (expected_kind(lane), expected_kind(lane)));

    let (handles, answered) = clients(port, N, "c");
    let before = wait_for(&answered, 5);
    assert!(before >= 5, "worker B answered only {before} of {N} clients:\n{}", output(&p));
    match leave {
        Leave::Kill => {
            // Stop A taking connections (so none is cut mid-answer), then kill it.
            p.cmd(&format!("send {a} {{\"hold\":1}}"), "sent");
            p.expect(move |v| v["worker"] == a && v.get("holding").is_some(), "A holding");
        }
        Leave::Close | Leave::Disconnect => {}
    }
    let pending = N - answered.load(Ordering::SeqCst);
    // The test needs A to hold connections when it leaves (it held about half of them).
    assert!(pending > 0, "every client was answered before worker A left; nothing to test");
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
    let per_pid = collect(handles, &p);
    let from_b = per_pid.get(&b_pid).map_or(0, Vec::len);
    let from_a = per_pid.get(&a_pid).map_or(0, Vec::len);
    assert_eq!(from_a + from_b, N, "answers from unknown pids: {:?}", per_pid.keys());
    assert!(from_b >= 5, "B answered its share and A's waiting clients: A {from_a}, B {from_b}, waiting when A left {pending}");
    // Worker B goes on serving the port alone.
    let a2 = ask(port, "after").unwrap_or_else(|e| panic!("after A left: {e}\n{}", output(&p)));
    assert_eq!(a2.pid, b_pid);
    if matches!(leave, Leave::Close) {
        // A is alive, its server closed: no connection is dealt to it any more.
        for i in 0..4 {
            assert_eq!(ask(port, &format!("after{i}")).expect("answer").pid, b_pid);
        }
    }
}

#[test]
fn lane_killed_worker_loses_no_client() {
    nothing_lost(true, Leave::Kill);
}

#[test]
fn lane_worker_closing_its_server_loses_no_client() {
    nothing_lost(true, Leave::Close);
}

#[test]
fn lane_disconnected_worker_loses_no_client() {
    nothing_lost(true, Leave::Disconnect);
}

/// A lane window of 2: A's queue holds 2, the rest wait in the primary (and the kernel's
/// backlog) for room; when A is killed all of them still reach B.
#[test]
fn lane_small_window_killed_worker_loses_no_client() {
    nothing_lost_with(&[("LIBCLUSTER_FAST_LANE", "1"), ("LIBCLUSTER_LANE_WINDOW", "2")], true, Leave::Kill);
}

#[test]
fn node_path_killed_worker_loses_no_client() {
    nothing_lost(false, Leave::Kill);
}

#[test]
fn node_path_worker_closing_its_server_loses_no_client() {
    nothing_lost(false, Leave::Close);
}

#[test]
fn node_path_disconnected_worker_loses_no_client() {
    nothing_lost(false, Leave::Disconnect);
}

// ---------------------------------------------------------------------------------------
// 4. A stalled worker.

/// Worker A is stopped (SIGSTOP, and left stopped): the connections dealt into its lane are
/// taken back once it has made no progress for about a second, and worker B answers every
/// client within `CLIENT_WAIT`.
#[test]
fn stalled_worker_queue_goes_to_the_other_worker() {
    const N: usize = 20;
    let mut p = Proc::fixture(&[]);
    let (_, a_pid, port, a_kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    let (_, b_pid, _, b_kind) = fork_server(&mut p, "FIXTURE_MODE=line");
    assert_eq!((a_kind.as_str(), b_kind.as_str()), ("seqpacket", "seqpacket"));
    let _cont = stop(a_pid);
    let (handles, _) = clients(port, N, "s");
    let per_pid = collect(handles, &p);
    assert_eq!(per_pid.keys().copied().collect::<Vec<_>>(), vec![b_pid], "the stopped worker answered nothing");
    assert_eq!(per_pid[&b_pid].len(), N);
}

/// A stalled worker that resumes (SIGCONT) is dealt connections again: after its queue was
/// taken back it gets one at a time, and once it takes that one, its share. Nothing is
/// answered twice or lost on the way.
#[test]
fn stalled_worker_that_resumes_serves_again() {
    const N: usize = 12;
    let mut p = Proc::fixture(&[]);
    let (_, a_pid, port, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    let (_, b_pid, _, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    let cont = stop(a_pid);
    let (handles, _) = clients(port, N, "s");
    let per_pid = collect(handles, &p);
    assert_eq!(per_pid.get(&b_pid).map(Vec::len), Some(N), "{per_pid:?}");
    drop(cont);
    // Sequential requests reach A again once it moves: a suspect worker is passed over but
    // for a probe now and then (about a second apart), and once it takes one it is back.
    // Bounded in count and time.
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + CLIENT_WAIT;
    for i in 0..2000 {
        let a = ask(port, &format!("r{i}")).unwrap_or_else(|e| panic!("request {i}: {e}\n{}", output(&p)));
        assert!(a.pid == a_pid || a.pid == b_pid, "{a:?}");
        *seen.entry(a.pid).or_insert(0) += 1;
        if seen.get(&a_pid).is_some_and(|&n| n >= 3) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen.get(&a_pid).is_some_and(|&n| n >= 3), "the resumed worker is dealt connections again: {seen:?} (A {a_pid})");
    let (handles, _) = clients(port, N, "t");
    collect(handles, &p);
}

/// A stalled worker under steady traffic: worker A stays stopped while a burst of 4
/// clients arrives (about half are dealt into A's lane), then others keep coming (3 at a
/// time, one after another) until the burst is answered. What A held is taken back after
/// about a second and must reach worker B, rather than be dealt back to the stopped worker
/// again and again; every client gets its answer from B within `CLIENT_WAIT`.
#[test]
fn stalled_worker_under_steady_traffic_starves_no_client() {
    let mut p = Proc::fixture(&[]);
    let (_, a_pid, port, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    let (_, b_pid, _, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    let _cont = stop(a_pid);
    let (burst, _) = clients(port, 4, "burst");
    let done = Arc::new(AtomicUsize::new(0));
    // Steady traffic until the burst is answered (bounded: a deadline and a count).
    let deadline = Instant::now() + CLIENT_WAIT + Duration::from_secs(2);
    let background: Vec<_> = (0..3)
        .map(|k| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for i in 0..2000 {
                    if done.load(Ordering::SeqCst) == 4 || Instant::now() >= deadline {
                        break;
                    }
                    out.push((format!("bg{k}-{i}"), ask(port, &format!("bg{k}-{i}"))));
                    std::thread::sleep(Duration::from_millis(20));
                }
                out
            })
        })
        .collect();
    let mut failures = Vec::new();
    for (tag, h) in burst {
        match h.join().expect("client thread") {
            Ok(a) if a.pid == b_pid => {}
            Ok(a) => failures.push(format!("{tag}: answered by {}", a.pid)),
            Err(e) => failures.push(format!("{tag}: {e}")),
        }
        done.fetch_add(1, Ordering::SeqCst);
    }
    let mut answered = 0;
    for h in background {
        for (tag, r) in h.join().expect("client thread") {
            match r {
                Ok(a) if a.pid == b_pid => answered += 1,
                Ok(a) => failures.push(format!("{tag}: answered by {}", a.pid)),
                Err(e) => failures.push(format!("{tag}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "clients without an answer from B ({answered} others answered):\n{}", failures.join("\n"));
}
