//! The distributor's systemd side (`docs/systemd.md`): what supervision's notices and
//! passes tell `$NOTIFY_SOCKET` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`), the
//! watchdog ping, and the listeners given to the fd store. The decisions are `notify`'s.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::primary::distributor::{Distributor, TICK_MS};
use crate::primary::handle::Handle;
use crate::primary::notify::{Notifier, Snapshot, fd_name};
use crate::primary::scheduler::STALL_TICKS;
use crate::primary::supervisor::{Ms, Notice};

/// What the distributor keeps for systemd (`docs/systemd.md`).
pub(crate) struct Systemd {
    pub(super) notifier: Notifier,
    target: crate::sys::notify::Target,
    /// Handles whose listener was given to the fd store, with its `FDNAME` ("": one
    /// systemd passed us, not stored again).
    stored: BTreeMap<u32, String>,
    /// Addresses of the sockets systemd passed (`LISTEN_FDS`) when notifications began.
    passed: Vec<crate::sys::socket::Addr>,
    /// `(next_handle, handles.len())` when the store was last brought up to date.
    seen: (u32, usize),
}

impl Distributor {
    /// What a notice tells systemd, when the program asked for it (`notify`).
    pub(in crate::primary) fn notify_systemd(&mut self, n: &Notice) {
        if let Some(sd) = self.sup_state.systemd.as_mut()
            && let Some(state) = sd.notifier.notice(n, crate::sys::notify::monotonic_usec)
        {
            sd.send(&state, &[]);
        }
    }

    /// Turns systemd notifications on (`target` set) or off.
    pub(in crate::primary) fn systemd_command(&mut self, flags: u32, target: Option<crate::sys::notify::Target>, watchdog: Option<Ms>) {
        let passed = self.shared.inherited.lock().describe().into_iter().map(|(a, _)| a).collect();
        let now = self.sup_now();
        self.sup_state.systemd = target.map(|target| Systemd {
            notifier: Notifier::new(flags, watchdog, now),
            target,
            stored: BTreeMap::new(),
            passed,
            seen: (0, usize::MAX),
        });
        // Say what is true already (workers may be ready) in this pass.
        self.sup_state.touch();
    }

    /// `READY=1`, `STOPPING=1`, `STATUS=` after a supervision pass.
    pub(super) fn systemd_observe(&mut self) {
        let Some(sd) = self.sup_state.systemd.as_mut() else { return };
        let (workers, ready, _) = self.sup.counts();
        let snap = Snapshot {
            target: self.sup.target(),
            workers,
            ready,
            generation: self.sup.generation(),
            breaker: self.sup.breaker_state(),
            stopping: self.sup.stopping().is_some(),
        };
        if let Some(state) = sd.notifier.observe(&snap) {
            sd.send(&state, &[]);
        }
    }

    /// `WATCHDOG=1` when due, sent from this loop (so only while it makes progress) and
    /// only while a ready worker can serve.
    pub(super) fn systemd_watchdog(&mut self, now: Ms) {
        let Some(mut sd) = self.sup_state.systemd.take() else { return };
        if sd.notifier.watchdog(now, || self.serving_workers()) {
            sd.send("WATCHDOG=1", &[]);
        }
        self.sup_state.systemd = Some(sd);
    }

    /// Ready workers that can serve: not draining, running (not stopped, not a zombie), not
    /// stalled on the accept path (a lane the scheduler took back, a `newconn` unanswered
    /// for a stall's length).
    fn serving_workers(&self) -> usize {
        let stall = Duration::from_millis(STALL_TICKS as u64 * TICK_MS as u64);
        let suspect = |id: u32| self.handles.values().any(|h| matches!(h, Handle::RoundRobin(rr) if rr.sched.is_suspect(id)));
        self.workers
            .iter()
            .filter(|&(&id, w)| {
                self.sup.member(id).is_some_and(|m| m.ready_at.is_some() && !m.draining)
                    && w.stalled_since.is_none()
                    && w.in_flight.first().is_none_or(|f| f.at.elapsed() < stall)
                    && !suspect(id)
                    && !crate::sys::notify::cannot_run(w.pid)
            })
            .count()
    }

    /// Brings systemd's fd store up to date with the servers the primary holds: each new
    /// round-robin or shared listener stored (`FDSTORE=1`), each closed one removed
    /// (`FDSTOREREMOVE=1`, not once a stop began: the restart wants them). Looked at only
    /// when the set of handles changed.
    pub(super) fn systemd_fdstore(&mut self) {
        let Some(sd) = self.sup_state.systemd.as_mut() else { return };
        let seen = (self.next_handle, self.handles.len());
        if !sd.notifier.fdstore() || sd.seen == seen {
            return;
        }
        sd.seen = seen;
        for (&hid, h) in self.handles.iter() {
            if sd.stored.contains_key(&hid) {
                continue;
            }
            let (fd, addr, udp) = match h {
                Handle::RoundRobin(rr) => (rr.listener.as_raw_fd(), &rr.bound, false),
                Handle::Shared(sh) => (sh.sock.as_raw_fd(), &sh.bound, sh.udp),
                // Each worker's own listener: a restarted primary makes a new group.
                Handle::ReusePort(_) => continue,
            };
            if sd.passed.contains(addr) {
                sd.stored.insert(hid, String::new());
                continue;
            }
            let text = match addr {
                crate::sys::socket::Addr::Inet(a) => a.to_string(),
                crate::sys::socket::Addr::Unix(p) => p.display().to_string(),
            };
            let name = fd_name(&format!("{}{text}", if udp { "udp-" } else { "" }));
            if sd.send(&format!("FDSTORE=1\nFDNAME={name}"), &[fd]) {
                sd.stored.insert(hid, name);
            }
        }
        let stopping = self.sup.stopping().is_some();
        let gone: Vec<u32> = sd.stored.keys().copied().filter(|hid| !self.handles.contains_key(hid)).collect();
        for hid in gone {
            let name = sd.stored.remove(&hid).unwrap_or_default();
            if !name.is_empty() && !stopping {
                sd.send(&format!("FDSTOREREMOVE=1\nFDNAME={name}"), &[]);
            }
        }
    }
}

impl Systemd {
    /// One datagram to systemd; a failure is traced, never fatal. Whether it was sent.
    fn send(&self, state: &str, fds: &[RawFd]) -> bool {
        match crate::sys::notify::send(&self.target, state.as_bytes(), fds) {
            Ok(()) => {
                crate::trace::trace!("primary", "sd_notify {:?}", state);
                true
            }
            Err(e) => {
                crate::trace::trace!("primary", "sd_notify {:?} failed: {e}", state);
                false
            }
        }
    }
}
