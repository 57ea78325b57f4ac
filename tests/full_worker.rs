//! A worker at its fd limit refuses what it cannot take, and goes on (issue 11, defect 5):
//! on Node's path the kernel drops a `newconn`'s fd that does not fit (MSG_CTRUNC) and the
//! worker answers `accepted: false`, so the primary serves it elsewhere; on the fast lane the
//! worker looks before it receives and leaves a connection that would not fit queued, so the
//! primary takes it back for another worker. Before, the worker died (Node's path) or the
//! connection was lost (the lane).

mod common;

use std::time::{Duration, Instant};

use common::Proc;
use common::clients::{CLIENT_WAIT, clients, fork_server, output};

/// The most connections worker `id` said it holds.
fn hoarded(p: &Proc, id: u64) -> usize {
    p.lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["worker"] == id)
        .filter_map(|v| v["hoarded"].as_u64())
        .max()
        .unwrap_or(0) as usize
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| !r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn full_worker_refuses(lane: bool) {
    const N: usize = 24;
    let mut p = Proc::fixture(&[("LIBCLUSTER_FAST_LANE", if lane { "1" } else { "0" })]);
    // A has room for a few fds beyond what getting its server takes (the lane: one).
    let (a, a_pid, port, _) = fork_server(&mut p, "FIXTURE_MODE=hoard FIXTURE_NONBLOCK=1 FIXTURE_NOFILE=6");
    let (_, b_pid, _, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    let (handles, answered) = clients(port, N, "c");
    // Every client is either held by A or answered by B (bounded).
    let deadline = Instant::now() + CLIENT_WAIT;
    while answered.load(std::sync::atomic::Ordering::SeqCst) + hoarded(&p, a) < N {
        assert!(Instant::now() < deadline, "clients neither held by A nor answered by B\n{}", output(&p));
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = hoarded(&p, a);
    assert!(held < 6, "A held {held} connections with room for 6 fds");
    assert!(alive(a_pid), "the full worker died\n{}", output(&p));
    // Those A holds are its own; A's end lets their clients go.
    p.cmd(&format!("kill {a} 9"), "killed");
    let mut from_b = 0;
    for (tag, h) in handles {
        // An error: held by A, then cut when A was killed.
        if let Ok(answer) = h.join().expect("client thread") {
            assert_eq!(answer.pid, b_pid, "{tag}");
            from_b += 1;
        }
    }
    assert_eq!(from_b, N - held, "every connection A did not hold was served by B");
}

#[test]
fn node_path_worker_at_its_fd_limit_refuses_and_goes_on() {
    full_worker_refuses(false);
}

#[test]
fn lane_worker_at_its_fd_limit_leaves_connections_for_others() {
    full_worker_refuses(true);
}
