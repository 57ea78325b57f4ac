//! The worker's channel reader thread: frames lines, binds fds to `NODE_HANDLE` lines,
//! acks handles at once, routes replies and connections.

#![forbid(unsafe_code)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::server::ServerState;
use super::{Reply, Shared};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ipc::codec::Decoder;
use crate::ipc::inbound::{self, Control, Inbound, Received};
use crate::ipc::message::{self, Msg};
use crate::ipc::wire;
use crate::sys::{process, scm};

pub(super) fn start(shared: Arc<Shared>, sock: Arc<OwnedFd>) -> Result<()> {
    std::thread::Builder::new()
        .name("cluster-channel".into())
        .spawn(move || {
            process::block_signals_in_this_thread();
            let err = read_loop(&shared, &sock).err().filter(|e| e.code != crate::error::code::CLOSED);
            channel_lost(&shared, &sock, err);
        })
        .map(drop)
        .map_err(|e| Error::io("spawn channel reader thread", e))
}

/// How long a `NODE_HANDLE_ACK` may wait for the program's `accept` to carry it.
const ACK_DELAY_MS: i32 = 5;

/// Returns `Ok` at EOF; `Err(CLOSED)` when a disconnect ends the channel on purpose.
fn read_loop(shared: &Shared, sock: &OwnedFd) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut decoder = Decoder::with_global_cap();
    let mut text = Vec::with_capacity(512);
    loop {
        if shared.ack_owed.load(Ordering::Acquire) > 0 {
            let ready = crate::sys::fd::poll_readable(sock.as_fd(), ACK_DELAY_MS).unwrap_or(true);
            if !ready {
                let mut w = shared.writer.lock();
                shared.pay_ack(&mut w)?;
            }
        }
        let r = match scm::recv(sock.as_fd(), &mut buf, false) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Ok(()),
            Err(e) => return Err(Error::io("read from IPC channel", e)),
        };
        if r.len == 0 {
            return Ok(());
        }
        // The kernel drops an fd this process has no room for (MSG_CTRUNC, at its fd
        // limit): the handle line it came with is answered as a refusal, not as an error.
        let mut fd_lost = r.truncated;
        decoder.feed(&buf[..r.len], r.fds)?;
        loop {
            let fd = match decoder.next_line() {
                None => break,
                Some(line) => {
                    let line = line?;
                    text.clear();
                    text.extend_from_slice(line.text);
                    line.fd_eligible
                }
            };
            let handle = (fd || fd_lost) && message::is_handle_line(&text);
            let fd = if handle && fd { decoder.take_fd() } else { None };
            if fd.is_none() && handle && std::mem::take(&mut fd_lost) && refuse_lost_connection(shared, &text)? {
                continue;
            }
            handle_line(shared, &text, fd)?;
        }
        decoder.finish_read()?;
    }
}

/// EOF or a broken channel. Unless a disconnect was under way, a worker whose primary is
/// gone exits with code 0, as Node's do (§7.5), and one that received what the protocol
/// forbids dies of it (exit 1, as Node's die of a line they cannot parse) after saying why.
/// The exit comes first, before the channel is shut or a server closed: a program woken by
/// its server closing could otherwise return from its accept loop and exit 0 before the
/// message is written (issue 11, defect 6). Exiting closes everything anyway.
fn channel_lost(shared: &Shared, sock: &OwnedFd, err: Option<Error>) {
    if !shared.disconnecting.load(Ordering::Acquire) && !shared.disconnect_requested.load(Ordering::Acquire) {
        let why = err.as_ref().map(|e| format!("channel to the primary closed: {}", e.message));
        shared.leave(why.as_deref());
    }
    let _ = crate::sys::socket::shutdown(sock.as_fd());
    shared.connected.store(false, Ordering::Release);
    shared.writer.lock().close();
    {
        let _pending = shared.pending.lock();
        shared.replied.notify_all();
    }
    let servers: Vec<_> = shared.servers.lock().drain(..).collect();
    for s in servers {
        s.close(None);
    }
    if let Some(e) = &err {
        let _ = writeln!(std::io::stderr(), "libcluster: worker {}: channel to the primary closed: {}", shared.id, e.message);
    }
    let ead = !shared.bare_close.load(Ordering::Acquire);
    crate::trace::trace!("worker", "channel closed exitedAfterDisconnect={ead}");
    shared.events.push(Event::Disconnect { id: shared.id, pid: process::getpid(), exited_after_disconnect: ead });
}

/// Handles one line by the channel rules in `ipc::inbound`. An error ends the channel (a
/// malformed message inside a `NODE_HANDLE` before its ACK is written).
fn handle_line(shared: &Shared, line: &[u8], fd: Option<OwnedFd>) -> Result<()> {
    let Received { reply, inbound } = inbound::classify(line, fd)?;
    let inbound = match inbound? {
        // A newconn for an open server: its ACK may ride with the `accepted` reply.
        // Every fd arrives in a `NODE_HANDLE`, acked, so every `newconn` fd is checked here.
        Inbound::Cluster { msg, fd: Some(fd) } if reply == Some(Control::Ack) => {
            if msg.act() == "newconn" && msg.ack.is_none() {
                check_connection(&fd)?;
            }
            match open_newconn(shared, &msg) {
                Some((seq, server)) => return queue_newconn(shared, seq, &server, fd),
                None => Inbound::Cluster { msg, fd: Some(fd) },
            }
        }
        other => other,
    };
    if let Some(c) = reply {
        let mut w = shared.writer.lock();
        shared.pay_ack(&mut w)?;
        w.send_control(c.line())?;
    }
    match inbound {
        Inbound::User { json } => {
            shared.events.push_message(Event::Message { id: 0, pid: 0, json, fd: None });
            Ok(())
        }
        Inbound::UserWithHandle { json, fd } => {
            shared.events.push_message(Event::Message { id: 0, pid: 0, json, fd: Some(fd) });
            Ok(())
        }
        Inbound::Cluster { msg, fd } => handle_cluster(shared, &msg, fd),
        Inbound::HandleReplied { .. } => shared.writer.lock().handle_replied(),
        Inbound::Ignored => Ok(()),
    }
}

/// A `newconn` whose connection fd the kernel dropped (this process was at its fd limit):
/// acked, and refused (`accepted: false`), so the primary — which keeps its copy until the
/// answer — serves it elsewhere; the worker goes on (issue 11, defect 5). False when the line
/// is not a `newconn` (Node's rules then answer a handle without fd with a NACK).
fn refuse_lost_connection(shared: &Shared, line: &[u8]) -> Result<bool> {
    let message::Parsed::Internal(env) = message::parse(line)? else { return Ok(false) };
    let Some(inner) = env.msg else { return Ok(false) };
    let message::Parsed::Internal(n) = message::parse(inner.get().as_bytes())? else { return Ok(false) };
    let (Some(seq), "newconn", None) = (n.seq, n.act(), n.ack) else { return Ok(false) };
    let mut w = shared.writer.lock();
    let mut refusal = Vec::with_capacity(64);
    wire::accepted(&mut refusal, seq, false, shared.next_seq());
    let owed = shared.ack_owed.swap(0, Ordering::AcqRel);
    w.send_control_then(wire::HANDLE_ACK, owed + 1, &refusal)?;
    Ok(true)
}

/// A `newconn`'s fd must be a stream socket: a pipe or anything else is never handed to the
/// program as a connection (issue 11, defect 7). One `getsockopt(SO_TYPE)`.
fn check_connection(fd: &OwnedFd) -> Result<()> {
    match crate::sys::fdkind::is_stream_socket(fd.as_fd()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::protocol("newconn carried an fd that is not a stream socket")),
        Err(e) => Err(Error::protocol(format!("newconn carried an fd that is not a stream socket ({})", crate::error::io_text(&e)))),
    }
}

/// A reply's `errno`: absent, `null` or 0 is success (0); an error is a negative errno, as
/// libuv's codes are (-4095..=-1), returned positive. Anything else is a protocol error.
fn reply_errno(errno: Option<i64>) -> Result<i32> {
    match errno {
        None | Some(0) => Ok(0),
        Some(e @ -4095..=-1) => Ok(-e as i32),
        Some(e) => Err(Error::protocol(format!("the primary's reply carries errno {e}, not 0 or an error number in -4095..-1"))),
    }
}

/// A reply's `sockname.port`, if it has one: an integer in 0..=65535, else a protocol error.
fn reply_port(sockname: Option<&serde_json::value::RawValue>) -> Result<Option<u16>> {
    let Some(v) = sockname.and_then(|s| serde_json::from_str::<serde_json::Value>(s.get()).ok()) else {
        return Ok(None);
    };
    match v.get("port") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(p) => match p.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) => Ok(Some(p)),
            None => Err(Error::protocol(format!("the primary's reply carries port {p}, not a port number (0..65535)"))),
        },
    }
}

/// The seq and server of a `newconn` (not a reply) for a server that is open here.
fn open_newconn(shared: &Shared, n: &Msg<'_>) -> Option<(i64, Arc<ServerState>)> {
    if n.act() != "newconn" || n.ack.is_some() {
        return None;
    }
    Some((n.seq?, n.key.as_deref().and_then(|k| shared.server(k))?))
}

/// Queues a `newconn`'s connection on its server and owes its ACK (written with the
/// `accepted` reply, or alone after `ACK_DELAY_MS`); a server that refuses it gets the ACK
/// and `accepted: false` in one write.
fn queue_newconn(shared: &Shared, seq: i64, server: &ServerState, fd: OwnedFd) -> Result<()> {
    crate::trace::trace!("worker", "newconn seq={seq}");
    let mut w = shared.writer.lock();
    match server.push(seq, fd) {
        Ok(()) => {
            shared.ack_owed.fetch_add(1, Ordering::AcqRel);
            Ok(())
        }
        Err(fd) => {
            drop(fd);
            let mut line = Vec::with_capacity(64);
            wire::accepted(&mut line, seq, false, shared.next_seq());
            let owed = shared.ack_owed.swap(0, Ordering::AcqRel);
            w.send_control_then(wire::HANDLE_ACK, owed + 1, &line)
        }
    }
}

fn handle_cluster(shared: &Shared, m: &Msg<'_>, fd: Option<OwnedFd>) -> Result<()> {
    crate::trace::trace!(
        "worker",
        "{} key={} seq={} ack={} errno={}",
        if m.ack.is_some() { "reply" } else { m.act() },
        m.key.as_deref().unwrap_or("-"),
        m.seq.unwrap_or(-1),
        m.ack.unwrap_or(-1),
        m.errno.unwrap_or(0)
    );
    if let Some(ack) = m.ack {
        let mut pending = shared.pending.lock();
        if let Some(slot) = pending.get_mut(&ack) {
            // A reply out of range is a protocol error: the worker leaves with the caller
            // still waiting, so nothing of it reaches the program.
            let errno = reply_errno(m.errno)?;
            let sockname_port = reply_port(m.sockname)?;
            let key = m.key.as_deref().unwrap_or("").to_string();
            let ok = errno == 0;
            // Register a round-robin server before waking the caller, so a newconn that
            // follows the reply at once finds it.
            if ok && fd.is_none() && !key.is_empty() && shared.server(&key).is_none() {
                shared.servers.lock().push(super::server::round_robin_state(key.clone())?);
            }
            let lane = fd.is_some() && m.lane == Some(1);
            *slot = Some(Reply { errno, key, sockname_port, fd, lane });
            shared.replied.notify_all();
        }
        return Ok(());
    }
    match m.act() {
        "newconn" => {
            let (Some(fd), Some(seq)) = (fd, m.seq) else {
                return Err(Error::protocol("newconn without a connection fd or seq"));
            };
            let key = m.key.as_deref().unwrap_or("");
            let refused = match shared.server(key) {
                Some(s) => s.push(seq, fd).err(),
                None => Some(fd),
            };
            if refused.is_some() {
                // Unknown or closing server: refuse, and the primary hands it on (§7.4).
                shared.send_with(|out, s| wire::accepted(out, seq, false, s))?;
            }
            Ok(())
        }
        "disconnect" if shared.keep_channel.load(Ordering::Acquire) => {
            crate::trace::trace!("worker", "disconnect keep-channel=true");
            // As Node's worker: close every server now; the program closes the channel
            // once their connections are done (`disconnect`).
            if !shared.disconnect_requested.swap(true, Ordering::AcqRel) {
                shared.close_servers();
                shared.events.push(Event::DisconnectRequested { id: shared.id, pid: process::getpid() });
            }
            Ok(())
        }
        "disconnect" => {
            crate::trace::trace!("worker", "disconnect keep-channel=false");
            // Primary-initiated disconnect (§7.5): close every server, then the channel.
            shared.disconnecting.store(true, Ordering::Release);
            shared.close_servers();
            Err(Error::new(crate::error::code::CLOSED, "disconnect"))
        }
        _ => Ok(()),
    }
}
