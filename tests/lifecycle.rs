//! Messages, graceful disconnect and the listening variants, with real processes.

mod common;

use std::time::Duration;

use common::{Proc, fetch_pid};

fn listening_port(p: &mut Proc, id: u64) -> u16 {
    p.event("listening", id)["port"].as_u64().expect("port") as u16
}

#[test]
fn messages_go_both_ways_in_order() {
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork("FIXTURE_ECHO=1 FIXTURE_MODE=idle");
    p.event("online", id);
    for i in 0..5 {
        p.cmd(&format!("send {id} {{\"n\": {i}, \"text\": \"line\\nbreak\"}}"), "sent");
    }
    for i in 0..5 {
        let m = p.event("message", id);
        let v: serde_json::Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
        assert_eq!(v["echo"]["n"], i, "messages keep their order: {m}");
        assert_eq!(v["echo"]["text"], "line\nbreak");
    }
    // Values that are not objects are messages too.
    p.cmd(&format!("send {id} \"done\""), "sent");
    let m = p.event("message", id);
    assert_eq!(m["data"], "{\"echo\":\"done\",\"fd_data\":null}");
}

#[test]
fn invalid_or_reserved_messages_are_refused() {
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork("FIXTURE_MODE=idle");
    p.event("online", id);
    assert_eq!(p.cmd(&format!("send {id} {{nope"), "error")["error"], -libc::EINVAL);
    assert_eq!(p.cmd(&format!("send {id} {{\"cmd\":\"NODE_CLUSTER\",\"act\":\"disconnect\"}}"), "error")["error"], -libc::EINVAL);
    assert_eq!(p.cmd("send 99 {}", "error")["error"], -libc::ESRCH);
}

#[test]
fn sockets_travel_with_messages_both_ways() {
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork("FIXTURE_ECHO=1 FIXTURE_MODE=idle");
    p.event("online", id);
    p.cmd(&format!("sendfd {id} via-fd"), "sent");
    // The worker read "via-fd" from the socket it got, and sent one back with its answer.
    let m = p.event("message", id);
    let v: serde_json::Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
    assert_eq!(v["fd_data"], "via-fd", "{m}");
    assert_eq!(v["echo"]["with_fd"], "via-fd");
    assert_eq!(m["fd_data"], "from-worker", "the worker's socket reached the primary: {m}");
    // A plain message after a handle still arrives (queued behind the ack).
    p.cmd(&format!("send {id} 7"), "sent");
    let m = p.event("message", id);
    assert!(m["data"].as_str().unwrap().contains("\"echo\":7"), "{m}");
}

#[test]
fn primary_disconnect_closes_servers_and_the_worker_exits_0() {
    let mut p = Proc::fixture(&[]);
    let (a, _) = p.fork("");
    let port = listening_port(&mut p, a);
    let (b, b_pid) = p.fork("");
    listening_port(&mut p, b);
    p.cmd(&format!("disconnect {a}"), "disconnecting");
    // Out of cluster.workers at once (§6.6), still known.
    assert_eq!(p.cmd("count", "count")["ids"], serde_json::json!([b]));
    let d = p.event("disconnect", a);
    assert_eq!(d["ead"], true);
    let ex = p.event("exit", a);
    assert_eq!((ex["code"].as_i64(), ex["ead"].as_bool()), (Some(0), Some(true)), "{ex}");
    let st = p.cmd(&format!("state {a}"), "state");
    assert_eq!((st["state"].as_str(), st["dead"].as_bool(), st["ead"].as_bool()), (Some("dead"), Some(true), Some(true)));
    // Every connection now goes to the remaining worker.
    for _ in 0..4 {
        assert_eq!(fetch_pid(port), b_pid);
    }
    let again = p.cmd(&format!("disconnect {a}"), "error");
    assert!(again["error"].as_i64().unwrap() < 0);
}

/// Node's `worker.process.disconnect()`: the bare channel closes, with no protocol message;
/// the worker sees its primary gone and exits 0; `exitedAfterDisconnect` stays false; its
/// server leaves the handle, so connections go to the other worker.
#[test]
fn closing_the_channel_makes_the_worker_exit_0() {
    let mut p = Proc::fixture(&[]);
    let (a, _) = p.fork("");
    let port = listening_port(&mut p, a);
    let (b, b_pid) = p.fork("");
    listening_port(&mut p, b);
    p.cmd(&format!("close-channel {a}"), "closing");
    let d = p.event("disconnect", a);
    assert_eq!(d["ead"], false, "{d}");
    let ex = p.event("exit", a);
    assert_eq!((ex["code"].as_i64(), ex["signal"].as_i64(), ex["ead"].as_bool()), (Some(0), Some(0), Some(false)), "{ex}");
    for _ in 0..4 {
        assert_eq!(fetch_pid(port), b_pid);
    }
    let again = p.cmd(&format!("close-channel {a}"), "error");
    assert!(again["error"].as_i64().unwrap() < 0, "{again}");
    assert_eq!(p.cmd("close-channel 99", "error")["error"], -libc::ESRCH);
}

#[test]
fn disconnect_all_runs_the_callback_when_no_worker_is_left() {
    let mut p = Proc::fixture(&[]);
    for _ in 0..2 {
        let (id, _) = p.fork("");
        listening_port(&mut p, id);
    }
    assert_eq!(p.cmd("disconnect-all", "disconnecting_all")["disconnecting_all"], 2);
    p.expect(|v| v["event"] == "drained", "cluster.workers empty");
    for id in 1..=2 {
        let ex = p.event("exit", id);
        assert_eq!((ex["code"].as_i64(), ex["ead"].as_bool()), (Some(0), Some(true)));
    }
    // With no workers the callback still comes (asynchronously, as in Node).
    assert_eq!(p.cmd("disconnect-all", "disconnecting_all")["disconnecting_all"], 0);
    p.expect(|v| v["event"] == "drained", "drained with no workers");
}

#[test]
fn worker_initiated_disconnect_is_voluntary() {
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork("FIXTURE_MODE=selfdisconnect");
    let r = p.expect(|v| v["worker"] == id && v.get("selfdisconnect").is_some(), "selfdisconnect");
    assert_eq!(r["selfdisconnect"], true);
    assert_eq!(r["second"], cluster::testing::capi::error::CLUSTER_E_CLOSED, "a second disconnect is an error");
    let d = p.event("disconnect", id);
    assert_eq!(d["ead"], true, "the primary acked exitedAfterDisconnect before EOF");
    let ex = p.event("exit", id);
    assert_eq!((ex["code"].as_i64(), ex["ead"].as_bool()), (Some(0), Some(true)));
}

#[test]
fn shared_handle_mode_serves_from_every_worker() {
    let mut p = Proc::fixture(&[("NODE_CLUSTER_SCHED_POLICY", "none")]);
    let mut pids = Vec::new();
    let mut port = 0;
    for _ in 0..2 {
        let (id, pid) = p.fork("");
        pids.push(pid);
        port = listening_port(&mut p, id);
    }
    // The kernel balances a shared socket unevenly; ask until both answered (bounded).
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.insert(fetch_pid(port));
        if seen.len() == 2 {
            break;
        }
    }
    for pid in pids {
        assert!(seen.contains(&pid), "worker {pid} never accepted on the shared socket: {seen:?}");
    }
    assert_eq!(p.cmd("sched rr", "error")["error"], -libc::EBUSY, "policy fixed after the first fork");
}

#[test]
fn udp_workers_share_one_bound_socket() {
    let port = common::free_port();
    let mut p = Proc::fixture(&[]);
    let (a, _) = p.fork(&format!("FIXTURE_MODE=udp FIXTURE_PORT={port}"));
    let (b, _) = p.fork(&format!("FIXTURE_MODE=udp FIXTURE_PORT={port}"));
    for id in [a, b] {
        let l = p.event("listening", id);
        assert_eq!((l["port"].as_u64(), l["addressType"].as_i64()), (Some(port as u64), Some(104)), "{l}");
    }
    // Datagrams reach a worker, which answers from the same socket.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(from.port(), port);
    assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("pong "));
}

#[test]
fn unix_socket_path_is_relative_to_the_worker_and_removed_with_the_last_holder() {
    let dir = std::env::temp_dir().join(format!("lc-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("srv.sock");
    let mut p = Proc::fixture(&[]);
    let (a, _) = p.fork(&format!("FIXTURE_ADDR={} FIXTURE_PORT=-1", path.display()));
    let l = p.event("listening", a);
    assert_eq!((l["addressType"].as_i64(), l["port"].as_i64()), (Some(-1), Some(-1)), "{l}");
    assert!(path.exists());
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    assert!(out.trim().parse::<i32>().is_ok());
    p.cmd(&format!("kill {a} 9"), "killed");
    p.event("exit", a);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while path.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!path.exists(), "the socket file is removed when the last holder closes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn second_listen_zero_in_a_worker_gets_another_port() {
    let mut p = Proc::fixture(&[]);
    let (a, _) = p.fork("FIXTURE_MODE=twoservers");
    let (b, _) = p.fork("FIXTURE_MODE=twoservers");
    let ports = |p: &mut Proc, id| {
        let r = p.expect(move |v| v["worker"] == id && v.get("ports").is_some(), "two ports");
        (r["ports"][0].as_u64().unwrap(), r["ports"][1].as_u64().unwrap())
    };
    let (a0, a1) = ports(&mut p, a);
    let (b0, b1) = ports(&mut p, b);
    assert_ne!(a0, a1, "index 1 is another key, so another port");
    assert_eq!((a0, a1), (b0, b1), "index 0 and index 1 each shared across workers");
}

#[test]
fn silent_workers_write_to_pipes_the_primary_reads() {
    let mut p = Proc::fixture(&[]);
    p.cmd("silent", "silent");
    let (id, _) = p.fork("FIXTURE_MODE=tryfork");
    let out = p.cmd(&format!("stdout {id}"), "stdout");
    assert!(out["stdout"].as_str().unwrap().contains("\"tryfork\""), "{out}");
}

#[test]
fn fork_env_and_settings_reach_the_worker() {
    let mut p = Proc::fixture(&[]);
    p.cmd("silent", "silent");
    let (id, _) = p.fork("FIXTURE_MODE=env CLUSTER_TEST_VAR=hello");
    let out = p.cmd(&format!("stdout {id}"), "stdout");
    let line: serde_json::Value = serde_json::from_str(out["stdout"].as_str().unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(line["env"]["CLUSTER_TEST_VAR"], "hello");
    assert_eq!(line["env"]["NODE_UNIQUE_ID"], serde_json::Value::Null, "removed at start-up, as Node does");
    assert_eq!(line["env"]["NODE_CHANNEL_FD"], serde_json::Value::Null);
    assert_eq!(line["id"], id);
}

/// A root primary can run its workers unprivileged (issue 7's privilege drop, Node's
/// uid/gid settings). Only meaningful as root; elsewhere the setuid would fail.
#[test]
fn workers_run_with_the_uid_and_gid_from_the_settings() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root");
        return;
    }
    // The unprivileged worker must be able to reach and run the fixture binary.
    use std::os::unix::fs::PermissionsExt;
    let bin = common::fixture_bin();
    let reachable = bin.ancestors().skip(1).all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
        && std::fs::metadata(&bin).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005);
    if !reachable {
        eprintln!("skipped: {} is not reachable by uid 65534", bin.display());
        return;
    }
    let mut p = Proc::fixture(&[]);
    p.cmd("ids 65534 65534", "ids");
    let (id, _) = p.fork("FIXTURE_MODE=env");
    let r = p.expect(move |v| v["worker"] == id && v.get("uid").is_some(), "worker ids");
    assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(65534), Some(65534)), "{r}");
    // The unprivileged worker still serves a privileged port: the root primary binds it.
    let port = (900..1000u16).find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()).expect("a free port below 1024");
    let (w, w_pid) = p.fork(&format!("FIXTURE_PORT={port}"));
    assert_eq!(listening_port(&mut p, w), port);
    assert_eq!(fetch_pid(port), w_pid);
}

#[test]
fn bind_allowlist_refuses_other_addresses_with_eacces() {
    let allowed = common::free_port();
    let other = common::free_port();
    let mut p = Proc::fixture(&[]);
    p.cmd(&format!("allow 127.0.0.1 {allowed}"), "allowed");
    let (a, _) = p.fork(&format!("FIXTURE_PORT={other}"));
    let r = p.expect(move |v| v["worker"] == a && v.get("error").is_some(), "refusal");
    assert_eq!(r["error"], -libc::EACCES, "{r}");
    let (b, b_pid) = p.fork(&format!("FIXTURE_PORT={allowed}"));
    assert_eq!(listening_port(&mut p, b), allowed);
    assert_eq!(fetch_pid(allowed), b_pid);
}

#[test]
fn a_message_over_the_cap_closes_that_channel_only() {
    let mut p = Proc::fixture(&[]);
    p.cmd("maxmsg 1024", "maxmsg");
    let (good, good_pid) = p.fork("");
    let port = listening_port(&mut p, good);
    let (chatty, _) = p.fork("FIXTURE_ECHO=1 FIXTURE_MODE=idle");
    p.event("online", chatty);
    // The worker's echo of a 1000-byte string is longer than 1024 bytes.
    let long = "x".repeat(1000);
    p.cmd(&format!("send {chatty} \"{long}\""), "sent");
    let e = p.event("error", chatty);
    assert!(e["message"].as_str().unwrap().contains("longer than 1024"), "{e}");
    p.event("disconnect", chatty);
    assert_eq!(fetch_pid(port), good_pid);
}

#[test]
fn inherited_stdio_reaches_workers_even_if_the_host_made_it_cloexec() {
    let mut p = Proc::fixture(&[]);
    p.cmd("cloexec-stdio", "cloexec_stdio");
    let (id, _) = p.fork("FIXTURE_MODE=tryfork");
    // The worker's line comes through the stdout it inherited.
    p.expect(move |v| v["worker"] == id && v.get("tryfork").is_some(), "the worker's stdout");
}

#[test]
fn worker_side_destroy_is_voluntary_and_exits_0() {
    let mut p = Proc::fixture(&[]);
    let (id, _) = p.fork("FIXTURE_MODE=selfdestroy");
    listening_port(&mut p, id);
    let d = p.event("disconnect", id);
    assert_eq!(d["ead"], true, "the primary acked exitedAfterDisconnect: {d}");
    let ex = p.event("exit", id);
    assert_eq!((ex["code"].as_i64(), ex["ead"].as_bool()), (Some(0), Some(true)), "{ex}");
}

#[test]
fn a_silent_workers_output_can_be_read_after_it_is_gone() {
    let mut p = Proc::fixture(&[]);
    p.cmd("silent", "silent");
    let (id, _) = p.fork("FIXTURE_MODE=printexit");
    let ex = p.event("exit", id);
    assert_eq!(ex["code"], 5);
    let out = p.cmd(&format!("stdout {id}"), "stdout");
    assert!(out["stdout"].as_str().unwrap().contains("last_words"), "{out}");
}
