//! The primary's side of one worker's fast lane for one server (`docs/design.md` §4–§5): the end it
//! sends connections on, and its copy of the worker's end, from which it reads the queue's
//! length and takes back what the worker's program has not received.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use crate::sys::{fd, lane};

#[derive(Debug)]
pub struct Lane {
    send: OwnedFd,
    /// The worker's end (the same socket the worker receives on).
    kept: OwnedFd,
    /// The worker's program wants its connections non-blocking.
    pub nonblocking: bool,
}

impl Lane {
    /// A new lane; the worker's end is to be sent to the worker (`worker_end`).
    pub fn new(nonblocking: bool) -> io::Result<Lane> {
        let (send, kept) = lane::pair()?;
        Ok(Lane { send, kept, nonblocking })
    }

    /// A copy of the worker's end, to send it (close-on-exec).
    pub fn worker_end(&self) -> io::Result<OwnedFd> {
        self.kept.try_clone()
    }

    /// Makes a connection's flags what the program asked for, if it was accepted otherwise.
    pub fn prepare(&self, conn: &OwnedFd, accepted_nonblocking: bool) {
        if accepted_nonblocking != self.nonblocking {
            let _ = fd::set_nonblocking(conn.as_fd(), self.nonblocking);
        }
    }

    /// Sends connections (open fds the caller keeps for the call); returns how many went.
    /// The caller closes its copies of those at once.
    pub fn send(&self, conns: &[RawFd]) -> io::Result<usize> {
        lane::send(self.send.as_fd(), conns)
    }

    /// Connections waiting in the worker's queue.
    pub fn queued(&self) -> usize {
        lane::queued(self.kept.as_fd()).unwrap_or(0)
    }

    /// Takes back every connection the worker's program has not received (exactly once:
    /// each message is received by one side only).
    pub fn take_back(&self) -> Vec<OwnedFd> {
        let mut out = Vec::new();
        while let Ok(Some(c)) = lane::recv(self.kept.as_fd(), true) {
            out.push(c);
        }
        out
    }

    /// Closes the lane for the worker (its `accept` then reports the server closed) and
    /// takes back what it had not received.
    pub fn close(self) -> Vec<OwnedFd> {
        let _ = lane::shut_read(self.kept.as_fd());
        self.take_back()
    }
}
