//! A server handle in a worker (or, listening in the primary itself, a plain socket): what
//! `cluster_get_server` returns. Its fd is readable while a connection waits or once the
//! server has been closed (by a disconnect), so a poll loop always wakes.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::{Shared, Worker};
use crate::address::{DEFAULT_BACKLOG, Target};
use crate::error::{Error, Result};
use crate::ipc::wire::{self, ServerQuery};
use crate::sys::epoll::{Epoll, READABLE};
use crate::sys::eventfd::EventFd;
use crate::sys::fd;
use crate::sys::socket::{self, Addr};

/// What the server accepts from.
#[derive(Debug)]
pub(crate) enum Source {
    /// Connections the channel reader received (`newconn`), in `ServerState::queue`.
    RoundRobin,
    /// A listening socket we accept on: shared by the primary, or bound here. `poll` is an
    /// epoll fd watching it and `wake`, so one fd reports both.
    Listener { sock: OwnedFd, poll: Epoll },
    /// A bound datagram socket (UDP is always shared): the user reads it directly.
    Datagram { sock: OwnedFd },
    /// The fast lane from a libcluster primary: each message on this `SOCK_SEQPACKET`
    /// socket is one connection; the program's thread receives it in `accept`.
    Lane { sock: OwnedFd },
}

/// The part of a server the channel reader also sees.
#[derive(Debug)]
pub(crate) struct ServerState {
    pub key: String,
    pub source: Source,
    /// Connections from `newconn` that `accept` has not taken yet: every connection of a
    /// round-robin server on Node's path, and those a reuseport primary moved to a listener.
    queue: Mutex<VecDeque<(i64, OwnedFd)>>,
    /// `wake` may be set for the queue (a listener's `accept` then resets it; otherwise it
    /// need not, and makes no syscall for it).
    woken: AtomicBool,
    wake: EventFd,
    closed: AtomicBool,
}

impl ServerState {
    fn new(key: String, source: Source) -> Result<Arc<ServerState>> {
        let wake = EventFd::new().map_err(|e| Error::io("eventfd", e))?;
        if let Source::Listener { sock, poll } = &source {
            poll.add(sock.as_fd(), READABLE, 0).map_err(|e| Error::io("epoll_ctl", e))?;
            poll.add(wake.as_fd(), READABLE, 1).map_err(|e| Error::io("epoll_ctl", e))?;
        }
        Ok(Arc::new(ServerState {
            key,
            source,
            queue: Mutex::new(VecDeque::new()),
            woken: AtomicBool::new(false),
            wake,
            closed: AtomicBool::new(false),
        }))
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues a `newconn`; false once the server is closed (the caller refuses it).
    pub fn push(&self, seq: i64, conn: OwnedFd) -> std::result::Result<(), OwnedFd> {
        if !matches!(self.source, Source::RoundRobin | Source::Listener { .. }) {
            return Err(conn);
        }
        {
            let mut q = self.queue.lock();
            if self.is_closed() {
                return Err(conn);
            }
            q.push_back((seq, conn));
        }
        // Signalled with the lock released, so the woken thread does not spin on it.
        self.woken.store(true, Ordering::Release);
        self.wake.signal();
        Ok(())
    }

    /// The next connection from `newconn`, if any (the wake-up is reset once none is left).
    fn take_queued(&self) -> Option<(i64, OwnedFd)> {
        if !self.woken.load(Ordering::Acquire) {
            return None;
        }
        let mut q = self.queue.lock();
        let c = q.pop_front();
        if q.is_empty() && !self.is_closed() {
            self.woken.store(false, Ordering::Release);
            self.wake.reset();
        }
        c
    }

    /// Stops the server once: refuses connections not yet accepted (the primary hands them
    /// to another worker), sends `close{key}` when it is registered with a primary, and
    /// wakes anyone polling or blocked in `accept`.
    pub fn close(&self, channel: Option<&Shared>) {
        let refused: Vec<(i64, OwnedFd)> = match &self.source {
            Source::RoundRobin | Source::Listener { .. } => {
                let mut q = self.queue.lock();
                if self.closed.swap(true, Ordering::AcqRel) {
                    return;
                }
                q.drain(..).collect()
            }
            Source::Lane { sock } => {
                if self.closed.swap(true, Ordering::AcqRel) {
                    return;
                }
                // Whatever is still queued goes back to the primary (it receives it from
                // its copy when it hears `close`), and a waiting `accept` wakes.
                let _ = crate::sys::lane::shut_read(sock.as_fd());
                Vec::new()
            }
            _ => {
                if self.closed.swap(true, Ordering::AcqRel) {
                    return;
                }
                Vec::new()
            }
        };
        if let Some(ch) = channel {
            for (seq, conn) in refused {
                let _ = ch.send_with(|out, s| wire::accepted(out, seq, false, s));
                drop(conn);
            }
            let _ = ch.send_with(|out, s| wire::close(out, &self.key, s));
        }
        // Only now wake the program: it may exit at once, and the primary must have heard
        // `close` first (§7.5).
        self.wake.signal();
    }
}

/// Options for `get_server` (Node's `listen` options that matter here).
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerOptions {
    pub backlog: i32,
    pub ipv6_only: bool,
    /// Bind in this process instead of asking the primary (Node's `exclusive: true`).
    pub exclusive: bool,
    /// `accept` returns `EAGAIN` instead of waiting, and connections come non-blocking.
    pub nonblocking: bool,
    /// A UDP socket (Node's `dgram` bind) instead of a stream server.
    pub udp: bool,
    /// UDP: `SO_REUSEADDR` (Node's `reuseAddr`, flag 4).
    pub reuse_addr: bool,
    /// A Unix socket path readable / writable by every user (Node's `readableAll`,
    /// `writableAll`: the socket file gets those permission bits).
    pub readable_all: bool,
    pub writable_all: bool,
}

pub struct Server {
    state: Arc<ServerState>,
    /// Set when the server is registered with a primary: the worker and its index tuple.
    cluster: Option<(&'static Worker, String, i64)>,
    unlink: Option<PathBuf>,
    port: i32,
    nonblocking: bool,
    /// A blocking accept on a listener last found none waiting: wait first next time (the
    /// listener is non-blocking, its description shared with the primary's copy, so an
    /// accept that would wait costs accept, poll, accept).
    idle: AtomicBool,
    /// The last connection's fd number was within `FD_MARGIN` of `fd_limit`.
    near_fd_limit: AtomicBool,
    fd_limit: std::sync::atomic::AtomicU64,
    received: std::sync::atomic::AtomicU64,
}

/// Within this many fds of `RLIMIT_NOFILE`, a lane server looks before it receives.
const FD_MARGIN: u64 = 8;
/// A lane server reads `RLIMIT_NOFILE` again every this many connections.
const LIMIT_REREAD: u64 = 64;

/// A wait shorter than this did not sleep: connections were waiting.
const SLEPT: std::time::Duration = std::time::Duration::from_micros(5);

impl Server {
    /// Listens in this process: the primary itself, or an exclusive listen in a worker.
    pub fn bind_local(target: &Target, opts: ServerOptions) -> Result<Server> {
        let (source, bound) = if opts.udp {
            let (sock, bound) = target.bind_datagram(opts.ipv6_only, opts.reuse_addr)?;
            (Source::Datagram { sock }, bound)
        } else {
            let backlog = if opts.backlog > 0 { opts.backlog } else { DEFAULT_BACKLOG };
            let (sock, bound) = target.bind(opts.ipv6_only, Some(backlog))?;
            crate::address::apply_pipe_mode(&bound, opts.readable_all, opts.writable_all)?;
            (Source::Listener { sock, poll: Epoll::new().map_err(|e| Error::io("epoll_create1", e))? }, bound)
        };
        let (port, unlink) = match &bound {
            Addr::Inet(sa) => (sa.port() as i32, None),
            Addr::Unix(p) => (-1, Some(p.clone())),
        };
        let state = ServerState::new(String::new(), source)?;
        Ok(Server {
            state,
            cluster: None,
            unlink,
            port,
            nonblocking: opts.nonblocking,
            idle: AtomicBool::new(false),
            near_fd_limit: AtomicBool::new(false),
            fd_limit: std::sync::atomic::AtomicU64::new(fd::soft_limit()),
            received: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Asks the primary for a server (`queryServer`), then reports `listening`.
    pub fn query(worker: &'static Worker, target: &Target, opts: ServerOptions) -> Result<Server> {
        let address = target.address();
        let address_type = if opts.udp { target.udp_type().to_string() } else { target.address_type().to_string() };
        let fd_field = if opts.udp { Some(-1) } else { None };
        let tuple = format!(
            "{}:{}:{}:{}",
            address.as_deref().unwrap_or(""),
            target.port(),
            address_type,
            fd_field.map_or(String::new(), |f: i64| f.to_string())
        );
        let index = worker.take_index(&tuple);
        let flags = if opts.udp { (opts.ipv6_only as i64) | if opts.reuse_addr { 4 } else { 0 } } else { opts.ipv6_only as i64 };
        let q = ServerQuery {
            index,
            address,
            port: target.port(),
            address_type: address_type.clone(),
            fd: fd_field,
            flags,
            backlog: if opts.udp { None } else { Some(opts.backlog.max(0) as i64) },
            inflight: (!opts.udp).then_some(super::INFLIGHT),
            lane: (!opts.udp).then_some(wire::LANE_WANTED | if opts.nonblocking { wire::LANE_NONBLOCKING } else { 0 }),
            readable_all: opts.readable_all && matches!(target, Target::Pipe(_)),
            writable_all: opts.writable_all && matches!(target, Target::Pipe(_)),
        };
        let reply = match worker.request(|out, seq| wire::query(out, "queryServer", &q, q.port, seq)) {
            Ok(r) => r,
            Err(e) => {
                worker.release_index(&tuple, index);
                return Err(e);
            }
        };
        if reply.errno != 0 {
            worker.release_index(&tuple, index);
            let errno = reply.errno; // positive and in range: the reader checked it
            let text = crate::error::io_text(&io::Error::from_raw_os_error(errno));
            let where_ = match target {
                Target::Pipe(p) => p.display().to_string(),
                _ => format!("{}:{}", q.address.as_deref().unwrap_or("null"), q.port),
            };
            return Err(Error::errno(errno, format!("primary could not bind {where_}: {text}")));
        }
        let shared = &worker.shared;
        let (state, port) = match reply.fd {
            Some(sock) if reply.lane => {
                if !matches!(socket::kind(sock.as_fd()), Ok((libc::AF_UNIX, libc::SOCK_SEQPACKET))) {
                    worker.release_index(&tuple, index);
                    return Err(Error::protocol("the primary's fast lane is not a Unix seqpacket socket"));
                }
                (ServerState::new(reply.key.clone(), Source::Lane { sock })?, reply.sockname_port.map_or(q.port as i32, i32::from))
            }
            Some(sock) if opts.udp => {
                let port = local_port(&sock).unwrap_or(q.port as i32);
                (ServerState::new(reply.key.clone(), Source::Datagram { sock })?, port)
            }
            Some(sock) => {
                // Shared handle: the primary bound it; we listen and accept ourselves.
                let backlog = if opts.backlog > 0 { opts.backlog } else { DEFAULT_BACKLOG };
                socket::listen(sock.as_fd(), backlog).map_err(|e| Error::io("listen on shared socket", e))?;
                let port = local_port(&sock).unwrap_or(q.port as i32);
                let poll = Epoll::new().map_err(|e| Error::io("epoll_create1", e))?;
                (ServerState::new(reply.key.clone(), Source::Listener { sock, poll })?, port)
            }
            None => {
                let state = shared.server(&reply.key).ok_or_else(|| Error::protocol("primary's reply lost its server"))?;
                (state, reply.sockname_port.map_or(q.port as i32, i32::from))
            }
        };
        if !matches!(state.source, Source::RoundRobin) {
            shared.servers.lock().push(state.clone());
        }
        let server = Server {
            state,
            cluster: Some((worker, tuple, index)),
            unlink: None,
            port,
            nonblocking: opts.nonblocking,
            idle: AtomicBool::new(false),
            near_fd_limit: AtomicBool::new(false),
            fd_limit: std::sync::atomic::AtomicU64::new(fd::soft_limit()),
            received: std::sync::atomic::AtomicU64::new(1),
        };
        shared.send_with(|out, seq| wire::query(out, "listening", &q, port as i64, seq))?;
        Ok(server)
    }

    /// The fd to poll: readable while a connection waits or once the server is closed. For
    /// UDP, the datagram socket itself.
    pub fn fd(&self) -> RawFd {
        match &self.state.source {
            Source::RoundRobin => self.state.wake.raw(),
            Source::Listener { poll, .. } => poll.raw(),
            Source::Datagram { sock } | Source::Lane { sock } => sock.as_raw_fd(),
        }
    }

    /// The bound port (as the primary reported it), or -1 for a Unix socket.
    pub fn port(&self) -> i32 {
        self.port
    }

    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// The next connection (close-on-exec; owned by the caller). Waits unless the server is
    /// non-blocking, in which case `EAGAIN` means none waits. `EBADF` once closed.
    pub fn accept(&self) -> Result<OwnedFd> {
        let closed = || Error::errno(libc::EBADF, "server is closed");
        let wait =
            |fd: std::os::fd::BorrowedFd<'_>| -> Result<()> { fd::poll_readable(fd, -1).map(drop).map_err(|e| Error::io("poll", e)) };
        match &self.state.source {
            Source::RoundRobin => loop {
                if let Some(conn) = self.state.take_queued() {
                    return self.accepted(conn);
                }
                if self.state.is_closed() {
                    return Err(closed());
                }
                if self.nonblocking {
                    return Err(Error::errno(libc::EAGAIN, "no connection is waiting"));
                }
                wait(self.state.wake.as_fd())?;
            },
            Source::Listener { sock, poll } => loop {
                if self.state.is_closed() {
                    return Err(closed());
                }
                // Connections the primary moved here (reuseport) come first.
                if let Some(conn) = self.state.take_queued() {
                    return self.accepted(conn);
                }
                if !self.nonblocking && self.idle.load(Ordering::Relaxed) {
                    let t = std::time::Instant::now();
                    wait(poll.as_fd())?;
                    self.idle.store(t.elapsed() >= SLEPT, Ordering::Relaxed);
                }
                match socket::accept(sock.as_fd(), self.nonblocking) {
                    Ok(c) => return Ok(c),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.nonblocking => {
                        if !self.idle.swap(true, Ordering::Relaxed) {
                            wait(poll.as_fd())?;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Err(Error::errno(libc::EAGAIN, "no connection is waiting"));
                    }
                    Err(e) => return Err(Error::io("accept", e)),
                }
            },
            Source::Lane { sock } => loop {
                if self.state.is_closed() {
                    return Err(closed());
                }
                // Near the fd limit a plain receive could lose the connection (the kernel
                // drops an fd that does not fit): look first, and leave it queued if it does
                // not fit — the primary then deals it to another worker (defect 5).
                let mut nonblocking = self.nonblocking;
                if self.near_fd_limit.load(Ordering::Relaxed) {
                    match crate::sys::lane::next_fits(sock.as_fd()) {
                        Ok(true) => nonblocking = true,
                        Ok(false) => {
                            return Err(Error::errno(
                                libc::EMFILE,
                                "no fd left for the next connection: it stays queued for another worker",
                            ));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.nonblocking => {
                            wait(sock.as_fd())?;
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Err(Error::errno(libc::EAGAIN, "no connection is waiting"));
                        }
                        Err(e) => return Err(Error::io("receive a connection", e)),
                    }
                }
                // Connections come with the flags the program asked for: nothing to set. A
                // blocking receive is woken by `close` (it shuts the lane: end of stream).
                match crate::sys::lane::recv(sock.as_fd(), nonblocking) {
                    Ok(Some(c)) => return self.lane_connection(c),
                    // The primary closed the lane (it took this worker out of the server):
                    // a disconnect or a drain, whose message may not have been read yet.
                    Ok(None) => {
                        super::TAKEN_OUT.store(true, Ordering::Release);
                        return Err(closed());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.nonblocking => wait(sock.as_fd())?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Err(Error::errno(libc::EAGAIN, "no connection is waiting"));
                    }
                    Err(e) => return Err(Error::io("receive a connection", e)),
                }
            },
            Source::Datagram { .. } => {
                Err(Error::errno(libc::EOPNOTSUPP, "a UDP socket has no connections to accept; read it with recvfrom"))
            }
        }
    }

    /// Node v20's answer for a server at its `maxConnections`: the next connection handed to
    /// this worker goes back to the primary, which gives it to another worker (`accepted:
    /// false`), so it is not lost. Returns whether one was given back (`false`: none waits).
    /// Only connections handed one by one (`newconn`) can be: `EOPNOTSUPP` for the fast lane
    /// and for listeners, where a program that stops accepting leaves its connections to
    /// the others (the primary takes a lane's back once they wait; a listener's queue is
    /// shared or rebalanced). `EBADF` once closed.
    pub fn refuse(&self) -> Result<bool> {
        match &self.state.source {
            Source::RoundRobin => match self.state.take_queued() {
                Some((seq, conn)) => {
                    drop(conn);
                    if let Some((w, ..)) = &self.cluster {
                        w.shared.send_with(|out, s| wire::accepted(out, seq, false, s))?;
                    }
                    Ok(true)
                }
                None if self.state.is_closed() => Err(Error::errno(libc::EBADF, "server is closed")),
                None => Ok(false),
            },
            _ => Err(Error::errno(
                libc::EOPNOTSUPP,
                "only connections handed one by one (newconn) can be given back; stop accepting instead",
            )),
        }
    }

    /// A connection from the fast lane is the program's only if it is a stream socket: one
    /// `getsockopt(SO_TYPE)` per connection (the lane's only syscall besides `recvmsg`; no
    /// cheaper check tells a socket from a pipe). Anything else (a hostile primary's pipe)
    /// is closed unseen and is a protocol error, as on the Node path: the worker leaves
    /// with a message and code 1, unless it is disconnecting (the program then gets the
    /// error). Issue 11, defect 7.
    fn lane_connection(&self, conn: OwnedFd) -> Result<OwnedFd> {
        let why = match crate::sys::fdkind::is_stream_socket(conn.as_fd()) {
            Ok(true) => {
                // Fds take the lowest free number: one this high means few are left. The
                // limit is read again now and then (it can change at run time).
                if self.received.fetch_add(1, Ordering::Relaxed).is_multiple_of(LIMIT_REREAD) {
                    self.fd_limit.store(fd::soft_limit(), Ordering::Relaxed);
                }
                let high = conn.as_raw_fd() as u64 + FD_MARGIN >= self.fd_limit.load(Ordering::Relaxed);
                self.near_fd_limit.store(high, Ordering::Relaxed);
                return Ok(conn);
            }
            Ok(false) => "the fast lane carried an fd that is not a stream socket".to_string(),
            Err(e) => format!("the fast lane carried an fd that is not a stream socket ({})", crate::error::io_text(&e)),
        };
        drop(conn);
        if let Some((w, ..)) = &self.cluster
            && !w.shared.disconnecting.load(Ordering::Acquire)
        {
            w.shared.leave(Some(&format!("the primary broke the protocol: {why}")));
        }
        Err(Error::protocol(why))
    }

    /// A connection from `newconn` is the program's: flags as asked, and the primary told.
    fn accepted(&self, (seq, conn): (i64, OwnedFd)) -> Result<OwnedFd> {
        fd::set_nonblocking(conn.as_fd(), self.nonblocking).map_err(|e| Error::io("fcntl", e))?;
        if let Some((w, ..)) = &self.cluster {
            // The primary may close its copy now. If the channel is gone, so is the primary;
            // the connection is ours either way.
            let _ = w.shared.send_with(|out, s| wire::accepted(out, seq, true, s));
        }
        Ok(conn)
    }

    /// Stops taking connections, tells the primary (`close`), releases the socket.
    pub fn close(&mut self) {
        let channel = self.cluster.as_ref().map(|(w, ..)| w.shared.as_ref());
        self.state.close(channel);
        if let Some((w, tuple, index)) = self.cluster.take() {
            w.shared.servers.lock().retain(|s| !Arc::ptr_eq(s, &self.state));
            w.release_index(&tuple, index);
        }
        if let Some(p) = self.unlink.take() {
            socket::unlink(&p);
        }
    }
}

fn local_port(sock: &OwnedFd) -> Option<i32> {
    match socket::local_addr(sock.as_fd()) {
        Ok(Addr::Inet(sa)) => Some(sa.port() as i32),
        _ => None,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}

/// A round-robin server's state, created by the channel reader when the primary's reply
/// arrives (so a `newconn` right behind it finds it).
pub(crate) fn round_robin_state(key: String) -> Result<Arc<ServerState>> {
    ServerState::new(key, Source::RoundRobin)
}
