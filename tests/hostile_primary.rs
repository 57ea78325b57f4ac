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
        let (ours, theirs) = UnixStream::pair().unwrap();
        let theirs_fd = theirs.into_raw_fd();
        let mut cmd = Command::new(common::fixture_bin());
        cmd.env("NODE_UNIQUE_ID", "1")
            .env("NODE_CHANNEL_FD", "3")
            .env("FIXTURE_MODE", mode)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
                let _ = std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err);
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
    cluster::sys::scm::send(
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
    let mut w = online("idle");
    let (a, _b) = UnixStream::pair().unwrap();
    cluster::sys::scm::send(std::os::fd::AsFd::as_fd(w.chan.get_ref()), b"{\"hello\":1}\n", Some(a.as_raw_fd()), false).unwrap();
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
