//! The queue behind callbacks and the pull API: the distributor (or a worker's channel
//! reader) pushes, the user's thread pops. An eventfd is readable while events wait.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use std::os::fd::OwnedFd;

use parking_lot::Mutex;

use crate::sys::eventfd::EventFd;

/// A lifecycle event, with Node's payload.
#[derive(Debug)]
pub enum Event {
    Fork {
        id: u32,
        pid: i32,
    },
    Online {
        id: u32,
        pid: i32,
    },
    /// `address_type`: 4, 6, -1 (pipe), or `ADDRESS_UDP4`/`ADDRESS_UDP6`.
    Listening {
        id: u32,
        pid: i32,
        address: Option<String>,
        port: i32,
        address_type: i32,
        fd: i32,
    },
    /// A user message (JSON text), with the socket that came with it, if any.
    Message {
        id: u32,
        pid: i32,
        json: String,
        fd: Option<OwnedFd>,
    },
    Disconnect {
        id: u32,
        pid: i32,
        exited_after_disconnect: bool,
    },
    /// Worker, with the channel kept on a disconnect (`keep_channel`): the primary asked this
    /// worker to disconnect; its servers are closed, the channel stays open until the
    /// program calls `disconnect` (Node's worker does that once its servers have closed).
    DisconnectRequested {
        id: u32,
        pid: i32,
    },
    /// `code` is -1 when a signal ended the worker; `signal` is 0 otherwise.
    Exit {
        id: u32,
        pid: i32,
        code: i32,
        signal: i32,
        exited_after_disconnect: bool,
    },
    /// Something went wrong with a worker (its channel is closed) or the library.
    Error {
        id: u32,
        pid: i32,
        code: i32,
        message: String,
    },
    /// Primary: `cluster.workers` became empty (runs a pending `cluster.disconnect(cb)`).
    Drained,
}

/// Node's `addressType` `"udp4"`/`"udp6"` as numbers.
pub(crate) const ADDRESS_UDP4: i32 = 104;
pub(crate) const ADDRESS_UDP6: i32 = 106;

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
