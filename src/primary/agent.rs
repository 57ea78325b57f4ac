//! HAProxy's `agent-check`, answered by the primary: a TCP listener where each connection
//! gets one line and is closed (`docs/deployment.md`):
//!
//! - `ready up N%\n`: N = 100 · ready workers / target (at most 100). Without a target
//!   (no supervision, or `workers` 0): 100 when any worker is ready (listening);
//! - `drain\n` from the first moment of a graceful or fast stop (the drain delay included);
//! - `down\n` when no worker is ready (at start-up, or all of them crashed).
//!
//! Off the hot path by design: the distributor publishes one atomic snapshot (ready,
//! target, stopping) at the end of each supervision pass, which runs only when something
//! changed (a fork, a readiness, an exit, a stop, a timer); never per connection. Each
//! listener has its own small thread blocked in `accept`, reading that snapshot: an agent
//! client (or anyone who connects) can never stall the distributor, the distributor's epoll
//! set and its command queue are untouched, and the listener works before the first fork.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::address::Target;
use crate::error::{Error, Result};

/// The agent listeners (copies), for a hot upgrade to hand over.
static LISTENERS: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());
/// A hot upgrade handed the listeners over: this primary's threads stop answering.
static RETIRED: AtomicBool = AtomicBool::new(false);
/// A hot upgrade's new primary, not yet ready: its threads do not accept yet.
static HELD: AtomicBool = AtomicBool::new(false);

pub(crate) fn hold(on: bool) {
    HELD.store(on, Ordering::Release);
}

/// `ready` (bits 0..31), `target` (32..61), stopping (62).
static SNAPSHOT: AtomicU64 = AtomicU64::new(0);
const STOPPING: u64 = 1 << 62;

/// Called by the distributor after each supervision pass.
pub(crate) fn publish(ready: usize, target: usize, stopping: bool) {
    if RETIRED.load(Ordering::Acquire) {
        return;
    }
    let v = (ready.min(u32::MAX as usize) as u64) | ((target.min(1 << 29) as u64) << 32) | if stopping { STOPPING } else { 0 };
    SNAPSHOT.store(v, Ordering::Release);
}

/// The line an agent check gets now.
pub(crate) fn answer() -> String {
    let v = SNAPSHOT.load(Ordering::Acquire);
    line(v & 0xffff_ffff, (v >> 32) & ((1 << 30) - 1), v & STOPPING != 0)
}

fn line(ready: u64, target: u64, stopping: bool) -> String {
    if stopping {
        "drain\n".into()
    } else if ready == 0 {
        "down\n".into()
    } else {
        // Without a target (0): 100 once any worker is ready.
        let pct = (100 * ready).checked_div(target).map_or(100, |p| p.clamp(1, 100));
        format!("ready up {pct}%\n")
    }
}

/// Copies of the agent listeners, for a hot upgrade to pass to the new primary.
pub(crate) fn sockets() -> Vec<OwnedFd> {
    LISTENERS.lock().iter().filter_map(|l| l.try_clone().ok()).collect()
}

/// A hot upgrade handed the service over: until this primary's agent threads are gone
/// (within a poll interval) they answer as the new primary would (it is ready: that is why
/// it took over), never `drain` for this primary's handover stop.
pub(crate) fn retire() {
    SNAPSHOT.store(1 | (1 << 32), Ordering::Release);
    RETIRED.store(true, Ordering::Release);
    LISTENERS.lock().clear();
}

/// Where `listen` would bind, as a server target (to find an inherited agent socket).
pub(crate) fn target(address: Option<&str>, port: u16) -> Result<Target> {
    Ok(match parse(address)? {
        IpAddr::V4(a) if a.is_unspecified() => Target::Any { port },
        ip => Target::Ip(SocketAddr::new(ip, port)),
    })
}

fn parse(address: Option<&str>) -> Result<IpAddr> {
    match address {
        None | Some("") => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Some(a) => a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| Error::errno(libc::EINVAL, format!("agent address {a:?} is not an IP address"))),
    }
}

/// Binds `address` (None: every IPv4 interface) on `port` (0: any) — or takes `inherited`,
/// the socket a hot upgrade's old primary passed — and answers there from a thread of its
/// own. Returns the bound port.
pub(crate) fn listen(address: Option<&str>, port: u16, inherited: Option<OwnedFd>) -> Result<u16> {
    if let Some(fd) = inherited {
        crate::sys::fd::set_nonblocking(fd.as_fd(), false).map_err(|e| Error::io("agent: inherited socket", e))?;
        return serve_on(TcpListener::from(fd));
    }
    let ip = parse(address)?;
    // std's listener is close-on-exec (workers never inherit it) with SO_REUSEADDR.
    let listener = TcpListener::bind(SocketAddr::new(ip, port)).map_err(|e| Error::io(format!("agent: bind {ip}:{port}"), e))?;
    serve_on(listener)
}

fn serve_on(listener: TcpListener) -> Result<u16> {
    let bound = listener.local_addr().map_err(|e| Error::io("agent: getsockname", e))?;
    if let Ok(copy) = listener.try_clone() {
        LISTENERS.lock().push(OwnedFd::from(copy));
    }
    std::thread::Builder::new()
        .name("cluster-agent".into())
        .spawn(move || {
            crate::sys::process::block_signals_in_this_thread();
            serve(listener)
        })
        .map_err(|e| Error::io("spawn agent thread", e))?;
    crate::trace::trace!("primary", "agent-check listening on {bound}");
    Ok(bound.port())
}

fn serve(listener: TcpListener) {
    loop {
        // Waits a bounded time, so that a retired agent (a hot upgrade) stops accepting on
        // the socket it now shares with the new primary.
        if RETIRED.load(Ordering::Acquire) {
            return;
        }
        if HELD.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if !crate::sys::fd::poll_readable(listener.as_fd(), 200).unwrap_or(true) {
            continue;
        }
        if RETIRED.load(Ordering::Acquire) {
            return;
        }
        let mut conn = match listener.accept() {
            Ok((c, _)) => c,
            // EMFILE and the like: wait rather than spin.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = conn.set_write_timeout(Some(Duration::from_millis(500)));
        let _ = conn.write_all(answer().as_bytes());
        // HAProxy may send an `agent-send` string: read what came so closing does not
        // reset the connection over unread bytes (which could discard our line).
        let _ = conn.set_nonblocking(true);
        let mut scratch = [0u8; 512];
        while matches!(conn.read(&mut scratch), Ok(n) if n > 0) {}
        let _ = conn.shutdown(std::net::Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn the_lines() {
        assert_eq!(line(2, 2, false), "ready up 100%\n");
        assert_eq!(line(1, 2, false), "ready up 50%\n");
        assert_eq!(line(1, 3, false), "ready up 33%\n");
        assert_eq!(line(3, 2, false), "ready up 100%\n", "a surge counts at most 100");
        assert_eq!(line(1, 0, false), "ready up 100%\n", "no target: any ready worker");
        assert_eq!(line(0, 2, false), "down\n");
        assert_eq!(line(2, 2, true), "drain\n");
        assert_eq!(line(0, 0, true), "drain\n");
    }
}
