//! A worker whose primary misbehaves: the test plays a hostile primary on a real socketpair
//! (fd 3 of a real worker process) and checks the worker answers by Node's rules or leaves
//! cleanly (exit code, never a crash), with a clear message.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Worker {
    child: Child,
    chan: BufReader<UnixStream>,
}

impl Worker {
    /// Starts a fixture worker in `mode` with our end of its channel.
    fn start(mode: &str) -> Worker {
        Worker::start_with(mode, Stdio::piped())
    }

    /// `start` with the worker's stderr given.
    fn start_with(mode: &str, stderr: Stdio) -> Worker {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let theirs_fd = theirs.into_raw_fd();
        let mut cmd = Command::new(common::fixture_bin());
        cmd.env("NODE_UNIQUE_ID", "1").env("NODE_CHANNEL_FD", "3").env("FIXTURE_MODE", mode).stdout(Stdio::null()).stderr(stderr);
        // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(theirs_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        // SAFETY: our copy of the child's end is ours to close.
        unsafe { libc::close(theirs_fd) };
        ours.set_read_timeout(Some(common::TIMEOUT)).unwrap();
        Worker { child, chan: BufReader::new(ours) }
    }

    fn line(&mut self) -> serde_json::Value {
        let mut l = String::new();
        self.chan.read_line(&mut l).expect("a line from the worker");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("worker wrote {l:?}: {e}"))
    }

    fn send(&mut self, bytes: &[u8]) {
        let _ = self.chan.get_mut().write_all(bytes);
    }

    /// Waits for the worker to exit; returns (exit code, stderr).
    fn exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + common::TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(e) = self.child.stderr.as_mut() {
                    let _ = std::io::Read::read_to_string(e, &mut err);
                }
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(st.signal(), None, "the worker crashed: {st:?}\n{err}");
                return (st.code(), err);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the worker did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        common::kill_pid(self.child.id() as i32);
        let _ = self.child.wait();
    }
}

fn online(mode: &str) -> Worker {
    let mut w = Worker::start(mode);
    let m = w.line();
    assert_eq!((m["cmd"].as_str(), m["act"].as_str()), (Some("NODE_CLUSTER"), Some("online")));
    w
}

#[test]
fn malformed_json_from_the_primary_ends_the_worker_with_a_message() {
    let mut w = online("idle");
    w.send(b"{\"cmd\":\"NODE_CLUSTER\",\n");
    let (code, err) = w.exit();
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid JSON"), "{err}");
}

#[test]
fn blank_line_from_the_primary_ends_the_worker_with_a_message() {
    let mut w = online("idle");
    w.send(b"\n");
    let (code, err) = w.exit();
    assert_eq!(code, Some(1));
    assert!(err.contains("blank line"), "{err}");
}

#[test]
fn oversized_line_from_the_primary_ends_the_worker_with_a_message() {
    let mut w = online("idle");
    let big = vec![b'7'; 17 * 1024 * 1024];
    w.send(&big);
    let (code, err) = w.exit();
    assert_eq!(code, Some(1));
    assert!(err.contains("longer than"), "{err}");
}

#[test]
fn primary_vanishing_mid_message_ends_the_worker_with_code_0() {
    let mut w = online("idle");
    w.send(b"{\"cmd\":\"NODE_CLU");
    w.chan.get_ref().shutdown(std::net::Shutdown::Both).unwrap();
    assert_eq!(w.exit().0, Some(0), "channel loss ends a worker with 0, as in Node");
}

#[test]
fn node_handle_without_fd_is_nacked_and_the_worker_goes_on() {
    let mut w = online("idle");
    w.send(b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":\"k\",\"seq\":0}}\n");
    assert_eq!(w.line(), serde_json::json!({"cmd": "NODE_HANDLE_NACK"}));
    // Still alive and answering: an unknown-key newconn with a real fd is acked and refused.
    let (a, _b) = UnixStream::pair().unwrap();
    cluster::testing::sys::scm::send(
        std::os::fd::AsFd::as_fd(w.chan.get_ref()),
        b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":\"nope\",\"seq\":1}}\n",
        Some(a.as_raw_fd()),
        false,
    )
    .unwrap();
    assert_eq!(w.line(), serde_json::json!({"cmd": "NODE_HANDLE_ACK"}));
    let r = w.line();
    assert_eq!((r["ack"].as_i64(), r["accepted"].as_bool()), (Some(1), Some(false)), "{r}");
}

#[test]
fn fd_without_node_handle_ends_the_worker_with_a_message() {
    let w = online("idle");
    let (a, _b) = UnixStream::pair().unwrap();
    cluster::testing::sys::scm::send(std::os::fd::AsFd::as_fd(w.chan.get_ref()), b"{\"hello\":1}\n", Some(a.as_raw_fd()), false).unwrap();
    let (code, err) = w.exit();
    assert_eq!(code, Some(1));
    assert!(err.contains("not NODE_HANDLE"), "{err}");
}

#[test]
fn unknown_acks_and_acts_are_ignored() {
    let mut w = online("idle");
    w.send(b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":-1}\n{\"cmd\":\"NODE_CLUSTER\",\"act\":\"frobnicate\",\"seq\":3}\n{\"cmd\":\"NODE_SOMETHING\"}\n");
    // Still alive: a user message comes through as an event, and a disconnect is obeyed.
    w.send(b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"disconnect\",\"seq\":4}\n");
    // The worker closes its channel after the disconnect (no servers to close).
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut w.chan, &mut rest);
    assert!(!rest.contains("error"), "{rest}");
}

/// A worker in `serve` mode (a program that loops on `accept`) that has sent its
/// `queryServer`: returns it and the request's seq.
fn querying() -> (Worker, i64) {
    let mut w = online("serve");
    let q = w.line();
    assert_eq!(q["act"].as_str(), Some("queryServer"), "{q}");
    let seq = q["seq"].as_i64().expect("a seq");
    (w, seq)
}

/// A round-robin reply (no fd) to request `ack`, with `errno` and `sockname` as raw JSON.
fn rr_reply(ack: i64, errno: &str, sockname: &str) -> Vec<u8> {
    format!(
        "{{\"cmd\":\"NODE_CLUSTER\",\"errno\":{errno},\"key\":\"k\",\"ack\":{ack},\"data\":null,\"sockname\":{sockname},\"seq\":100}}\n"
    )
    .into_bytes()
}

const GOOD_SOCKNAME: &str = r#"{"address":"127.0.0.1","family":"IPv4","port":40000}"#;

/// A worker in `serve` mode with a round-robin server (key "k", port 40000), its program in
/// its accept loop.
fn serving() -> Worker {
    let (mut w, seq) = querying();
    w.send(&rr_reply(seq, "null", GOOD_SOCKNAME));
    let l = w.line();
    assert_eq!((l["act"].as_str(), l["port"].as_i64()), (Some("listening"), Some(40000)), "{l}");
    w
}

/// Everything the worker writes on its channel until it closes it (it has exited).
fn rest_of_channel(w: &mut Worker) -> String {
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut w.chan, &mut rest);
    rest
}

/// A pipe's (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = cluster::testing::sys::fd::pipe().unwrap();
    (r.into(), w.into())
}

/// Asserts nothing was ever written into the pipe whose read end is `r` (every write end is
/// closed by now, so this ends).
fn assert_untouched(mut r: std::fs::File) {
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut r, &mut got);
    assert!(got.is_empty(), "the program wrote into the pipe as if it were a connection: {:?}", String::from_utf8_lossy(&got));
}

#[test]
fn errno_of_i64_min_in_a_reply_ends_the_worker_with_a_message() {
    let (mut w, seq) = querying();
    w.send(&rr_reply(seq, "-9223372036854775808", "null"));
    let (code, err) = w.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("errno -9223372036854775808"), "{err}");
}

#[test]
fn positive_errno_in_a_reply_ends_the_worker_with_a_message() {
    let (mut w, seq) = querying();
    w.send(&rr_reply(seq, "5", "null"));
    let (code, err) = w.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("errno 5"), "{err}");
}

#[test]
fn port_out_of_range_in_a_reply_ends_the_worker_with_a_message() {
    let (mut w, seq) = querying();
    w.send(&rr_reply(seq, "null", r#"{"address":"127.0.0.1","family":"IPv4","port":99999}"#));
    let rest = rest_of_channel(&mut w);
    assert!(!rest.contains("listening"), "the worker announced the port: {rest}");
    let (code, err) = w.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("port 99999"), "{err}");
}

#[test]
fn newconn_carrying_a_pipe_ends_the_worker_with_a_message() {
    let mut w = serving();
    let (r, pw) = pipe();
    cluster::testing::sys::scm::send(
        std::os::fd::AsFd::as_fd(w.chan.get_ref()),
        b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":\"k\",\"seq\":7}}\n",
        Some(pw.as_raw_fd()),
        false,
    )
    .unwrap();
    drop(pw);
    let rest = rest_of_channel(&mut w);
    assert!(!rest.contains("\"accepted\":true"), "the worker accepted a pipe: {rest}");
    let (code, err) = w.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a stream socket"), "{err}");
    assert_untouched(r);
}

#[test]
fn fast_lane_carrying_a_pipe_ends_the_worker_with_a_message() {
    let (mut w, seq) = querying();
    let (ours, theirs) = cluster::testing::sys::lane::pair().unwrap();
    let reply = format!(
        "{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{{\"cmd\":\"NODE_CLUSTER\",\"errno\":0,\"key\":\"k\",\"ack\":{seq},\"data\":null,\"sockname\":{GOOD_SOCKNAME},\"libclusterLane\":1,\"seq\":100}}}}\n"
    );
    cluster::testing::sys::scm::send(std::os::fd::AsFd::as_fd(w.chan.get_ref()), reply.as_bytes(), Some(theirs.as_raw_fd()), false)
        .unwrap();
    drop(theirs);
    assert_eq!(w.line(), serde_json::json!({"cmd": "NODE_HANDLE_ACK"}));
    let l = w.line();
    assert_eq!((l["act"].as_str(), l["port"].as_i64()), (Some("listening"), Some(40000)), "{l}");
    let (r, pw) = pipe();
    assert_eq!(cluster::testing::sys::lane::send(std::os::fd::AsFd::as_fd(&ours), &[pw.as_raw_fd()]).unwrap(), 1);
    drop(pw);
    let (code, err) = w.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a stream socket"), "{err}");
    drop(ours);
    assert_untouched(r);
}

/// The message is written before anything the program can see changes: with the worker's
/// stderr full, its program (blocked in `accept`) must still be blocked, not gone with code
/// 0 because its server closed under it; once stderr drains, the message comes and the code
/// is 1. Deterministic: the reader thread is held inside its write for as long as we like.
#[test]
fn protocol_error_under_an_accept_loop_prints_before_anything_and_exits_1() {
    let (r, mut full) = pipe();
    // Fill the pipe (non-blocking while we do; the flag is the description's, so cleared
    // again before the worker shares it).
    let fd = full.as_raw_fd();
    // SAFETY: fcntl on a pipe we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    let mut filler = 0usize;
    loop {
        match full.write(&[b'.'; 4096]) {
            Ok(n) => filler += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    assert!(filler > 0);
    let mut w = Worker::start_with("serve", Stdio::from(std::os::fd::OwnedFd::from(full)));
    let m = w.line();
    assert_eq!(m["act"].as_str(), Some("online"), "{m}");
    let q = w.line();
    let seq = q["seq"].as_i64().expect("a seq");
    w.send(&rr_reply(seq, "null", GOOD_SOCKNAME));
    assert_eq!(w.line()["act"].as_str(), Some("listening"));
    std::thread::sleep(Duration::from_millis(50)); // the program is in accept by now
    w.send(b"\n");
    std::thread::sleep(Duration::from_millis(300));
    let early = w.child.try_wait().unwrap();
    // Drain stderr whatever happened, then see how the worker ended.
    let drain = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { r }, &mut all);
        String::from_utf8_lossy(&all[filler.min(all.len())..]).into_owned()
    });
    assert_eq!(early, None, "the worker ended before it could print its message (its program saw its server closed)");
    let (code, _) = w.exit();
    let err = drain.join().unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("blank line"), "{err}");
}
