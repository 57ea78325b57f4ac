//! The wire protocol against the real `node`, both directions: messages, disconnect,
//! shared handles, UDP and the listen(0) index rule.
//!  - Node primary (tests/node/proto_primary.js) running libcluster workers (the fixture);
//!  - libcluster primary (the fixture) running Node workers (tests/node/proto_worker.js).

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::{Proc, fetch_pid, http_get, root};
use serde_json::{Value, json};

fn node_primary(n: usize, env: Value, sched_none: bool) -> Proc {
    let mut cmd = Command::new("node");
    cmd.arg(root().join("tests/node/proto_primary.js")).arg(common::fixture_bin()).arg(n.to_string()).arg(env.to_string());
    if sched_none {
        cmd.env("NODE_CLUSTER_SCHED_POLICY", "none");
    }
    let mut p = Proc::spawn(cmd);
    for id in 1..=n as u64 {
        let f = p.event("fork", id);
        p.track(f["pid"].as_i64().unwrap() as i32);
    }
    p
}

fn our_primary_with_node_workers(env: &[(&str, &str)]) -> Proc {
    let mut p = Proc::fixture(env);
    p.cmd(&format!("setup node {}", root().join("tests/node/proto_worker.js").display()), "setup");
    p
}

fn udp_ask(port: u16, times: usize) -> HashSet<String> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..times {
        s.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).expect("udp answer");
        seen.insert(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    seen
}

#[test]
fn node_primary_messages_and_disconnect_with_our_workers() {
    let mut p = node_primary(2, json!({"FIXTURE_ECHO": "1"}), false);
    let port = p.event("listening", 1)["port"].as_u64().unwrap() as u16;
    p.event("listening", 2);
    p.cmd("send 1 {\"hello\":[1,2]}", "done");
    let m = p.event("message", 1);
    assert_eq!(m["data"]["echo"], json!({"hello": [1, 2]}), "{m}");
    p.cmd("disconnect 1", "done");
    let d = p.event("disconnect", 1);
    assert_eq!(d["ead"], true);
    let ex = p.event("exit", 1);
    assert_eq!(
        (ex["code"].as_i64(), ex["ead"].as_bool()),
        (Some(0), Some(true)),
        "our worker exits 0 after a Node primary's disconnect: {ex}"
    );
    // The remaining worker serves every connection.
    let pid2 = p
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "fork" && v["id"] == 2)
        .unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    for _ in 0..3 {
        assert_eq!(fetch_pid(port), pid2);
    }
}

#[test]
fn node_primary_shared_handle_with_our_workers() {
    let mut p = node_primary(2, json!({}), true);
    let port = p.event("listening", 1)["port"].as_u64().unwrap() as u16;
    assert_eq!(p.event("listening", 2)["port"].as_u64().unwrap() as u16, port);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        seen.insert(fetch_pid(port));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "both workers accept on the shared socket");
}

#[test]
fn node_primary_udp_with_our_workers() {
    let port = common::free_port();
    let mut p = node_primary(2, json!({"FIXTURE_MODE": "udp", "FIXTURE_PORT": port.to_string()}), false);
    for id in [1, 2] {
        let l = p.event("listening", id);
        assert_eq!((l["addressType"].as_str(), l["port"].as_u64()), (Some("udp4"), Some(port as u64)), "{l}");
    }
    assert!(udp_ask(port, 3).iter().all(|a| a.starts_with("pong ")));
}

#[test]
fn node_primary_listen_zero_index_rule_with_our_workers() {
    let mut p = node_primary(2, json!({"FIXTURE_MODE": "twoservers"}), false);
    let mut ports = Vec::new();
    for id in [1u64, 2] {
        let r = p.expect(move |v| v["worker"] == id && v.get("ports").is_some(), "ports");
        ports.push((r["ports"][0].as_u64().unwrap(), r["ports"][1].as_u64().unwrap()));
    }
    assert_ne!(ports[0].0, ports[0].1);
    assert_eq!(ports[0], ports[1], "Node's primary shares index 0 and index 1 separately");
}

#[test]
fn our_primary_messages_and_disconnect_with_node_workers() {
    let mut p = our_primary_with_node_workers(&[]);
    let (a, _) = p.fork("PORT=0");
    let (b, b_pid) = p.fork("PORT=0");
    let port = p.event("listening", a)["port"].as_u64().unwrap() as u16;
    p.event("listening", b);
    p.cmd(&format!("send {a} {{\"x\":\"é\\n\"}}"), "sent");
    let m = p.event("message", a);
    let v: Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
    assert_eq!(v["echo"], json!({"x": "é\n"}));
    assert_eq!(v["worker"], a);
    p.cmd(&format!("disconnect {a}"), "disconnecting");
    assert_eq!(p.event("disconnect", a)["ead"], true);
    let ex = p.event("exit", a);
    assert_eq!((ex["code"].as_i64(), ex["ead"].as_bool()), (Some(0), Some(true)), "{ex}");
    for _ in 0..3 {
        assert_eq!(http_get(port).unwrap(), format!("node worker {b_pid}\n"));
    }
}

#[test]
fn our_primary_shared_handle_with_node_workers() {
    let mut p = our_primary_with_node_workers(&[("NODE_CLUSTER_SCHED_POLICY", "none")]);
    let mut pids = HashSet::new();
    for _ in 0..2 {
        pids.insert(p.fork("PORT=0").1);
    }
    let port = p.event("listening", 1)["port"].as_u64().unwrap() as u16;
    p.event("listening", 2);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let body = http_get(port).unwrap();
        seen.insert(body.trim().rsplit(' ').next().unwrap().parse::<i32>().unwrap());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, pids);
}

#[test]
fn our_primary_udp_with_node_workers() {
    let port = common::free_port();
    let mut p = our_primary_with_node_workers(&[]);
    for _ in 0..2 {
        p.fork(&format!("PORT={port} UDP=1"));
    }
    for id in [1, 2] {
        let l = p.event("listening", id);
        assert_eq!((l["addressType"].as_i64(), l["port"].as_u64()), (Some(104), Some(port as u64)), "{l}");
    }
    assert!(udp_ask(port, 3).iter().all(|a| a.starts_with("node pong ")));
}

#[test]
fn our_primary_listen_zero_index_rule_with_node_workers() {
    let mut p = our_primary_with_node_workers(&[]);
    let (a, _) = p.fork("LISTEN_TWICE=1");
    let (b, _) = p.fork("LISTEN_TWICE=1");
    let ports = |p: &mut Proc, id: u64| {
        let m = p.event("message", id);
        let v: Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
        (v["ports"][0].as_u64().unwrap(), v["ports"][1].as_u64().unwrap())
    };
    let (pa, pb) = (ports(&mut p, a), ports(&mut p, b));
    assert_ne!(pa.0, pa.1);
    assert_eq!(pa, pb);
}
