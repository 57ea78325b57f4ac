//! The event queue is bounded: a primary that stops dispatching while a worker floods it
//! with messages stops reading that worker's channel once the queue holds its bound of
//! message text (`LIBCLUSTER_MAX_PENDING` here, 16 KiB), and reads it again, losing
//! nothing and keeping the order, once the program dispatches.

mod common;

use std::process::Stdio;

use common::Proc;

#[test]
fn a_primary_that_does_not_dispatch_stops_reading_and_loses_nothing() {
    let log_path = std::env::temp_dir().join(format!("libcluster-bound-{}", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("stderr file");
    let mut p = Proc::fixture_with_stderr(&[("LIBCLUSTER_MAX_PENDING", "16384"), ("LIBCLUSTER_DEBUG", "1")], Stdio::from(log));
    let n = 400; // about 400 KiB of messages: 25 times the bound
    p.cmd("events-hold", "events");
    // (Not Proc::fork: it waits for the FORK event, which is held too.)
    let id = p.cmd(&format!("fork FIXTURE_MODE=flood:{n}"), "forked")["forked"].as_u64().expect("worker id");
    // While events are held the primary reads until the queue is full, then pauses the
    // worker's channel (the debug trace says so).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let paused = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains(&format!("primary paused worker={id}")) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    p.cmd("events-release", "events");
    // Every message arrives, in order, then the end marker.
    for i in 0..n {
        let m = p.event("message", id);
        let v: serde_json::Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
        assert_eq!(v["flood"], i, "messages in order, none lost: {m}");
    }
    let m = p.event("message", id);
    assert!(m["data"].as_str().unwrap().contains("flood_done"), "{m}");
    drop(p);
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert!(paused, "the primary never paused the flooding worker's channel:\n{}", &text[..text.len().min(4000)]);
    assert!(text.contains(&format!("primary resumed worker={id}")), "the channel was not resumed");
}
