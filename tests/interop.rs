//! Interop with real Node.js v20 (`node` on PATH), both ways:
//!
//! * a real Node primary (`node:cluster`, tests/node/primary_runs_hello.js) runs libcluster
//!   C workers (target/examples/hello) through `process.execPath`;
//! * libcluster's primary (the fixture) runs unmodified Node cluster workers
//!   (tests/node/worker_http.js) through `setup node <script>`, alone or next to C workers.
//!
//! Every process is real, listens on 127.0.0.1 only, every wait is bounded (`common::TIMEOUT`
//! per expected line), and every pid a test learns is killed on drop, pass or fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Proc, TIMEOUT, http_get, root};
use serde_json::Value;

/// target/examples/hello, rebuilt with `make examples` once per test binary (make decides
/// whether it is stale against the library).
fn hello_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new("make").arg("-C").arg(root()).arg("examples").output().expect("run make");
            assert!(
                out.status.success(),
                "`make examples` failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let hello = root().join("target/examples/hello");
            assert!(hello.exists(), "{} missing after `make examples`", hello.display());
            hello
        })
        .clone()
}

fn node_script(name: &str) -> PathBuf {
    let p = root().join("tests/node").join(name);
    assert!(p.exists(), "{} missing", p.display());
    p
}

/// `node <script> <args>` as a `Proc` (its JSON lines parsed, every `pid` it prints tracked).
fn node(script: &str, args: &[&str]) -> Proc {
    let status = Command::new("node").arg("--version").stdout(std::process::Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "these tests need Node.js v20 (`node`) on PATH");
    let mut cmd = Command::new("node");
    cmd.arg(node_script(script)).args(args);
    Proc::spawn(cmd)
}

/// The position of the first output line matching `pred` (for order checks).
fn line_index(p: &Proc, pred: impl Fn(&Value) -> bool) -> Option<usize> {
    p.lines.lock().unwrap().iter().position(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v)))
}

fn output(p: &Proc) -> String {
    p.lines.lock().unwrap().join("\n")
}

/// True once `pid` no longer runs (gone, or a zombie nobody reaped yet).
fn pid_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if pid_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The fixture's `count`, polled (bounded) until it is `want`.
fn wait_count(p: &mut Proc, want: u64) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let c = p.cmd("count", "count");
        if c["count"] == want || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the Node primary with `n` hello workers; waits for fork, online and listening of
/// each. Returns (id → pid, the shared port).
fn node_primary_with_hello(p: &mut Proc, n: usize) -> (BTreeMap<u64, i64>, u16) {
    let mut pids = BTreeMap::new();
    for _ in 0..n {
        let f = p.expect(|v| v["event"] == "fork", "fork event from the Node primary");
        let (id, pid) = (f["id"].as_u64().unwrap(), f["pid"].as_i64().unwrap());
        p.track(pid as i32);
        pids.insert(id, pid);
    }
    assert_eq!(pids.len(), n, "distinct worker ids: {pids:?}");
    let mut ports = BTreeSet::new();
    for (&id, &pid) in &pids {
        let o = p.event("online", id);
        assert_eq!(o["pid"], pid, "online pid of worker {id}");
        let l = p.event("listening", id);
        assert_eq!(l["pid"], pid, "listening pid of worker {id}");
        assert_eq!(l["address"], "127.0.0.1", "listening address of worker {id}: {l}");
        assert_eq!(l["addressType"], 4, "listening addressType of worker {id}: {l}");
        let port = l["port"].as_u64().expect("listening port");
        assert!(port > 0 && port < 65536, "listening port {port}");
        ports.insert(port as u16);
    }
    assert_eq!(ports.len(), 1, "every worker listens on the same port: {ports:?}");
    (pids, *ports.iter().next().unwrap())
}

/// Reads `count` response lines (any request error fails the test); returns bodies per pid.
fn node_responses(p: &mut Proc, count: usize, pids: &BTreeMap<u64, i64>) -> BTreeMap<i64, usize> {
    let mut per_pid = BTreeMap::new();
    for _ in 0..count {
        let r = p.expect(|v| v["event"] == "response" || v["event"] == "request_error", "an HTTP response");
        assert_eq!(r["event"], "response", "request failed: {r}\noutput:\n{}", output(p));
        assert_eq!(r["status"], 200, "{r}");
        let body = r["body"].as_str().unwrap();
        let pid: i64 = body
            .strip_prefix("hello from worker ")
            .and_then(|s| s.strip_suffix('\n'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected body {body:?}"));
        assert!(pids.values().any(|&p| p == pid), "body from unknown pid {pid}: {pids:?}");
        *per_pid.entry(pid).or_insert(0) += 1;
    }
    per_pid
}

/// A real Node primary forks 3 libcluster C workers (process.execPath = hello), which share
/// one round-robin port; 9 sequential requests reach all 3; worker.kill() gives SIGTERM
/// exits; the primary then exits 0.
#[test]
fn node_primary_runs_c_workers() {
    let hello = hello_bin();
    let mut p = node("primary_runs_hello.js", &[hello.to_str().unwrap(), "3", "9", "auto"]);
    let (pids, _port) = node_primary_with_hello(&mut p, 3);

    let per_pid = node_responses(&mut p, 9, &pids);
    for pid in pids.values() {
        assert!(per_pid.contains_key(pid), "worker {pid} answered no request: {per_pid:?}");
    }
    p.expect(|v| v["event"] == "requests_done", "requests_done");

    for (&id, &pid) in &pids {
        let d = p.event("disconnect", id);
        assert_eq!(d["ead"], false, "disconnect of a killed worker: {d}");
        let e = p.event("exit", id);
        assert_eq!(e["pid"], pid);
        assert_eq!(e["signal"], "SIGTERM", "worker.kill() sends SIGTERM: {e}");
        assert_eq!(e["code"], Value::Null, "{e}");
        assert_eq!(e["ead"], false, "{e}");
    }
    p.expect(|v| v["event"] == "done", "done");
    let status = p.finish().expect("the Node primary exits");
    assert!(status.success(), "Node primary: {status}\n{}", output(&p));
    for &pid in pids.values() {
        assert!(pid_gone(pid as i32), "worker {pid} still runs");
    }
}

/// The Node primary exits without stopping its libcluster workers: each sees EOF on its
/// channel and exits by itself (Node's channel-loss rule, §7.5).
#[test]
fn node_primary_exit_ends_c_workers() {
    let hello = hello_bin();
    let mut p = node("primary_runs_hello.js", &[hello.to_str().unwrap(), "2", "0", "stdin"]);
    let (pids, _port) = node_primary_with_hello(&mut p, 2);
    p.cmd("get 2", "ack");
    let per_pid = node_responses(&mut p, 2, &pids);
    assert_eq!(per_pid.values().sum::<usize>(), 2);
    p.cmd("quit", "ack");
    let status = p.finish().expect("the Node primary exits");
    assert!(status.success(), "Node primary: {status}");
    for &pid in pids.values() {
        assert!(wait_gone(pid as i32), "worker {pid} outlived its Node primary");
    }
}

/// A real Node primary calls worker.disconnect() on libcluster C workers. Node's workers
/// close their servers (`close{key}`), close the channel and exit 0, so the primary sees
/// disconnect(ead=true) then exit(0, ead=true) (protocol doc §7.5, §8.2, §10.1 item 8).
/// Fails while the worker side ignores `{act:"disconnect"}` (no `close`, no EOF: the
/// primary waits forever).
#[test]
fn node_primary_disconnects_c_workers() {
    let hello = hello_bin();
    let mut p = node("primary_runs_hello.js", &[hello.to_str().unwrap(), "2", "4", "disconnect"]);
    let (pids, _port) = node_primary_with_hello(&mut p, 2);
    let per_pid = node_responses(&mut p, 4, &pids);
    assert_eq!(per_pid.len(), 2, "both workers answered: {per_pid:?}");
    p.expect(|v| v["event"] == "requests_done", "requests_done");
    for (&id, &pid) in &pids {
        // Like Node's workers, each closes its server (`close{key}`) before its channel.
        let c = p.expect(|v| v["event"] == "internal" && v["act"] == "close" && v["id"] == id, "close{key}");
        assert_eq!(c["key"], "127.0.0.1:0:4:undefined:0", "{c}");
        // Node's primary reports the channel's end as 'disconnect', except now and then
        // (about 1 run in 30) when it reports only the exit: the script then says
        // `no_disconnect` (a quirk of Node's primary, not of the bytes, which are checked
        // above and by the exit's `exitedAfterDisconnect`).
        let d = p.expect(|v| (v["event"] == "disconnect" || v["event"] == "no_disconnect") && v["id"] == id, "disconnect");
        if d["event"] == "disconnect" {
            assert_eq!(d["ead"], true, "disconnect after worker.disconnect(): {d}");
            assert!(
                line_index(&p, |v| v["event"] == "internal" && v["id"] == id)
                    < line_index(&p, |v| v["event"] == "disconnect" && v["id"] == id),
                "close{{key}} precedes the channel's end"
            );
        }
        let e = p.event("exit", id);
        assert_eq!(e["pid"], pid);
        assert_eq!(e["code"], 0, "a disconnected worker exits normally: {e}");
        assert_eq!(e["signal"], Value::Null, "{e}");
        assert_eq!(e["ead"], true, "{e}");
    }
    p.expect(|v| v["event"] == "done", "done");
    let status = p.finish().expect("the Node primary exits");
    assert!(status.success(), "Node primary: {status}");
}

/// The fixture's `fork` for a Node worker: (id, pid), after online, the worker's `{ready}`
/// user message and listening; returns the port too.
fn fork_node_worker(p: &mut Proc, env: &str) -> (u64, i32, u16) {
    let (id, pid) = p.fork(env);
    let o = p.event("online", id);
    assert_eq!(o["pid"], pid);
    let m = p.event("message", id);
    let data: Value = serde_json::from_str(m["data"].as_str().expect("message data")).expect("message JSON");
    assert_eq!(data, serde_json::json!({"ready": pid}), "user message from the Node worker");
    let l = p.event("listening", id);
    assert_eq!(l["pid"], pid);
    assert_eq!(l["address"], "127.0.0.1", "{l}");
    let port = l["port"].as_u64().expect("port") as u16;
    assert!(port > 0);
    assert!(
        line_index(p, |v| v["event"] == "message" && v["id"] == id) < line_index(p, |v| v["event"] == "listening" && v["id"] == id),
        "Node sends a message from the listen callback before `listening` (§7.1)"
    );
    (id, pid, port)
}

fn kill_and_expect_sigterm(p: &mut Proc, id: u64, pid: i32) {
    p.cmd(&format!("kill {id} 15"), "killed");
    let d = p.event("disconnect", id);
    assert_eq!(d["ead"], false, "{d}");
    let e = p.event("exit", id);
    assert_eq!(e["pid"], pid);
    assert_eq!(e["signal"], 15, "{e}");
    assert_eq!(e["ead"], false, "{e}");
    assert!(
        line_index(p, |v| v["event"] == "disconnect" && v["id"] == id) < line_index(p, |v| v["event"] == "exit" && v["id"] == id),
        "disconnect precedes exit"
    );
}

/// libcluster's primary runs two stock Node cluster+http workers (`setup node script`):
/// both come online, send a user message, listen on one shared port, answer HTTP in round
/// robin, and die by signal 15 on `kill`.
#[test]
fn c_primary_runs_node_workers() {
    let script = node_script("worker_http.js");
    let mut p = Proc::fixture(&[]);
    p.cmd(&format!("setup node {}", script.display()), "setup");
    let (id1, pid1, port1) = fork_node_worker(&mut p, "PORT=0");
    let (id2, pid2, port2) = fork_node_worker(&mut p, "PORT=0");
    assert_eq!(port1, port2, "PORT=0 gives every worker the same port");

    let mut seen = BTreeMap::new();
    for _ in 0..8 {
        let body = http_get(port1).expect("HTTP GET");
        let pid: i32 = body
            .strip_prefix("node worker ")
            .and_then(|s| s.strip_suffix('\n'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected body {body:?}"));
        assert!(pid == pid1 || pid == pid2, "answer from unknown pid {pid}");
        *seen.entry(pid).or_insert(0) += 1;
    }
    assert!(seen.contains_key(&pid1) && seen.contains_key(&pid2), "both Node workers answered: {seen:?}");

    kill_and_expect_sigterm(&mut p, id1, pid1);
    kill_and_expect_sigterm(&mut p, id2, pid2);
    let c = wait_count(&mut p, 0);
    assert_eq!(c["count"], 0, "{c}");
    assert!(p.finish().is_some_and(|s| s.success()), "fixture exits cleanly");
}

/// A Node worker calls cluster.worker.disconnect(): it sends close{key} and
/// exitedAfterDisconnect, waits for our ack, closes the channel and exits 0; the primary
/// reports disconnect(ead=true) then exit(0, ead=true) and forgets the worker.
#[test]
fn node_worker_voluntary_disconnect() {
    let script = node_script("worker_http.js");
    let mut p = Proc::fixture(&[]);
    p.cmd(&format!("setup node {}", script.display()), "setup");
    let (id, pid, _port) = fork_node_worker(&mut p, "PORT=0 NODE_WORKER_DISCONNECT=1");
    let d = p.event("disconnect", id);
    assert_eq!(d["ead"], true, "the primary acked exitedAfterDisconnect before EOF: {d}");
    let e = p.event("exit", id);
    assert_eq!(e["pid"], pid);
    assert_eq!(e["code"], 0, "{e}");
    assert_eq!(e["signal"], 0, "{e}");
    assert_eq!(e["ead"], true, "{e}");
    assert!(
        line_index(&p, |v| v["event"] == "disconnect" && v["id"] == id) < line_index(&p, |v| v["event"] == "exit" && v["id"] == id),
        "disconnect precedes exit"
    );
    assert!(line_index(&p, |v| v["event"] == "error").is_none(), "no error events:\n{}", output(&p));
    let c = wait_count(&mut p, 0);
    assert_eq!(c["count"], 0, "{c}");
    assert!(p.finish().is_some_and(|s| s.success()), "fixture exits cleanly");
}

/// One libcluster primary, one round-robin server, two kinds of workers: a Node worker
/// (`setup node worker_http.js`) and a C worker (`setup .../hello`). Both first listen(0)s
/// map to the same handle key, so they share the port, and both answer HTTP.
#[test]
fn mixed_fleet_c_and_node_workers() {
    let script = node_script("worker_http.js");
    let hello = hello_bin();
    let mut p = Proc::fixture(&[]);
    p.cmd(&format!("setup node {}", script.display()), "setup");
    let (nid, npid, port) = fork_node_worker(&mut p, "PORT=0");

    p.cmd(&format!("setup {}", hello.display()), "setup");
    let (cid, cpid) = p.fork("PORT=0");
    let o = p.event("online", cid);
    assert_eq!(o["pid"], cpid);
    let l = p.event("listening", cid);
    assert_eq!(l["port"], port, "the C worker shares the Node worker's port: {l}");

    let (mut node_hits, mut c_hits) = (0, 0);
    for _ in 0..8 {
        let body = http_get(port).expect("HTTP GET");
        if body == format!("node worker {npid}\n") {
            node_hits += 1;
        } else if body == format!("hello from worker {cpid}\n") {
            c_hits += 1;
        } else {
            panic!("unexpected body {body:?}");
        }
    }
    assert!(node_hits > 0 && c_hits > 0, "both kinds answered: node {node_hits}, C {c_hits}");

    kill_and_expect_sigterm(&mut p, nid, npid);
    kill_and_expect_sigterm(&mut p, cid, cpid);
    let c = wait_count(&mut p, 0);
    assert_eq!(c["count"], 0, "{c}");
    assert!(p.finish().is_some_and(|s| s.success()), "fixture exits cleanly");
}
