//! What one worker may make the primary hold (issue 11, defect 4): at most `max_servers`
//! servers (`LIBCLUSTER_MAX_SERVERS`, the `max_servers` setting; default 64), and never the
//! primary's last fds, which it keeps for accepting and forking. Past either, the worker's
//! listen fails with `EMFILE` and the primary goes on serving and forking. The hostile worker
//! is an unmodified-style Node worker (tests/node/many_servers.js) under our primary.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use common::{Proc, fd_limit, lowest_free_fd, root, set_fd_limit};
use serde_json::Value;

/// Forks a many_servers.js worker asking for `count` servers; returns (pid, its report).
fn many(p: &mut Proc, count: usize) -> (i32, Value) {
    let (id, pid) = p.fork(&format!("COUNT={count}"));
    let m = p.expect(move |v| v["event"] == "message" && v["id"] == id, "the worker's report");
    (pid, serde_json::from_str(m["data"].as_str().expect("message data")).expect("report JSON"))
}

/// One connection to 127.0.0.1:`port`: what the server says before it closes.
fn answer(port: u64) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn primary(env: &[(&str, &str)]) -> Proc {
    let mut p = Proc::fixture(env);
    p.cmd(&format!("setup node {}", root().join("tests/node/many_servers.js").display()), "setup");
    p
}

#[test]
fn a_worker_gets_at_most_max_servers() {
    let mut p = primary(&[("LIBCLUSTER_MAX_SERVERS", "5")]);
    let (pid, r) = many(&mut p, 8);
    assert_eq!((r["servers"].as_u64(), r["error"].as_str()), (Some(5), Some("EMFILE")), "{r}");
    let e = p.expect(|v| v["event"] == "error" && v["id"] == 1, "an error event for the worker");
    assert!(e["message"].as_str().unwrap().contains("max_servers"), "{e}");
    // The worker's servers serve; another worker gets its own.
    assert_eq!(answer(r["port"].as_u64().unwrap()), format!("many {pid}\n"));
    let (pid2, r2) = many(&mut p, 2);
    assert_eq!((r2["servers"].as_u64(), &r2["error"]), (Some(2), &Value::Null), "{r2}");
    // Its first listen(0) is the same server as the first worker's (Node's index rule):
    // round-robin reaches it there.
    let answers: Vec<String> = (0..6).map(|_| answer(r2["port"].as_u64().unwrap())).collect();
    assert!(answers.contains(&format!("many {pid2}\n")), "{answers:?}");
}

#[test]
fn the_primary_keeps_fds_to_accept_and_fork() {
    let mut p = primary(&[("LIBCLUSTER_MAX_SERVERS", "65536")]);
    let pid = p.pid();
    let (_, hard) = fd_limit(pid);
    // Room for a few dozen fds above what the primary has open now.
    set_fd_limit(pid, lowest_free_fd(pid) + 64, hard);
    let (wpid, r) = many(&mut p, 3000);
    assert_eq!(r["error"].as_str(), Some("EMFILE"), "{r}");
    let got = r["servers"].as_u64().unwrap();
    assert!(got > 0 && got < 3000, "{r}");
    // The primary can still accept on those servers and fork another worker.
    assert_eq!(answer(r["port"].as_u64().unwrap()), format!("many {wpid}\n"));
    let (id, _) = p.fork("COUNT=0");
    p.event("online", id);
}
