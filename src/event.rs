//! The queue behind callbacks and the pull API: the distributor (or a worker's channel
//! reader) pushes, the user's thread pops. An eventfd is readable while events wait.
//!
//! Bounded: the text of user messages waiting here is capped (`pending_limit`). Past it, a
//! worker's channel reader waits for the program to dispatch (`push_message` blocks), and
//! the primary's distributor stops reading worker channels until `space` becomes readable
//! (the queue fell below half the cap). Lifecycle events are never held back.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};

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
    /// Primary: what supervision did or saw (`id` 0 when no worker is concerned).
    Supervision {
        id: u32,
        pid: i32,
        notice: crate::primary::supervisor::Notice,
    },
}

/// Node's `addressType` `"udp4"`/`"udp6"` as numbers.
pub(crate) const ADDRESS_UDP4: i32 = 104;
pub(crate) const ADDRESS_UDP6: i32 = 106;

/// Bytes of user-message text that may wait: max(64 MiB, 4 × the message cap), or
/// `LIBCLUSTER_MAX_PENDING` (bytes, at least 4 KiB) — the same bound the primary keeps on
/// what it has not yet written to one worker.
pub(crate) fn pending_limit() -> usize {
    static FROM_ENV: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let env =
        *FROM_ENV.get_or_init(|| std::env::var("LIBCLUSTER_MAX_PENDING").ok().and_then(|v| v.parse::<usize>().ok()).map(|n| n.max(4096)));
    env.unwrap_or_else(|| (64 << 20).max(4 * crate::ipc::max_line()))
}

/// What an event weighs against the bound (its message text; lifecycle events weigh 0).
fn weight(ev: &Event) -> usize {
    match ev {
        Event::Message { json, .. } => json.len() + 64,
        _ => 0,
    }
}

#[derive(Debug)]
pub struct EventQueue {
    queue: Mutex<VecDeque<Event>>,
    ready: EventFd,
    /// Bytes of message text waiting.
    held: AtomicUsize,
    /// Someone stopped reading because the queue was full: tell them when there is room.
    starved: AtomicBool,
    room: Condvar,
    /// Readable once a full queue has fallen below half its bound (the distributor polls it).
    space: EventFd,
    /// The bound on `held` (`pending_limit()` when the queue was made).
    limit: usize,
}

impl EventQueue {
    pub fn new() -> std::io::Result<EventQueue> {
        EventQueue::with_limit(pending_limit())
    }

    /// A queue holding at most `limit` bytes of user-message text.
    pub fn with_limit(limit: usize) -> std::io::Result<EventQueue> {
        Ok(EventQueue {
            limit,
            queue: Mutex::new(VecDeque::new()),
            ready: EventFd::new()?,
            held: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            room: Condvar::new(),
            space: EventFd::new()?,
        })
    }

    pub fn push(&self, ev: Event) {
        let w = weight(&ev);
        self.queue.lock().push_back(ev);
        self.held.fetch_add(w, Ordering::AcqRel);
        self.ready.signal();
    }

    /// Whether user messages fill the bound: a reader should stop until there is room.
    pub fn is_full(&self) -> bool {
        let full = self.held.load(Ordering::Acquire) >= self.limit;
        if full {
            self.starved.store(true, Ordering::Release);
        }
        full
    }

    /// Pushes a user message, first waiting while the queue is full (a worker's channel
    /// reader: the program is not dispatching, so this peer is held back).
    pub fn push_message(&self, ev: Event) {
        let mut q = self.queue.lock();
        while self.held.load(Ordering::Acquire) >= self.limit {
            self.starved.store(true, Ordering::Release);
            self.room.wait(&mut q);
        }
        self.held.fetch_add(weight(&ev), Ordering::AcqRel);
        q.push_back(ev);
        drop(q);
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
        if let Some(e) = &ev {
            let held = self.held.fetch_sub(weight(e), Ordering::AcqRel) - weight(e);
            if held < self.limit / 2 && self.starved.swap(false, Ordering::AcqRel) {
                self.room.notify_all();
                self.space.signal();
            }
        }
        ev
    }

    /// Readable once a full queue has room again (cleared by `take_space`).
    pub fn space_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.space.as_fd()
    }

    pub fn take_space(&self) {
        self.space.reset();
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

#[cfg(test)]
mod bound_tests {
    use super::*;
    use std::sync::Arc;

    fn msg(n: usize) -> Event {
        Event::Message { id: 1, pid: 1, json: "x".repeat(n), fd: None }
    }

    /// A reader pushing messages into a full queue waits until the program has taken half
    /// of it; lifecycle events are never held back; `space` says when there is room.
    #[test]
    fn a_full_queue_holds_the_reader_back_until_half_is_taken() {
        let q = Arc::new(EventQueue::with_limit(10_000).unwrap());
        for _ in 0..10 {
            q.push_message(msg(936)); // 1000 bytes each with the per-event weight
        }
        assert!(q.is_full());
        q.push(Event::Online { id: 2, pid: 2 }); // never blocks
        let pushed = Arc::new(AtomicBool::new(false));
        let t = {
            let (q, pushed) = (q.clone(), pushed.clone());
            std::thread::spawn(move || {
                q.push_message(msg(936));
                pushed.store(true, Ordering::Release);
            })
        };
        // The reader stays blocked while the queue is full (bounded wait: it must not pass).
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!pushed.load(Ordering::Acquire), "a push into a full queue did not wait");
        assert!(!crate::sys::fd::poll_readable(q.space_fd(), 0).unwrap(), "space signalled while full");
        for _ in 0..5 {
            assert!(q.pop().is_some());
        }
        // 5 messages taken: still at half (5000 of 10000), not below: still waiting.
        assert!(!pushed.load(Ordering::Acquire));
        assert!(q.pop().is_some()); // below half now
        t.join().unwrap();
        assert!(pushed.load(Ordering::Acquire));
        assert!(crate::sys::fd::poll_readable(q.space_fd(), 0).unwrap(), "space not signalled once below half");
        q.take_space();
        assert!(!crate::sys::fd::poll_readable(q.space_fd(), 0).unwrap());
        let mut n = 0;
        while q.pop().is_some() {
            n += 1;
        }
        assert_eq!(n, 10 + 1 + 1 - 6, "every event is delivered, none lost");
        assert_eq!(q.held.load(Ordering::Acquire), 0);
    }
}
