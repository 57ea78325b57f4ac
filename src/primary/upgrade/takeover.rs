//! The new primary's side of a hot upgrade: the channel from the old primary, the
//! connections it forwards, and the word that this primary is ready.

#![forbid(unsafe_code)]

use super::*;

impl Distributor {
    /// Registers the channel from the old primary (this one was started by an upgrade).
    pub(in crate::primary) fn upgrade_adopt_incoming(&mut self) {
        let Some(sock) = self.shared.upgrade_sock.lock().take() else { return };
        if let Err(e) =
            fd::set_nonblocking(sock.as_fd(), true).and_then(|_| self.epoll.add(sock.as_fd(), READABLE | HUP, token(KIND_UPGRADE, IN_SOCK)))
        {
            crate::trace::trace!("primary", "upgrade: channel not watched: {e}");
            return;
        }
        let old_pid = nix::unistd::getppid().as_raw();
        self.upgrade.incoming = Some(Incoming { sock, said_ready: false, old_pid });
    }

    /// The new primary's side: connections the old one forwards, or its end.
    pub(in crate::primary) fn read_incoming(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            let Some(inc) = self.upgrade.incoming.as_ref() else { return };
            let r = match scm::recv(inc.sock.as_fd(), &mut buf, true) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => Default::default(),
            };
            if r.len == 0 {
                let inc = self.upgrade.incoming.take().expect("checked above");
                let _ = self.epoll.delete(inc.sock.as_fd());
                crate::trace::trace!("primary", "upgrade: the old primary pid={} is gone", inc.old_pid);
                self.upgrade_notice(UpgradeState::Done, inc.old_pid, 0);
                return;
            }
            let Some((b'C', key)) = parse(&buf[..r.len]) else { continue };
            let Some(&hid) = self.keys.get(key) else {
                crate::trace::trace!("primary", "upgrade: a forwarded connection for key={key}, which no worker serves: closed");
                continue;
            };
            if let Some(sched) = self.handles.get_mut(&hid).and_then(Handle::sched) {
                for conn in r.fds {
                    sched.give_back(conn);
                }
                self.pump(hid);
            }
        }
    }
}
