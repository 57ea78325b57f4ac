//! The worker side: the channel to the primary (fd `NODE_CHANNEL_FD`), its reader thread,
//! and the servers obtained with `queryServer`.
//!
//! Protocol (§7): `online` at start-up; `queryServer` → reply (errno, key, sockname) →
//! `listening`; for each `NODE_HANDLE` `newconn`, `NODE_HANDLE_ACK` promptly (with the
//! `accepted` reply when the program accepts at once, else alone within `ACK_DELAY_MS`, so
//! a Node primary never stalls), and `{ack, accepted}` when the user's `accept` takes the
//! connection. Until then the primary keeps its copy, so a worker that dies before accepting
//! loses nothing: the primary hands the connection to another worker.
//! Channel EOF without a disconnect ends the process with code 0, as Node's workers do.

#![forbid(unsafe_code)]

mod reader;
pub mod server;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result, code};
use crate::event::EventQueue;
use crate::ipc::writer::Writer;
use crate::sys::{fd, process, socket};

pub use server::Server;

/// Connections a libcluster primary may hand this worker before it has accepted the first
/// (announced in `queryServer` as `libclusterInflight`; a Node primary ignores the field
/// and sends one at a time).
pub(crate) const INFLIGHT: i64 = 4;

/// The reply to one of our requests, as the reader thread stores it (validated: a reply
/// outside these ranges is a protocol error and never reaches the program).
#[derive(Debug)]
pub(crate) struct Reply {
    /// 0: success; else the error, as a positive errno (1..=4095).
    pub errno: i32,
    pub key: String,
    /// `sockname.port`, when the reply has one.
    pub sockname_port: Option<u16>,
    pub fd: Option<OwnedFd>,
    /// The fd is the server's fast lane (libcluster primary), not a shared socket.
    pub lane: bool,
}

pub(crate) struct Shared {
    pub id: u32,
    pub writer: Mutex<Writer>,
    seq: AtomicI64,
    /// Requests waiting for a reply, by our seq; `Some` once answered.
    pub pending: Mutex<HashMap<i64, Option<Reply>>>,
    pub replied: Condvar,
    /// Servers in registration order (a disconnect closes them in that order, §7.5); the
    /// reader finds round-robin ones by key to queue connections.
    pub servers: Mutex<Vec<Arc<server::ServerState>>>,
    pub connected: AtomicBool,
    pub disconnecting: AtomicBool,
    /// `cluster_worker_keep_channel(1)`: a primary's `disconnect` closes the servers and
    /// leaves the channel to the program (`DisconnectRequested`).
    pub keep_channel: AtomicBool,
    /// The primary asked this worker to disconnect and the channel was kept.
    pub disconnect_requested: AtomicBool,
    /// The program closed the bare channel (Node's `process.disconnect()`): no
    /// `exitedAfterDisconnect`, and the process is not ended by the library.
    pub bare_close: AtomicBool,
    /// A `NODE_HANDLE_ACK` for a queued `newconn` not yet written: it goes out with the
    /// `accepted` reply when the program accepts, or alone after `ACK_DELAY_MS` (the reader
    /// sees to that), so a Node primary is never kept waiting. Changed under `writer`.
    pub ack_owed: AtomicUsize,
    pub events: Arc<EventQueue>,
}

impl Shared {
    pub fn server(&self, key: &str) -> Option<Arc<server::ServerState>> {
        self.servers.lock().iter().find(|s| s.key == key).cloned()
    }

    /// Closes every server (each sends `close{key}`), as a disconnect does.
    pub fn close_servers(&self) {
        let servers: Vec<_> = self.servers.lock().clone();
        for s in servers {
            s.close(Some(self));
        }
    }

    pub fn next_seq(&self) -> i64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Formats with `f` (given a fresh seq) and sends one line, after an owed ACK (in the
    /// same write when possible).
    pub fn send_with(&self, f: impl FnOnce(&mut Vec<u8>, i64)) -> Result<()> {
        let mut line = Vec::with_capacity(128);
        let mut w = self.writer.lock();
        f(&mut line, self.next_seq());
        let owed = self.ack_owed.swap(0, Ordering::AcqRel);
        if owed > 0 {
            return w.send_control_then(crate::ipc::wire::HANDLE_ACK, owed, &line);
        }
        w.send(&line, None)
    }

    /// Ends the worker: says why (`why`, after "libcluster: worker N: ") and exits 1, or
    /// exits 0 without a reason (the primary went away, as Node's workers do). Called before
    /// anything the program can see changes — its servers stay open, its requests keep
    /// waiting, its channel is not shut down — so a program looping on `accept` cannot see
    /// its server closed and exit 0 first, and the message is always written (issue 11,
    /// defect 6). A failed write to stderr is ignored: the exit code still says it.
    pub fn leave(&self, why: Option<&str>) -> ! {
        if let Some(why) = why {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "libcluster: worker {}: {why}", self.id);
        }
        process::exit_from_library_thread(if why.is_some() { 1 } else { 0 })
    }

    /// Writes an owed `NODE_HANDLE_ACK` now (before any other reply, or when it has waited
    /// long enough).
    pub fn pay_ack(&self, w: &mut crate::ipc::writer::Writer) -> Result<()> {
        for _ in 0..self.ack_owed.swap(0, Ordering::AcqRel) {
            w.send_control(crate::ipc::wire::HANDLE_ACK)?;
        }
        Ok(())
    }
}

/// The primary took this worker out of a server (it closed the server's fast lane): only a
/// disconnect or a drain does that, and the program may see it before the channel's
/// `disconnect` message is read.
pub(crate) static TAKEN_OUT: AtomicBool = AtomicBool::new(false);

pub struct Worker {
    pub(crate) shared: Arc<Shared>,
    sock: Arc<OwnedFd>,
    /// Per `(address, port, addressType, fd)`: Node's listen index bookkeeping (§6.1).
    indexes: Mutex<HashMap<String, (i64, Vec<i64>)>>,
}

impl Worker {
    /// Start-up (§1, §10.1): takes the channel fd, removes Node's variables from the
    /// environment, arms the parent-death signal, starts the reader, sends `online`.
    pub fn start(id: u32, channel_fd: Option<&str>, events: Arc<EventQueue>) -> Result<Worker> {
        for k in ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"] {
            process::unset_env(k);
        }
        let raw: i32 = channel_fd
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Error::new(code::CLOSED, "NODE_CHANNEL_FD is missing or not a number"))?;
        let sock = fd::adopt_inherited(raw).map_err(|e| Error::io(format!("channel fd {raw}"), e))?;
        let kind = socket::kind(sock.as_fd());
        if !matches!(kind, Ok((libc::AF_UNIX, libc::SOCK_STREAM))) {
            std::mem::forget(sock); // not ours to close: it is not a channel
            return Err(Error::new(code::PROTOCOL, format!("channel fd {raw} is not a Unix stream socket")));
        }
        // Our children must not inherit the channel (every library fd is close-on-exec).
        fd::set_cloexec(sock.as_fd()).map_err(|e| Error::io("fcntl", e))?;
        let _ = process::set_parent_death_signal(libc::SIGTERM);
        let sock = Arc::new(sock);
        let shared = Arc::new(Shared {
            id,
            writer: Mutex::new(Writer::new(sock.clone(), false)),
            seq: AtomicI64::new(0),
            pending: Mutex::new(HashMap::new()),
            replied: Condvar::new(),
            servers: Mutex::new(Vec::new()),
            connected: AtomicBool::new(true),
            disconnecting: AtomicBool::new(false),
            keep_channel: AtomicBool::new(false),
            disconnect_requested: AtomicBool::new(false),
            bare_close: AtomicBool::new(false),
            ack_owed: AtomicUsize::new(0),
            events,
        });
        // `online` goes out before the reader starts, so a disconnect already waiting in the
        // channel cannot close it first. If the primary is gone already, the reader finds
        // EOF and the worker leaves as Node's do.
        let _ = shared.send_with(|out, seq| crate::ipc::wire::act(out, "online", seq));
        reader::start(shared.clone(), sock.clone())?;
        Ok(Worker { shared, sock, indexes: Mutex::new(HashMap::new()) })
    }

    /// `process.send(message[, handle])`: `json` is any JSON text; `fd`, a socket to pass
    /// (duplicated: the caller keeps theirs). Queued in order behind a handle in flight.
    pub fn send(&self, json: &str, fd: Option<std::os::fd::BorrowedFd<'_>>) -> Result<()> {
        if !self.shared.connected.load(Ordering::Acquire) {
            return Err(Error::new(code::CLOSED, "IPC channel is closed"));
        }
        let (line, fd) = crate::ipc::outbound::user_message(json, fd)?;
        self.shared.writer.lock().send(&line, fd.map(crate::ipc::writer::OutFd::Owned))
    }

    /// `cluster.worker.disconnect()` (§7.5): closes every server (each sends `close`), sends
    /// `exitedAfterDisconnect` and waits for the primary's ack, then closes the channel. The
    /// process goes on (connections already accepted are the program's to finish); a
    /// `disconnect` event follows. A second call fails with `CLUSTER_E_CLOSED`.
    pub fn disconnect(&self) -> Result<()> {
        if self.shared.disconnecting.swap(true, Ordering::AcqRel) || !self.shared.connected.load(Ordering::Acquire) {
            return Err(Error::new(code::CLOSED, "already disconnecting or disconnected"));
        }
        self.shared.close_servers();
        let acked = self.request(|out, seq| crate::ipc::wire::act(out, "exitedAfterDisconnect", seq));
        let _ = socket::shutdown(self.sock.as_fd());
        match acked {
            Ok(_) => Ok(()),
            // The primary closed the channel first (its own disconnect, or it is gone): the
            // channel is closed either way, which is what was asked.
            Err(e) if e.code == -libc::EPIPE || e.code == -libc::ECONNRESET => {
                Err(Error::new(code::CLOSED, "the channel to the primary closed during the disconnect"))
            }
            Err(e) => Err(e),
        }
    }

    /// Node's `process.disconnect()` in a worker: closes the channel itself, without the
    /// cluster's disconnect protocol (the primary sees `exitedAfterDisconnect` false); the
    /// servers stay. A `disconnect` event follows (`exited_after_disconnect` 0); the
    /// process is left running (Node's worker then exits 0 by itself).
    pub fn close_channel(&self) -> Result<()> {
        if !self.shared.connected.load(Ordering::Acquire) || self.shared.disconnecting.swap(true, Ordering::AcqRel) {
            return Err(Error::new(code::CLOSED, "already disconnecting or disconnected"));
        }
        self.shared.bare_close.store(true, Ordering::Release);
        socket::shutdown(self.sock.as_fd()).map_err(|e| Error::io("shutdown the channel", e))
    }

    /// Whether a primary's `disconnect` leaves the channel open until `disconnect()` (Node's
    /// worker finishes its connections first) instead of closing it with the servers.
    pub fn keep_channel(&self, on: bool) {
        self.shared.keep_channel.store(on, Ordering::Release);
    }

    /// `cluster.worker.kill()` / `destroy()` in a worker (§7.5): if still connected, tells
    /// the primary the exit is voluntary (`exitedAfterDisconnect`, waiting for its ack) and
    /// closes the channel; then exits with code 0. Servers are not closed first, as in Node.
    pub fn destroy(&self) -> ! {
        if !self.shared.disconnecting.swap(true, Ordering::AcqRel) && self.shared.connected.load(Ordering::Acquire) {
            let _ = self.request(|out, seq| crate::ipc::wire::act(out, "exitedAfterDisconnect", seq));
            let _ = socket::shutdown(self.sock.as_fd());
        }
        process::exit_from_library_thread(0)
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    /// libcluster's readiness (pm2's `wait_ready`): tells a supervising primary this worker
    /// is ready, when its `ready_on` is explicit. A Node primary ignores the message.
    pub fn ready(&self) -> Result<()> {
        if !self.shared.connected.load(Ordering::Acquire) {
            return Err(Error::new(code::CLOSED, "IPC channel is closed"));
        }
        self.shared.send_with(|out, seq| crate::ipc::wire::act(out, "ready", seq))
    }

    /// Whether this worker is on its way out: the primary asked it to disconnect (a drain),
    /// it disconnected itself, or its channel is gone. A server answers `Connection: close`
    /// from then on.
    pub fn draining(&self) -> bool {
        let s = &self.shared;
        !s.connected.load(Ordering::Acquire)
            || s.disconnecting.load(Ordering::Acquire)
            || s.disconnect_requested.load(Ordering::Acquire)
            || TAKEN_OUT.load(Ordering::Acquire)
    }

    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// Sends a request line built by `f` (given its seq) and waits for the reply.
    pub(crate) fn request(&self, f: impl FnOnce(&mut Vec<u8>, i64)) -> Result<Reply> {
        let mut line = Vec::with_capacity(256);
        let seq;
        {
            let mut w = self.shared.writer.lock();
            seq = self.shared.next_seq();
            f(&mut line, seq);
            crate::trace::trace!("worker", "send {}", String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)));
            self.shared.pending.lock().insert(seq, None);
            if let Err(e) = w.send(&line, None) {
                self.shared.pending.lock().remove(&seq);
                return Err(e);
            }
        }
        let mut pending = self.shared.pending.lock();
        loop {
            if let Some(slot) = pending.get_mut(&seq)
                && let Some(r) = slot.take()
            {
                pending.remove(&seq);
                return Ok(r);
            }
            if !self.shared.connected.load(Ordering::Acquire) {
                pending.remove(&seq);
                return Err(Error::new(code::CLOSED, "IPC channel closed before the primary replied"));
            }
            self.shared.replied.wait(&mut pending);
        }
    }

    /// Allocates the listen index for a tuple (lowest unused after the last, as Node does).
    pub(crate) fn take_index(&self, tuple: &str) -> i64 {
        let mut idx = self.indexes.lock();
        let e = idx.entry(tuple.to_string()).or_insert((0, Vec::new()));
        let i = e.0;
        e.0 += 1;
        e.1.push(i);
        i
    }

    pub(crate) fn release_index(&self, tuple: &str, index: i64) {
        let mut idx = self.indexes.lock();
        if let Some(e) = idx.get_mut(tuple) {
            e.1.retain(|&i| i != index);
            if e.1.is_empty() {
                idx.remove(tuple);
            }
        }
    }
}
