//! The sending half of a channel, with Node's handle-in-flight rule (§4.3, Appendix A):
//! after a message carrying an fd, everything but `NODE_HANDLE_ACK`/`NACK` waits in a FIFO
//! until the peer acks or nacks. A line is never interleaved with another.
//!
//! A non-blocking writer (the primary's, one per worker) holds at most `queue_limit()` bytes
//! unwritten: a peer that does not read its channel cannot make the primary allocate without
//! bound (a reply may echo up to one max-size message each time). Past the bound the writer
//! closes and the send fails with `CLUSTER_E_PROTOCOL`, as for any other hostile peer.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::error::{Error, Result, code};
use crate::ipc::max_line;
use crate::sys::scm;

/// An fd to send with a message.
#[derive(Debug)]
pub enum OutFd {
    /// Someone else keeps it open until the peer acks (round-robin connections).
    Borrowed(RawFd),
    /// Ours: closed once it has been written.
    Owned(OwnedFd),
}

impl OutFd {
    fn raw(&self) -> RawFd {
        match self {
            OutFd::Borrowed(fd) => *fd,
            OutFd::Owned(fd) => fd.as_raw_fd(),
        }
    }
}

/// The least a non-blocking writer may hold unwritten for its peer (bytes).
pub(crate) const MIN_QUEUE_LIMIT: usize = 64 * 1024 * 1024;
/// ... and at least this many maximum-size messages (`cluster_set_max_message`).
pub(crate) const QUEUE_LIMIT_MESSAGES: usize = 4;

/// What a non-blocking writer may hold unwritten: `max(64 MiB, 4 × the message cap)`
/// (64 MiB with the default 16 MiB cap). Always more than one maximum-size message.
pub fn queue_limit() -> usize {
    MIN_QUEUE_LIMIT.max(max_line().saturating_mul(QUEUE_LIMIT_MESSAGES))
}

#[derive(Debug, Clone, Copy)]
enum Limit {
    /// A blocking writer waits for the peer instead of queueing (a worker's).
    Unbounded,
    /// `queue_limit()` as it is at each send (follows `cluster_set_max_message`).
    Default,
    #[cfg(test)]
    Fixed(usize),
}

#[derive(Debug)]
struct Queued {
    bytes: Vec<u8>,
    fd: Option<OutFd>,
}

#[derive(Debug)]
pub struct Writer {
    sock: Arc<OwnedFd>,
    nonblocking: bool,
    /// Handles written and not yet acked or nacked.
    handles_in_flight: usize,
    /// How many may be (Node: 1; more only with a libcluster peer that said it copes).
    max_handles: usize,
    /// The rest of a line whose first bytes are already written.
    partial: Option<(Vec<u8>, usize)>,
    control: VecDeque<&'static [u8]>,
    queue: VecDeque<Queued>,
    /// Bytes in `control` and `queue` (`partial` counts separately).
    queued_bytes: usize,
    /// The bound on unwritten bytes.
    limit: Limit,
    closed: bool,
}

impl Writer {
    /// `nonblocking`: never wait for the socket (the primary's epoll loop); otherwise every
    /// call writes everything before returning (a worker's threads).
    pub fn new(sock: Arc<OwnedFd>, nonblocking: bool) -> Writer {
        Writer {
            sock,
            nonblocking,
            handles_in_flight: 0,
            max_handles: 1,
            partial: None,
            control: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            limit: if nonblocking { Limit::Default } else { Limit::Unbounded },
            closed: false,
        }
    }

    #[cfg(test)]
    fn set_queue_limit(&mut self, bytes: usize) {
        self.limit = Limit::Fixed(bytes);
    }

    /// Bytes accepted and not yet written to the socket.
    pub fn pending_bytes(&self) -> usize {
        self.queued_bytes + self.partial.as_ref().map_or(0, |(b, off)| b.len() - off)
    }

    /// Fails (and closes the writer) when `more` bytes would take what is unwritten past the
    /// bound: the peer is not reading.
    fn check_room(&mut self, more: usize) -> Result<()> {
        let limit = match self.limit {
            Limit::Unbounded => return Ok(()),
            Limit::Default => queue_limit(),
            #[cfg(test)]
            Limit::Fixed(n) => n,
        };
        let pending = self.pending_bytes();
        if pending.saturating_add(more) <= limit {
            return Ok(());
        }
        self.close();
        Err(Error::protocol(format!(
            "peer is not reading its IPC channel: {pending} bytes unwritten, {more} more would pass the {limit}-byte limit"
        )))
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether later messages must wait for an ack (the handle limit is reached).
    pub fn handle_in_flight(&self) -> bool {
        self.handles_in_flight >= self.max_handles
    }

    /// Allows `n` handles in flight (only for a peer that binds each fd to its own line,
    /// as libcluster does; Node's peers get 1).
    pub fn set_max_handles(&mut self, n: usize) {
        self.max_handles = n.max(1);
    }

    /// Whether bytes wait for the socket to become writable (register for EPOLLOUT).
    pub fn wants_writable(&self) -> bool {
        !self.closed && (self.partial.is_some() || !self.control.is_empty() || (!self.handle_in_flight() && !self.queue.is_empty()))
    }

    /// Marks the channel closed: later sends fail with `CLUSTER_E_CLOSED`; queued messages
    /// (and owned fds) are dropped.
    pub fn close(&mut self) {
        self.closed = true;
        self.partial = None;
        self.control.clear();
        self.queue.clear();
        self.queued_bytes = 0;
    }

    fn check_open(&self) -> Result<()> {
        if self.closed { Err(Error::new(code::CLOSED, "IPC channel is closed")) } else { Ok(()) }
    }

    /// Sends one complete line (ending in `\n`), with an fd or not, or queues it behind a
    /// handle in flight or earlier bytes.
    pub fn send(&mut self, line: &[u8], fd: Option<OutFd>) -> Result<()> {
        self.check_open()?;
        debug_assert!(line.ends_with(b"\n") && line.len() > 1);
        let idle = self.partial.is_none() && self.control.is_empty() && self.queue.is_empty();
        if idle && !self.handle_in_flight() {
            return self.write_line(line, fd);
        }
        self.check_room(line.len())?;
        self.queued_bytes += line.len();
        self.queue.push_back(Queued { bytes: line.to_vec(), fd });
        self.flush()
    }

    /// Sends `NODE_HANDLE_ACK`/`NACK`: never queued behind a handle in flight, so two peers
    /// passing handles cannot deadlock (§4.3 rule 3).
    pub fn send_control(&mut self, line: &'static [u8]) -> Result<()> {
        self.check_open()?;
        self.check_room(line.len())?;
        self.queued_bytes += line.len();
        self.control.push_back(line);
        self.flush()
    }

    /// Sends a control line (ACK/NACK) and then `line`, in one write when nothing else is
    /// waiting (saves the peer a wakeup), else as `send_control` + `send`.
    pub fn send_control_then(&mut self, control: &'static [u8], times: usize, line: &[u8]) -> Result<()> {
        self.check_open()?;
        let idle = self.partial.is_none() && self.control.is_empty() && self.queue.is_empty();
        if idle && !self.handle_in_flight() {
            let mut all = Vec::with_capacity(control.len() * times + line.len());
            for _ in 0..times {
                all.extend_from_slice(control);
            }
            all.extend_from_slice(line);
            return self.write_line(&all, None);
        }
        for _ in 0..times {
            self.send_control(control)?;
        }
        self.send(line, None)
    }

    /// The peer acked or nacked our handle: release the queue.
    pub fn handle_replied(&mut self) -> Result<()> {
        self.handles_in_flight = self.handles_in_flight.saturating_sub(1);
        if self.closed { Ok(()) } else { self.flush() }
    }

    /// Writes what may be written now. In non-blocking mode, stops at `EAGAIN`.
    pub fn flush(&mut self) -> Result<()> {
        loop {
            if let Some((bytes, off)) = self.partial.take() {
                match self.raw_send(&bytes[off..], None) {
                    Ok(n) if off + n < bytes.len() => self.partial = Some((bytes, off + n)),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.partial = Some((bytes, off));
                        return Ok(());
                    }
                    Err(e) => return Err(self.fail(e)),
                }
                continue;
            }
            if let Some(line) = self.control.pop_front() {
                self.queued_bytes -= line.len();
                match self.raw_send(line, None) {
                    Ok(n) if n < line.len() => self.partial = Some((line[n..].to_vec(), 0)),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.queued_bytes += line.len();
                        self.control.push_front(line);
                        return Ok(());
                    }
                    Err(e) => return Err(self.fail(e)),
                }
                continue;
            }
            if self.handle_in_flight() {
                return Ok(());
            }
            let Some(q) = self.queue.pop_front() else { return Ok(()) };
            self.queued_bytes -= q.bytes.len();
            match self.raw_send(&q.bytes, q.fd.as_ref().map(OutFd::raw)) {
                Ok(n) => {
                    if q.fd.is_some() {
                        self.handles_in_flight += 1;
                    }
                    if n < q.bytes.len() {
                        self.partial = Some((q.bytes, n));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.queued_bytes += q.bytes.len();
                    self.queue.push_front(q);
                    return Ok(());
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    fn write_line(&mut self, line: &[u8], fd: Option<OutFd>) -> Result<()> {
        match self.raw_send(line, fd.as_ref().map(OutFd::raw)) {
            Ok(n) => {
                if fd.is_some() {
                    self.handles_in_flight += 1;
                }
                if n < line.len() {
                    self.check_room(line.len() - n)?;
                    self.partial = Some((line[n..].to_vec(), 0));
                    return self.flush();
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.check_room(line.len())?;
                self.queued_bytes += line.len();
                self.queue.push_front(Queued { bytes: line.to_vec(), fd });
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn raw_send(&self, bytes: &[u8], fd: Option<RawFd>) -> io::Result<usize> {
        scm::send(self.sock.as_fd(), bytes, fd, self.nonblocking)
    }

    fn fail(&mut self, e: io::Error) -> Error {
        self.close();
        Error::io("write to IPC channel", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fd;

    fn read_all(sock: &OwnedFd) -> (String, usize) {
        let mut buf = [0u8; 4096];
        let mut text = String::new();
        let mut fds = 0;
        loop {
            match scm::recv(sock.as_fd(), &mut buf, true) {
                Ok(r) if r.len > 0 => {
                    text.push_str(std::str::from_utf8(&buf[..r.len]).unwrap());
                    fds += r.fds.len();
                }
                _ => return (text, fds),
            }
        }
    }

    #[test]
    fn queues_behind_handle_but_not_acks() {
        let (a, b) = fd::socketpair().unwrap();
        let devnull: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let mut w = Writer::new(Arc::new(a), true);
        w.send(b"{\"h\":1}\n", Some(OutFd::Owned(devnull))).unwrap();
        w.send(b"{\"after\":1}\n", None).unwrap();
        w.send_control(crate::ipc::wire::HANDLE_ACK).unwrap();
        assert_eq!(read_all(&b), ("{\"h\":1}\n{\"cmd\":\"NODE_HANDLE_ACK\"}\n".to_string(), 1));
        w.handle_replied().unwrap();
        assert_eq!(read_all(&b), ("{\"after\":1}\n".to_string(), 0));
        drop(b);
        assert!(w.send(b"{\"x\":1}\n", None).is_err());
        assert!(w.is_closed());
    }

    fn big_line(n: usize) -> Vec<u8> {
        let mut l = vec![b'x'; n];
        l.push(b'\n');
        l
    }

    #[test]
    fn a_peer_that_does_not_read_is_cut_off_at_the_limit() {
        let (a, _b) = fd::socketpair().unwrap();
        let mut w = Writer::new(Arc::new(a), true);
        w.set_queue_limit(1 << 20);
        let line = big_line(64 * 1024);
        let mut sent = 0;
        let err = loop {
            match w.send(&line, None) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 10_000, "never cut off");
            assert!(w.pending_bytes() <= 1 << 20);
        };
        assert_eq!(err.code, code::PROTOCOL, "{err:?}");
        assert!(err.message.contains("not reading"), "{err:?}");
        assert!(w.is_closed());
        assert_eq!(w.pending_bytes(), 0, "what was queued is dropped");
        assert_eq!(w.send(b"{}\n", None).unwrap_err().code, code::CLOSED);
    }

    #[test]
    fn a_reading_peer_drains_the_count_and_is_not_cut_off() {
        let (a, b) = fd::socketpair().unwrap();
        let mut w = Writer::new(Arc::new(a), true);
        w.set_queue_limit(1 << 20);
        let line = big_line(64 * 1024);
        let mut total = 0;
        for _ in 0..200 {
            // Lines and control lines queue behind a full socket and drain as the peer reads.
            w.send(&line, None).unwrap();
            w.send_control(crate::ipc::wire::HANDLE_ACK).unwrap();
            total += read_all(&b).0.len();
            w.flush().unwrap();
        }
        while w.pending_bytes() > 0 {
            total += read_all(&b).0.len();
            w.flush().unwrap();
        }
        total += read_all(&b).0.len();
        assert_eq!(total, 200 * (line.len() + crate::ipc::wire::HANDLE_ACK.len()));
        assert!(!w.is_closed());
    }

    #[test]
    fn the_default_limit_holds_several_max_size_messages() {
        assert!(queue_limit() >= MIN_QUEUE_LIMIT);
        assert!(queue_limit() >= QUEUE_LIMIT_MESSAGES * crate::ipc::max_line());
        let (a, _b) = fd::socketpair().unwrap();
        // A blocking writer (a worker's) is not bounded; a non-blocking one is.
        assert!(matches!(Writer::new(Arc::new(a), false).limit, Limit::Unbounded));
    }
}
