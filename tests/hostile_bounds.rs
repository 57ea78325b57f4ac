//! Hostile workers against a real primary: what one worker can make the primary hold is
//! bounded (issue 11, defect 2).

mod common;

use std::time::Duration;

use common::{Proc, fetch_pid};

/// What the primary may reach, at its peak, under the attack below: its baseline plus the
/// per-worker write-queue bound (64 MiB by default) plus a few copies of one 15 MiB message
/// (the read buffer, the handle's `data`, the reply being formatted). Unbounded, the same
/// attack takes it past 600 MiB.
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).expect("field in status");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

/// A worker that sends one `queryServer` with 15 MiB of `data`, then 40 small ones for the
/// same server, and never reads its channel: every reply echoes the 15 MiB. The primary
/// stops queueing at its bound, closes that worker's channel with a protocol error, stays
/// within a bounded RSS, and another worker still serves.
#[test]
fn a_worker_that_never_reads_cannot_grow_the_primary_without_bound() {
    let mut p = Proc::fixture(&[]);
    let primary = p.pid();
    let (good, good_pid) = p.fork("");
    let port = p.event("listening", good)["port"].as_u64().expect("port") as u16;
    let before = status_kib(primary, "VmRSS");

    let (bad, bad_pid) = p.fork("FIXTURE_MODE=raw:bigdata");
    let sent = p.expect(|v| v.get("bigdata_sent").is_some(), "the hostile worker's report");
    // With the bound, its channel closes after a few replies (later writes fail): 2 lines at
    // least reached the primary.
    assert!(sent["bigdata_sent"].as_u64().unwrap() >= 2, "{sent}");
    // Whatever the primary still had to read, it has read and answered by now.
    let err = p.try_expect(|v| v["event"] == "error" && v["id"] == bad, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(200));
    let (rss, peak) = (status_kib(primary, "VmRSS"), status_kib(primary, "VmHWM"));
    eprintln!("primary RSS: {before} KiB before, {rss} KiB after, peak {peak} KiB (bound {RSS_BOUND_KIB} KiB)");
    assert!(peak < RSS_BOUND_KIB, "the primary's peak RSS {peak} KiB is over {RSS_BOUND_KIB} KiB");
    assert!(rss < RSS_BOUND_KIB, "the primary's RSS {rss} KiB is over {RSS_BOUND_KIB} KiB");

    let err = err.expect("an error event for the worker that does not read");
    assert_eq!(err["code"], cluster::testing::capi::error::CLUSTER_E_PROTOCOL, "{err}");
    assert_eq!(err["pid"], bad_pid, "{err}");
    let msg = err["message"].as_str().unwrap();
    eprintln!("error event: {err}; worker sent {sent}");
    assert!(msg.contains("not reading"), "the error names the reason: {msg}");
    p.event("disconnect", bad);
    // Only that worker: the other still serves, and the primary still forks.
    assert_eq!(fetch_pid(port), good_pid);
    let (c, c_pid) = p.fork("");
    assert_eq!(p.event("listening", c)["port"], port as u64);
    let served: Vec<i32> = (0..4).map(|_| fetch_pid(port)).collect();
    assert!(served.contains(&good_pid) && served.contains(&c_pid), "{served:?}");
}
