//! The old primary's side of a hot upgrade: it starts the new primary and gives it the
//! listening sockets; once the new one is ready, it stops accepting, forwards what no worker
//! received and drains its workers; a new primary that fails is killed.

#![forbid(unsafe_code)]

use super::*;

impl Distributor {
    /// `cluster_upgrade`: starts the new primary and gives it our listeners. Returns its pid.
    pub(in crate::primary) fn upgrade_start(&mut self, timeout_ms: u64) -> Result<i32> {
        if self.upgrade.out.is_some() || self.upgrade.handed_over || self.sup.upgrading() {
            return Err(Error::new(code::BUSY, "a hot upgrade of the primary is under way"));
        }
        if self.upgrade.incoming.as_ref().is_some_and(|i| !i.said_ready) {
            return Err(Error::new(code::BUSY, "this primary is itself being started by an upgrade"));
        }
        if self.sup.stopping().is_some() {
            return Err(Error::new(code::BUSY, "the primary is stopping"));
        }
        if self.sup.rollout_state().is_some() {
            return Err(Error::new(code::BUSY, "a rolling restart or recycle is under way"));
        }
        let plan = plan()?;
        let (ours, theirs) = fd::seqpacket_pair().map_err(|e| Error::io("socketpair", e))?;
        let spawned = spawn::spawn(&plan, theirs.as_fd()).map_err(|e| Error::io(format!("spawn {}", plan.path.to_string_lossy()), e))?;
        drop(theirs);
        let pid = spawned.pid;
        let child = match Child::open(pid) {
            Ok(c) => c,
            Err(e) => {
                let _ = Child::Pid(pid).signal(libc::SIGKILL);
                pidfd::reap_pid(pid);
                return Err(Error::io("pidfd_open", e));
            }
        };
        let mut out = Outgoing { sock: ours, child, deadline: Instant::now() + Duration::from_millis(timeout_ms), reaped: false };
        // The socket stays blocking (reads use MSG_DONTWAIT): a send waits for room in the
        // channel, at most SEND_TIMEOUT, rather than dropping a forwarded connection.
        let sent = fd::set_send_timeout(out.sock.as_fd(), SEND_TIMEOUT).and_then(|_| self.send_listeners(&out.sock));
        if let Err(e) = sent {
            // It died at once (a broken program file) or does not read: reported as aborted.
            kill(&mut out);
            let e = Error::io("the new primary did not take the listeners", e);
            self.upgrade_notice(UpgradeState::Aborted, pid, e.code);
            return Err(e);
        }
        let reg =
            self.epoll.add(out.sock.as_fd(), READABLE | HUP, token(KIND_UPGRADE, OUT_SOCK)).and_then(|_| match out.child.pollable() {
                Some(p) => self.epoll.add(p, READABLE, token(KIND_UPGRADE, OUT_PIDFD)),
                None => Ok(()),
            });
        if let Err(e) = reg {
            let _ = self.epoll.delete(out.sock.as_fd());
            kill(&mut out);
            let e = Error::io("epoll_ctl", e);
            self.upgrade_notice(UpgradeState::Aborted, pid, e.code);
            return Err(e);
        }
        crate::trace::trace!("primary", "upgrade: started new primary pid={pid}");
        self.upgrade.out = Some(out);
        self.sup.set_upgrading(true);
        self.upgrade_notice(UpgradeState::Started, pid, 0);
        Ok(pid)
    }

    /// Every listening socket we hold (round-robin and shared servers; inherited ones no
    /// worker took), then `E`. Blocking sends: the new primary reads them at its start.
    pub(in crate::primary) fn send_listeners(&self, sock: &OwnedFd) -> io::Result<()> {
        for h in self.handles.values() {
            let (key, l) = match h {
                Handle::RoundRobin(rr) => (&rr.key, rr.listener.as_raw_fd()),
                Handle::Shared(sh) => (&sh.key, sh.sock.as_raw_fd()),
                // Per-worker SO_REUSEPORT listeners are not handed over (docs/upgrade.md).
                Handle::ReusePort(_) => continue,
            };
            scm::send(sock.as_fd(), &message(b'L', key), Some(l), false)?;
        }
        for (l, name) in self.shared.inherited.lock().raw_fds() {
            scm::send(sock.as_fd(), &message(b'L', name.as_deref().unwrap_or("inherited")), Some(l), false)?;
        }
        // The agent-check listeners: the new primary's `cluster_agent_listen` takes them.
        for l in crate::primary::agent::sockets() {
            scm::send(sock.as_fd(), &message(b'L', "agent"), Some(l.as_raw_fd()), false)?;
        }
        scm::send(sock.as_fd(), b"E", None, false)?;
        Ok(())
    }

    /// The new primary failed before it was ready: killed and reaped; nothing else changed.
    pub(in crate::primary) fn upgrade_abort(&mut self, why: &str, err: i32) {
        let Some(mut out) = self.upgrade.out.take() else { return };
        let _ = self.epoll.delete(out.sock.as_fd());
        if let Some(p) = out.child.pollable() {
            let _ = self.epoll.delete(p);
        }
        let pid = out.child.pid();
        kill(&mut out);
        self.sup.set_upgrading(false);
        self.shared.events.push(Event::Error { id: 0, pid, code: err, message: format!("upgrade aborted: {why}") });
        self.upgrade_notice(UpgradeState::Aborted, pid, err);
    }

    pub(in crate::primary) fn new_primary_exited(&mut self) {
        let Some(out) = self.upgrade.out.as_mut() else { return };
        // Still running (a spurious wakeup): nothing to do.
        if let Ok(None) = out.child.try_reap() {
            return;
        }
        out.reaped = true;
        if let Some(p) = out.child.pollable() {
            let _ = self.epoll.delete(p);
        }
        if self.upgrade.handed_over {
            self.shared.events.push(Event::Error {
                id: 0,
                pid: out.child.pid(),
                code: -libc::ECHILD,
                message: "the new primary exited".into(),
            });
        } else {
            self.upgrade_abort("the new primary exited before it was ready", -libc::ECHILD);
        }
    }

    pub(in crate::primary) fn read_outgoing(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            let Some(out) = self.upgrade.out.as_ref() else { return };
            match scm::recv(out.sock.as_fd(), &mut buf, true) {
                Ok(r) if r.len == 0 => {
                    if self.upgrade.handed_over {
                        // The new primary is gone after the handover: nothing more to forward.
                        let _ = self.epoll.delete(out.sock.as_fd());
                        return;
                    }
                    self.upgrade_abort("the new primary closed its upgrade channel", -libc::EPIPE);
                    return;
                }
                Ok(r) => {
                    if parse(&buf[..r.len]).is_some_and(|(t, _)| t == b'R') && !self.upgrade.handed_over {
                        self.hand_over();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    if !self.upgrade.handed_over {
                        self.upgrade_abort(&format!("upgrade channel: {e}"), Error::from(e).code);
                    } else if let Some(out) = self.upgrade.out.as_ref() {
                        let _ = self.epoll.delete(out.sock.as_fd());
                    }
                    return;
                }
            }
        }
    }

    /// The new primary is ready: stop accepting, forward what we hold, drain every worker.
    pub(in crate::primary) fn hand_over(&mut self) {
        self.upgrade.handed_over = true;
        let pid = self.upgrade.out.as_ref().map_or(0, |o| o.child.pid());
        crate::trace::trace!("primary", "upgrade: new primary pid={pid} is ready; handing over");
        self.upgrade_notice(UpgradeState::Ready, pid, 0);
        // The new primary answers the load balancer from now on.
        crate::primary::agent::retire();
        let hids: Vec<u32> = self.handles.keys().copied().collect();
        for &hid in &hids {
            if let Some(Handle::RoundRobin(rr)) = self.handles.get(&hid) {
                let _ = self.epoll.delete(rr.listener.as_fd());
            }
            self.forward_held(hid);
        }
        // Inherited sockets no worker took: the new primary has its own copies.
        drop(std::mem::take(&mut *self.shared.inherited.lock()));
        let now = self.sup_now();
        self.sup.enable();
        self.sup.handed_over(now);
        self.sup_state.touch();
        self.apply_actions();
    }

    /// After the handover: every connection handle `hid` holds goes to the new primary.
    pub(in crate::primary) fn forward_held(&mut self, hid: u32) {
        let Some(h) = self.handles.get_mut(&hid) else { return };
        let key = h.key().to_string();
        let Some(sched) = h.sched() else { return };
        let held = sched.take_held();
        if held.is_empty() {
            return;
        }
        let Some(out) = self.upgrade.out.as_ref() else { return };
        let msg = message(b'C', &key);
        let mut lost = 0;
        for conn in &held {
            if scm::send(out.sock.as_fd(), &msg, Some(conn.as_raw_fd()), false).is_err() {
                lost += 1;
            }
        }
        crate::trace::trace!("primary", "upgrade: forwarded {} connection(s) key={key} ({lost} lost)", held.len() - lost);
    }
}

pub(in crate::primary) fn kill(out: &mut Outgoing) {
    if !out.reaped {
        let _ = out.child.signal(libc::SIGKILL);
        pidfd::reap_pid(out.child.pid());
        out.reaped = true;
    }
}
