//! `LIBCLUSTER_DEBUG=1` (Node's `NODE_DEBUG=cluster`): one stderr line per protocol event
//! in the primary and its workers; nothing at all without it.

mod common;

use std::process::Stdio;

use common::{Proc, fetch_pid};

/// Runs a primary with two workers through fork, listen, a connection on each path (the
/// fast lane and Node's newconn), a disconnect and the exits; returns its stderr.
fn run(debug: bool, fast_lane: bool) -> String {
    let dir = std::env::temp_dir().join(format!("libcluster-trace-{}-{debug}-{fast_lane}", std::process::id()));
    let log = std::fs::File::create(&dir).expect("stderr file");
    let mut env = vec![("LIBCLUSTER_FAST_LANE", if fast_lane { "1" } else { "0" })];
    if debug {
        env.push(("LIBCLUSTER_DEBUG", "1"));
    }
    let mut p = Proc::fixture_with_stderr(&env, Stdio::from(log));
    let (a, _) = p.fork("");
    let port = p.event("listening", a)["port"].as_u64().expect("port") as u16;
    let (b, _) = p.fork("");
    p.event("listening", b);
    for _ in 0..2 {
        fetch_pid(port);
    }
    p.cmd(&format!("disconnect {a}"), "disconnecting");
    p.event("exit", a);
    p.cmd(&format!("disconnect {b}"), "disconnecting");
    p.event("exit", b);
    // A serving worker may exit as soon as its server closes, before its reader has written
    // about the disconnect; an idle one closes its channel only after (and then stays, to
    // be killed with the rest).
    let (c, _) = p.fork("FIXTURE_MODE=idle");
    p.event("online", c);
    p.cmd(&format!("disconnect {c}"), "disconnecting");
    p.event("disconnect", c);
    drop(p);
    let text = std::fs::read_to_string(&dir).unwrap_or_default();
    let _ = std::fs::remove_file(&dir);
    text
}

fn has(text: &str, role: &str, what: &str) -> bool {
    text.lines().any(|l| l.starts_with("LIBCLUSTER ") && l.contains(&format!(": {role} {what}")))
}

#[test]
fn debug_traces_every_protocol_event() {
    for fast_lane in [true, false] {
        let text = run(true, fast_lane);
        for (role, what) in [
            ("primary", "fork worker="),
            ("primary", "online worker="),
            ("primary", "queryServer worker="),
            ("primary", "listening worker="),
            ("worker", "send {\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\""),
            ("worker", "reply key="),
            ("primary", "disconnect worker="),
            ("worker", "disconnect keep-channel="),
            ("primary", "channel closed worker="),
            ("primary", "exit worker="),
        ] {
            assert!(has(&text, role, what), "no `{role} {what}` line (fast lane {fast_lane}) in:\n{text}");
        }
        if fast_lane {
            assert!(has(&text, "primary", "lane worker="), "no lane line in:\n{text}");
        } else {
            assert!(has(&text, "primary", "newconn worker="), "no newconn line in:\n{text}");
            assert!(has(&text, "worker", "newconn seq="), "no worker newconn line in:\n{text}");
            assert!(has(&text, "primary", "accepted worker="), "no ack line in:\n{text}");
        }
    }
}

#[test]
fn no_trace_without_the_variable() {
    let text = run(false, true);
    assert!(!text.lines().any(|l| l.starts_with("LIBCLUSTER ")), "trace lines without LIBCLUSTER_DEBUG:\n{text}");
}
