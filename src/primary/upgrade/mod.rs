//! Hot upgrade of the primary, the handover model (tableflip/shellflip; `docs/upgrade.md`).
//!
//! The old primary fork+execs the program file now on disk (same argv, the path read once
//! at start) with a `SOCK_SEQPACKET` channel as fd 3 (`LIBCLUSTER_UPGRADE_FD=3`, no Node
//! channel variables, no parent-death signal) and sends over it every listening socket it
//! holds; the new primary puts them in its inherited pool, so its workers' `queryServer` take them
//! (both primaries accept on the same sockets meanwhile: nothing is refused). Once the new
//! primary's workers are ready it says so; the old one then stops accepting, forwards every
//! connection it accepted that no worker received, drains its workers on the supervision
//! clock and exits once they are gone (its run loop ends). A new primary that dies or is
//! not ready in time is killed; the old one carries on unchanged.
//!
//! Messages (one per packet): old → new `L\t<key>` + listener fd, `E` (the listeners are
//! all sent), `C\t<key>` + connection fd; new → old `R` (ready).

#![forbid(unsafe_code)]

mod handover;
mod takeover;

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use super::WorkerState;
use super::distributor::{Distributor, token};
use super::handle::Handle;
use super::inherited::Inherited;
use super::supervisor::{Notice, UpgradeState};
use crate::error::{Error, Result, code};
use crate::event::Event;
use crate::sys::epoll::{HUP, READABLE};
use crate::sys::pidfd::{self, Child};
use crate::sys::spawn::{self, SpawnPlan, Stdio};
use crate::sys::{fd, process, scm};

/// The variable that tells a new primary which fd is its upgrade channel.
pub(crate) const ENV_FD: &str = "LIBCLUSTER_UPGRADE_FD";
/// The default time the new primary has to become ready.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 60_000;
pub(super) const KIND_UPGRADE: u64 = 5;
/// The variable that sets the time a signal's upgrade gives the new primary (ms).
pub(crate) const ENV_TIMEOUT: &str = "LIBCLUSTER_UPGRADE_TIMEOUT_MS";

/// The time a signal's upgrade (no options) gives the new primary: `LIBCLUSTER_UPGRADE_TIMEOUT_MS`
/// when it is a positive number, else 60 s.
pub(in crate::primary) fn signal_timeout_ms(env: Option<&str>) -> u64 {
    env.and_then(|v| v.trim().parse::<u64>().ok()).filter(|&v| v > 0).unwrap_or(DEFAULT_TIMEOUT_MS)
}

/// How long one send to the new primary may wait for room in the channel.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Tokens under `KIND_UPGRADE`.
const OUT_SOCK: u32 = 0;
const OUT_PIDFD: u32 = 1;
const IN_SOCK: u32 = 2;

/// Variables a new primary must not see (they would make it a worker, or a socket-
/// activated process it is not). Only Node's channel variables go, as for a worker
/// (`spawn_plan`): the program's own (`NODE_ENV`, `NODE_OPTIONS`, `NODE_PATH`,
/// `NODE_CLUSTER_SCHED_POLICY`...) stay, or a Node primary would come back configured
/// otherwise (and a Python one that reads them too).
fn dropped_var(k: &[u8]) -> bool {
    // `WATCHDOG_PID` names the old primary: without it the watchdog applies to whoever
    // systemd's main pid is, the new primary once the old one handed it over (`MAINPID=`).
    crate::primary::spawn_plan::NODE_CHANNEL_VARS.iter().any(|v| v.as_bytes() == k)
        || k == ENV_FD.as_bytes()
        || k.starts_with(b"LISTEN_")
        || k == b"WATCHDOG_PID"
}

/// The old primary's side: the new primary started and not yet ready, or ready (handed over).
pub(super) struct Outgoing {
    sock: OwnedFd,
    child: Child,
    deadline: Instant,
    /// The new primary was reaped (after the handover).
    reaped: bool,
}

/// The new primary's side: the channel to the old one until it is gone.
pub(super) struct Incoming {
    sock: OwnedFd,
    said_ready: bool,
    old_pid: i32,
}

#[derive(Default)]
pub(super) struct UpgradeSlot {
    pub out: Option<Outgoing>,
    pub incoming: Option<Incoming>,
    /// The new primary is ready: this one accepts no more and forwards what it holds.
    pub handed_over: bool,
}

impl UpgradeSlot {
    /// This primary was started by an upgrade and has not said it is ready: it accepts
    /// nothing yet (the old one does), so if it fails no client is lost.
    pub fn waiting(&self) -> bool {
        self.incoming.as_ref().is_some_and(|i| !i.said_ready)
    }
}

/// Is `text` one of our messages: `(tag, key)`.
pub(crate) fn parse(text: &[u8]) -> Option<(u8, &str)> {
    let (&tag, rest) = text.split_first()?;
    let key = match rest {
        [] => "",
        [b'\t', key @ ..] => std::str::from_utf8(key).ok()?,
        _ => return None,
    };
    matches!(tag, b'L' | b'E' | b'C' | b'R').then_some((tag, key))
}

fn message(tag: u8, key: &str) -> Vec<u8> {
    let mut m = vec![tag];
    if !key.is_empty() {
        m.push(b'\t');
        m.extend_from_slice(key.as_bytes());
    }
    m
}

/// At start-up (single-threaded): if this primary was started by an upgrade, takes its
/// channel and the listening sockets the old primary sends into `pool`. Returns the channel.
pub(in crate::primary) fn adopt_from_env(pool: &mut Inherited) -> Result<Option<OwnedFd>> {
    let Some(v) = std::env::var_os(ENV_FD) else { return Ok(None) };
    process::unset_env(ENV_FD);
    // Until it is ready, a new primary's agent answers nothing: the old one still serves
    // and answers for the host (a `down` from a primary still booting would take it out).
    crate::primary::agent::hold(true);
    let n: i32 = v
        .to_str()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n > 2)
        .ok_or_else(|| Error::errno(libc::EINVAL, format!("{ENV_FD} is not an fd number")))?;
    let sock = fd::adopt_inherited(n).map_err(|e| Error::io(ENV_FD, e))?;
    fd::set_cloexec(sock.as_fd()).map_err(|e| Error::io(ENV_FD, e))?;
    let mut buf = [0u8; 4096];
    loop {
        let r = scm::recv(sock.as_fd(), &mut buf, false).map_err(|e| Error::io("upgrade channel", e))?;
        if r.len == 0 {
            return Err(Error::protocol("the old primary closed the upgrade channel before sending its listeners"));
        }
        match parse(&buf[..r.len]) {
            Some((b'E', _)) => break,
            Some((b'L', key)) => {
                for f in r.fds {
                    if let Err(e) = pool.add(f, Some(key.to_string())) {
                        crate::trace::trace!("primary", "upgrade: listener {key} not adopted: {e}");
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(sock))
}

/// The old primary's command line for the new one: the program file now at the path read
/// at start, this process's argv, our environment without Node's channel variables and
/// `LISTEN_*`, the channel
/// as fd 3 and no parent-death signal (it must outlive us).
fn plan() -> Result<SpawnPlan> {
    let (exe, args) = process::current_command().map_err(|e| Error::io("the program's path", e))?;
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| Error::errno(libc::EINVAL, "a NUL byte in the command line"));
    let mut envp = Vec::new();
    for (k, v) in std::env::vars_os() {
        if dropped_var(k.as_bytes()) {
            continue;
        }
        let mut kv: OsString = k;
        kv.push("=");
        kv.push(&v);
        envp.push(cstr(kv.as_bytes())?);
    }
    envp.push(cstr(format!("{ENV_FD}={}", spawn::CHANNEL_FD).as_bytes())?);
    Ok(SpawnPlan {
        stdio: [Stdio::Inherit; 3],
        extra: Vec::new(),
        path: cstr(exe.as_os_str().as_bytes())?,
        argv: args.iter().map(|a| cstr(a.as_bytes())).collect::<Result<_>>()?,
        envp,
        cwd: None,
        uid: None,
        gid: None,
        parent_death_signal: 0,
    })
}

impl Distributor {
    pub(in crate::primary) fn upgrade_notice(&mut self, state: UpgradeState, pid: i32, error: i32) {
        let notice = Notice::Upgrade { state, pid, error };
        crate::trace::trace!("primary", "upgrade: {notice:?}");
        // systemd: the old primary hands the service's main pid to the new one (`notify`).
        self.notify_systemd(&notice);
        self.shared.events.push(Event::Supervision { id: 0, pid, notice });
    }

    /// Something on an upgrade channel or the new primary's pidfd.
    pub(in crate::primary) fn on_upgrade(&mut self, id: u32) {
        match id {
            OUT_SOCK => self.read_outgoing(),
            OUT_PIDFD => self.new_primary_exited(),
            IN_SOCK => self.read_incoming(),
            _ => {}
        }
    }

    /// Run each loop pass: the new primary says "ready" once its workers are; the old one
    /// kills a new primary that is late. Returns the epoll timeout this needs (-1: none).
    pub(in crate::primary) fn upgrade_poll(&mut self) -> i32 {
        if let Some(inc) = self.upgrade.incoming.as_mut().filter(|i| !i.said_ready) {
            let (_, ready, _) = self.sup.counts();
            let target = self.sup.target();
            let all_ready = if target > 0 {
                ready >= target
            } else {
                let table = self.shared.table.lock();
                !table.is_empty() && table.values().all(|w| w.state == WorkerState::Listening)
            };
            if all_ready {
                inc.said_ready = true;
                let old = inc.old_pid;
                // Accepting starts now, alongside the old primary until it stops.
                let hids: Vec<u32> = self.handles.keys().copied().collect();
                for hid in hids {
                    if let Err(e) = self.add_listener(hid) {
                        crate::trace::trace!("primary", "upgrade: listener not watched: {e}");
                    }
                    self.pump(hid);
                }
                if let Some(inc) = self.upgrade.incoming.as_ref() {
                    let _ = scm::send(inc.sock.as_fd(), b"R", None, true);
                    // Ready: this primary answers the load balancer too from now on.
                    crate::primary::agent::hold(false);
                }
                self.upgrade_notice(UpgradeState::Ready, old, 0);
            }
        }
        if self.upgrade.handed_over {
            return -1;
        }
        let Some(out) = self.upgrade.out.as_ref() else { return -1 };
        let left = out.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.upgrade_abort("the new primary was not ready in time", -libc::ETIMEDOUT);
            return -1;
        }
        left.as_millis().min(i32::MAX as u128) as i32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signal_timeout_comes_from_the_environment_or_is_a_minute() {
        assert_eq!(signal_timeout_ms(None), 60_000);
        assert_eq!(signal_timeout_ms(Some("1500")), 1_500);
        assert_eq!(signal_timeout_ms(Some("0")), 60_000);
        assert_eq!(signal_timeout_ms(Some("soon")), 60_000);
    }

    #[test]
    fn messages_round_trip() {
        assert_eq!(parse(&message(b'L', "127.0.0.1:8000:4:-1")), Some((b'L', "127.0.0.1:8000:4:-1")));
        assert_eq!(parse(b"E"), Some((b'E', "")));
        assert_eq!(parse(b"R"), Some((b'R', "")));
        assert_eq!(parse(b"X"), None);
        assert_eq!(parse(b"Lkey"), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn a_new_primary_never_sees_node_channel_or_listen_variables() {
        assert!(dropped_var(b"NODE_UNIQUE_ID") && dropped_var(b"NODE_CHANNEL_FD") && dropped_var(b"NODE_CHANNEL_SERIALIZATION_MODE"));
        assert!(dropped_var(b"LISTEN_FDS") && dropped_var(ENV_FD.as_bytes()) && dropped_var(b"WATCHDOG_PID"));
        assert!(!dropped_var(b"PATH") && !dropped_var(b"LIBCLUSTER_TRACE"));
    }

    #[test]
    fn a_new_primary_keeps_the_programs_own_node_variables() {
        // A Node primary's configuration (and a Python one's, if it reads them).
        for k in [&b"NODE_ENV"[..], b"NODE_OPTIONS", b"NODE_PATH", b"NODE_CLUSTER_SCHED_POLICY", b"NODE_EXTRA_CA_CERTS"] {
            assert!(!dropped_var(k), "{}", String::from_utf8_lossy(k));
        }
        assert!(!dropped_var(b"NODE_UNIQUE_ID_X") && !dropped_var(b"NODE_CHANNEL"));
    }

    #[test]
    fn listeners_cross_the_channel_into_the_pool() {
        let (a, b) = fd::seqpacket_pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        scm::send(a.as_fd(), &message(b'L', "k"), Some(l.as_raw_fd()), false).unwrap();
        scm::send(a.as_fd(), b"E", None, false).unwrap();
        // What adopt_from_env does after reading the variable.
        let mut pool = Inherited::default();
        let mut buf = [0u8; 64];
        loop {
            let r = scm::recv(b.as_fd(), &mut buf, false).unwrap();
            match parse(&buf[..r.len]) {
                Some((b'E', _)) => break,
                Some((b'L', key)) => r.fds.into_iter().for_each(|f| pool.add(f, Some(key.into())).unwrap()),
                other => panic!("{other:?}"),
            }
        }
        let target = crate::address::Target::Ip(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        assert_eq!(pool.take(&target, false).unwrap().name.as_deref(), Some("k"));
    }
}
