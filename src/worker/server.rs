//! A server handle in a worker (or, listening in the primary itself, a plain socket): what
//! `cluster_get_server` returns. Its fd is readable while a connection waits.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Shared, Worker};
use crate::address::{DEFAULT_BACKLOG, Target};
use crate::error::{Error, Result};
use crate::ipc::wire::{self, ServerQuery};
use crate::sys::eventfd::EventFd;
use crate::sys::socket::{self, Addr};
use crate::sys::fd;

/// Round-robin connections the reader thread received and `accept` has not taken yet.
#[derive(Debug)]
pub struct ConnQueue {
    state: Mutex<(VecDeque<(i64, OwnedFd)>, bool)>,
    ready: EventFd,
}

impl ConnQueue {
    pub fn new() -> ConnQueue {
        ConnQueue { state: Mutex::new((VecDeque::new(), false)), ready: EventFd::new().expect("eventfd") }
    }

    /// Queues a connection; false (and the fd is dropped) once the server is closed.
    pub fn push(&self, seq: i64, fd: OwnedFd) -> bool {
        let mut s = self.state.lock();
        if s.1 {
            return false;
        }
        s.0.push_back((seq, fd));
        self.ready.signal();
        true
    }

    /// The next connection; the eventfd stays readable exactly while more wait.
    fn pop(&self) -> (Option<(i64, OwnedFd)>, bool) {
        let mut s = self.state.lock();
        let c = s.0.pop_front();
        if s.0.is_empty() && !s.1 {
            self.ready.reset();
        }
        (c, s.1)
    }

    /// Closes the queue and returns what was waiting (to be refused). Wakes blocked accepts.
    pub fn close(&self) -> Vec<(i64, OwnedFd)> {
        let mut s = self.state.lock();
        s.1 = true;
        self.ready.signal();
        s.0.drain(..).collect()
    }
}

/// Options for `get_server` (Node's `listen` options that matter here).
#[derive(Clone, Copy, Debug)]
pub struct ServerOptions {
    pub backlog: i32,
    pub ipv6_only: bool,
    /// Bind in this process instead of asking the primary (Node's `exclusive: true`).
    pub exclusive: bool,
    /// `accept` returns `EAGAIN` instead of waiting, and connections come non-blocking.
    pub nonblocking: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions { backlog: 0, ipv6_only: false, exclusive: false, nonblocking: false }
    }
}

#[derive(Debug)]
enum Kind {
    RoundRobin(Arc<ConnQueue>),
    /// A listening socket we accept on: shared by the primary, or bound here.
    Listener { fd: OwnedFd, unlink: Option<PathBuf> },
}


pub struct Server {
    kind: Kind,
    /// Set when the server is registered with a primary: `(channel, key, index tuple, index)`.
    cluster: Option<(Arc<Shared>, String, String, i64)>,
    worker: Option<&'static Worker>,
    port: i32,
    nonblocking: bool,
    closed: bool,
}

impl Server {
    /// Listens in this process: the primary itself, or an exclusive listen in a worker.
    pub fn bind_local(target: &Target, opts: ServerOptions) -> Result<Server> {
        let backlog = if opts.backlog > 0 { opts.backlog } else { DEFAULT_BACKLOG };
        let (fd, bound) = target.bind(opts.ipv6_only, Some(backlog))?;
        let (port, unlink) = match &bound {
            Addr::Inet(sa) => (sa.port() as i32, None),
            Addr::Unix(p) => (-1, Some(p.clone())),
        };
        Ok(Server { kind: Kind::Listener { fd, unlink }, cluster: None, worker: None, port, nonblocking: opts.nonblocking, closed: false })
    }

    /// Asks the primary for a server (`queryServer`), then reports `listening`.
    pub fn query(worker: &'static Worker, target: &Target, opts: ServerOptions) -> Result<Server> {
        let address = target.address();
        let tuple = format!("{}:{}:{}:", address.as_deref().unwrap_or(""), target.port(), target.address_type());
        let index = worker.take_index(&tuple);
        let q = ServerQuery {
            index,
            address,
            port: target.port(),
            address_type: target.address_type(),
            flags: opts.ipv6_only as i64,
            backlog: opts.backlog.max(0) as i64,
        };
        let reply = match worker.request(|out, seq| wire::query(out, "queryServer", &q, q.port, seq)) {
            Ok(r) => r,
            Err(e) => {
                worker.release_index(&tuple, index);
                return Err(e);
            }
        };
        if let Some(errno) = reply.errno.filter(|&e| e != 0) {
            worker.release_index(&tuple, index);
            let errno = (-errno).clamp(1, 4095) as i32;
            let text = io::Error::from_raw_os_error(errno);
            let where_ = match target {
                Target::Pipe(p) => p.display().to_string(),
                _ => format!("{}:{}", q.address.as_deref().unwrap_or("null"), q.port),
            };
            return Err(Error::errno(errno, format!("primary could not bind {where_}: {text}")));
        }
        let shared = worker.shared.clone();
        let (kind, port) = match reply.fd {
            Some(fd) => {
                let backlog = if opts.backlog > 0 { opts.backlog } else { DEFAULT_BACKLOG };
                socket::listen(fd.as_fd(), backlog).map_err(|e| Error::io("listen on shared socket", e))?;
                let port = match socket::local_addr(fd.as_fd()) {
                    Ok(Addr::Inet(sa)) => sa.port() as i32,
                    _ => q.port as i32,
                };
                (Kind::Listener { fd, unlink: None }, port)
            }
            None => {
                let queue = shared.servers.lock().get(&reply.key).cloned();
                let queue = queue.ok_or_else(|| Error::protocol("primary's reply lost its server"))?;
                (Kind::RoundRobin(queue), reply.sockname_port.unwrap_or(q.port) as i32)
            }
        };
        let server = Server {
            kind,
            cluster: Some((shared.clone(), reply.key, tuple, index)),
            worker: Some(worker),
            port,
            nonblocking: opts.nonblocking,
            closed: false,
        };
        shared.send_with(|out, seq| wire::query(out, "listening", &q, port as i64, seq))?;
        Ok(server)
    }

    /// The fd to poll: readable while a connection waits.
    pub fn fd(&self) -> RawFd {
        match &self.kind {
            Kind::RoundRobin(q) => q.ready.raw(),
            Kind::Listener { fd, .. } => fd.as_raw_fd(),
        }
    }

    /// The bound port (as the primary reported it), or -1 for a Unix socket.
    pub fn port(&self) -> i32 {
        self.port
    }

    /// The next connection (close-on-exec; owned by the caller). Waits unless the server is
    /// non-blocking, in which case `EAGAIN` means none waits.
    pub fn accept(&self) -> Result<OwnedFd> {
        match &self.kind {
            Kind::RoundRobin(q) => loop {
                let (conn, closed) = q.pop();
                if let Some((seq, conn)) = conn {
                    fd::set_nonblocking(conn.as_fd(), self.nonblocking).map_err(|e| Error::io("fcntl", e))?;
                    if let Some((shared, ..)) = &self.cluster {
                        // The primary may close its copy now. If the channel is gone, so is
                        // the primary; the connection is ours either way.
                        let _ = shared.send_with(|out, s| wire::accepted(out, seq, true, s));
                    }
                    return Ok(conn);
                }
                if closed {
                    return Err(Error::errno(libc::EBADF, "server is closed"));
                }
                if self.nonblocking {
                    return Err(Error::errno(libc::EAGAIN, "no connection is waiting"));
                }
                q.ready.wait(-1).map_err(|e| Error::io("poll", e))?;
            },
            Kind::Listener { fd, .. } => loop {
                match socket::accept(fd.as_fd(), self.nonblocking) {
                    Ok(c) => return Ok(c),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.nonblocking => {
                        fd::poll_readable(fd.as_fd(), -1).map_err(|e| Error::io("poll", e))?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Err(Error::errno(libc::EAGAIN, "no connection is waiting"));
                    }
                    Err(e) => return Err(Error::io("accept", e)),
                }
            },
        }
    }

    /// Stops taking connections: refuses the ones not yet accepted (the primary hands them
    /// to another worker), tells the primary (`close`), closes the socket.
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Kind::RoundRobin(q) = &self.kind {
            let refused = q.close();
            if let Some((shared, ..)) = &self.cluster {
                for (seq, conn) in refused {
                    let _ = shared.send_with(|out, s| wire::accepted(out, seq, false, s));
                    drop(conn);
                }
            }
        }
        if let Some((shared, key, tuple, index)) = &self.cluster {
            if matches!(self.kind, Kind::RoundRobin(_)) {
                shared.servers.lock().remove(key);
            }
            let _ = shared.send_with(|out, s| wire::close(out, key, s));
            if let Some(w) = &self.worker {
                w.release_index(tuple, *index);
            }
        }
        if let Kind::Listener { unlink: Some(p), .. } = &self.kind {
            socket::unlink(p);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}
