//! The queue behind callbacks and the pull API: the distributor (or a worker's channel
//! reader) pushes, the user's thread pops. An eventfd is readable while events wait.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::sys::eventfd::EventFd;

/// A lifecycle event, with Node's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Fork { id: u32, pid: i32 },
    Online { id: u32, pid: i32 },
    Listening { id: u32, pid: i32, address: Option<String>, port: i32, address_type: i32, fd: i32 },
    Message { id: u32, pid: i32, json: String },
    Disconnect { id: u32, pid: i32, exited_after_disconnect: bool },
    /// `code` is -1 when a signal ended the worker; `signal` is 0 otherwise.
    Exit { id: u32, pid: i32, code: i32, signal: i32, exited_after_disconnect: bool },
    /// Something went wrong with a worker (its channel is closed) or the library.
    Error { id: u32, pid: i32, code: i32, message: String },
}

#[derive(Debug)]
pub struct EventQueue {
    queue: Mutex<VecDeque<Event>>,
    ready: EventFd,
}

impl EventQueue {
    pub fn new() -> std::io::Result<EventQueue> {
        Ok(EventQueue { queue: Mutex::new(VecDeque::new()), ready: EventFd::new()? })
    }

    pub fn push(&self, ev: Event) {
        self.queue.lock().push_back(ev);
        self.ready.signal();
    }

    /// The next event, if any. The eventfd is reset before the queue is read, so an event
    /// pushed meanwhile leaves it readable.
    pub fn pop(&self) -> Option<Event> {
        let mut q = self.queue.lock();
        let ev = q.pop_front();
        if q.is_empty() {
            self.ready.reset();
        }
        ev
    }

    pub fn is_empty(&self) -> bool {
        self.queue.lock().is_empty()
    }

    /// Waits until an event may be pending, at most `timeout_ms` (-1: no limit).
    pub fn wait(&self, timeout_ms: i32) -> std::io::Result<bool> {
        self.ready.wait(timeout_ms)
    }

    /// Wakes a waiter without an event (used by `stop`).
    pub fn wake(&self) {
        self.ready.signal();
    }

    pub fn fd(&self) -> i32 {
        self.ready.raw()
    }
}
