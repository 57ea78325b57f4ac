//! The primary out of fds (issue 11, defect 3): with its `RLIMIT_NOFILE` at the number of fds
//! it has open, `accept` fails with `EMFILE` and clients wait in the listener's backlog. Once
//! fds are available again they are served without another client arriving (the listener is
//! edge-triggered: nothing else would wake the primary), and at the limit the primary does
//! not spin. On the fast lane and on Node's path.

mod common;

use std::time::{Duration, Instant};

use common::clients::{clients, collect, fork_server, output};
use common::{Proc, fd_limit, lowest_free_fd, set_fd_limit};

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn served_after_fds_come_back(lane: bool) {
    const N: usize = 8;
    let mut p = Proc::fixture(&[("LIBCLUSTER_FAST_LANE", if lane { "1" } else { "0" })]);
    let (_, w_pid, port, _) = fork_server(&mut p, "FIXTURE_MODE=line");
    let pid = p.pid();
    let (soft, hard) = fd_limit(pid);
    // No fd left for an accepted connection: the limit at the lowest free fd number, read
    // again until it holds still (an fd the primary had open only for a moment would leave a
    // free number below the limit once closed).
    let mut limit = lowest_free_fd(pid);
    for _ in 0..40 {
        set_fd_limit(pid, limit, hard);
        std::thread::sleep(Duration::from_millis(25));
        let now = lowest_free_fd(pid);
        if now == limit {
            break;
        }
        limit = now;
    }
    let (handles, answered) = clients(port, N, "c");
    // Clients wait in the backlog while the primary is at its limit; it does not spin.
    let cpu_before = cpu_ticks(pid);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    let cpu = cpu_ticks(pid) - cpu_before;
    // SAFETY: sysconf has no memory-safety preconditions.
    let tick = 1000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u128;
    let wall = start.elapsed().as_millis();
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 0, "served while out of fds?\n{}", output(&p));
    assert!((cpu as u128) * tick < wall / 2, "the primary used {}ms of CPU in {wall}ms at its fd limit", cpu as u128 * tick);
    // Fds come back; nobody else connects: the waiting clients are served.
    set_fd_limit(pid, soft, hard);
    let per_pid = collect(handles, &p);
    assert_eq!(per_pid.get(&w_pid).map(Vec::len), Some(N), "{:?}", per_pid.keys());
}

#[test]
fn lane_clients_waiting_at_the_fd_limit_are_served_once_fds_come_back() {
    served_after_fds_come_back(true);
}

#[test]
fn node_path_clients_waiting_at_the_fd_limit_are_served_once_fds_come_back() {
    served_after_fds_come_back(false);
}
