//! What the distributor does with each line a worker sends (§4.2, §5.2, §6.2).

#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;

use super::SchedPolicy;
use super::WorkerState;
use super::distributor::Distributor;
use super::handle::Handle;
use super::lane::Lane;
use super::reuseport::ReusePortHandle;
use super::scheduler::Path;
use super::settings::Distribution;
use crate::sys::socket::{self, ListenOpts};
use std::os::fd::AsFd;

/// Fds the primary keeps free for accepting connections and forking workers.
const FD_RESERVE: u64 = 32;
use super::round_robin::RoundRobinHandle;
use super::shared_handle::SharedHandle;
use crate::address::{self, DEFAULT_BACKLOG, FLAG_IPV6ONLY, Target};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ipc::inbound::{self, Inbound, Received};
use crate::ipc::message::{self, Msg};
use crate::ipc::wire::{self, HandleType};
use crate::ipc::writer::OutFd;
use std::os::fd::AsRawFd;

impl Distributor {
    /// Handles one line from worker `id`, by the channel rules in `ipc::inbound`. An error
    /// closes that worker's channel (after the ACK a handle is owed, if any).
    pub(super) fn handle_line(&mut self, id: u32, line: &[u8], fd: Option<OwnedFd>) -> Result<()> {
        let Received { reply, inbound } = inbound::classify(line, fd)?;
        if let Some(c) = reply {
            self.send_control(id, c.line());
        }
        match inbound? {
            Inbound::User { json } => {
                let pid = self.pid(id);
                self.shared.events.push(Event::Message { id, pid, json, fd: None });
                Ok(())
            }
            Inbound::UserWithHandle { json, fd } => {
                let pid = self.pid(id);
                self.shared.events.push(Event::Message { id, pid, json, fd: Some(fd) });
                Ok(())
            }
            Inbound::Cluster { msg, fd } => self.handle_cluster(id, &msg, fd),
            Inbound::HandleReplied { nacked } => {
                let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { return Ok(()) };
                let r = ch.writer.handle_replied();
                if nacked {
                    // The worker did not get the connection: give it to someone else, and keep
                    // this worker out of rotation (it is not marked free again).
                    let f = self.workers.get_mut(&id).and_then(|w| {
                        let f = w.in_flight.pop();
                        w.counters.rerouted += f.is_some() as u64;
                        f
                    });
                    if let Some(f) = f {
                        self.requeue(f);
                    }
                    let pid = self.pid(id);
                    self.shared.events.push(Event::Error {
                        id,
                        pid,
                        code: crate::error::code::PROTOCOL,
                        message: "worker refused a handle (NODE_HANDLE_NACK)".into(),
                    });
                }
                self.after_write(id, r);
                Ok(())
            }
            Inbound::Ignored => Ok(()),
        }
    }

    fn handle_cluster(&mut self, id: u32, m: &Msg<'_>, fd: Option<OwnedFd>) -> Result<()> {
        if fd.is_some() {
            return Err(Error::protocol(format!("unexpected fd with cluster message {:?}", m.act())));
        }
        if let Some(ack) = m.ack {
            if let Some(accepted) = m.accepted {
                crate::trace::trace!("primary", "accepted worker={id} ack={ack} accepted={accepted}");
                self.on_newconn_reply(id, ack, accepted);
            }
            return Ok(());
        }
        let pid = self.pid(id);
        crate::trace::trace!("primary", "{} worker={id} key={} seq={}", m.act(), m.key.as_deref().unwrap_or("-"), m.seq.unwrap_or(-1));
        match m.act() {
            "online" => {
                self.set_state(id, WorkerState::Online);
                self.shared.events.push(Event::Online { id, pid });
                let now = self.sup_now();
                self.sup.online(id, now);
                self.sup_state.touch();
            }
            // libcluster's: the worker says it is ready (`cluster_worker_ready`); a Node
            // primary ignores an act it does not know.
            "ready" => {
                let now = self.sup_now();
                self.sup.said_ready(id, now);
                self.sup_state.touch();
            }
            "queryServer" => self.on_query_server(id, m)?,
            "listening" => {
                self.set_state(id, WorkerState::Listening);
                let address_type = match m.address_type.map(|r| r.get()) {
                    Some("6") => 6,
                    Some("-1") => -1,
                    Some("\"udp4\"") => crate::event::ADDRESS_UDP4,
                    Some("\"udp6\"") => crate::event::ADDRESS_UDP6,
                    _ => 4,
                };
                let port = m.port.unwrap_or(0) as i32;
                let fd = m.fd.unwrap_or(-1) as i32;
                let address = m.address.as_ref().map(|a| a.to_string());
                self.shared.events.push(Event::Listening { id, pid, address, port, address_type, fd });
                let now = self.sup_now();
                self.sup.listening(id, now);
                self.sup_state.touch();
            }
            "close" => {
                if let Some(key) = m.key.as_deref()
                    && let Some(&hid) = self.keys.get(key)
                {
                    self.remove_from_handle(hid, id, false);
                }
            }
            "exitedAfterDisconnect" => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.exited_after_disconnect = Some(true);
                }
                if let Some(info) = self.shared.table.lock().get_mut(&id) {
                    info.exited_after_disconnect = true;
                }
                let seq = self.next_seq();
                self.out.clear();
                wire::ack(&mut self.out, m.seq.unwrap_or(0), seq);
                self.send_line(id, None);
            }
            _ => {}
        }
        Ok(())
    }

    /// `queryServer` (§6.2): find or create the handle for the key, attach the worker, reply.
    fn on_query_server(&mut self, id: u32, m: &Msg<'_>) -> Result<()> {
        if self.workers.get(&id).is_some_and(|w| w.exited_after_disconnect == Some(true)) {
            return Ok(());
        }
        let Some(seq) = m.seq else {
            return Err(Error::protocol("queryServer without seq"));
        };
        // The settings, read once for this query (a snapshot: never per connection).
        let settings = self.shared.settings.read().distribution();
        // A libcluster worker may take several connections in flight (a Node one, one).
        if let Some(n) = m.inflight.filter(|&n| n > 1) {
            let n = (n as usize).min(settings.max_in_flight).max(1);
            if let Some(w) = self.workers.get_mut(&id) {
                w.max_in_flight = n;
                if let Some(ch) = w.channel.as_mut() {
                    ch.writer.set_max_handles(n);
                }
            }
        }
        let at = m.address_type.map(|r| r.get().trim_matches('"').to_string()).unwrap_or_else(|| "null".into());
        let index = m.index.unwrap_or(0);
        let key = address::handle_key(m.address.as_deref(), m.port, &at, m.fd, index);
        let data = m.data.map(|r| r.get().to_string()).unwrap_or_else(|| "null".into());

        let hid = if !self.shared.allowed(m.address.as_deref(), m.port) {
            let what = format!("{}:{}", m.address.as_deref().unwrap_or("null"), m.port.unwrap_or(0));
            Err(Error::errno(libc::EACCES, format!("{what} is not on the primary's bind allowlist")))
        } else if let Err(e) = self.room_for_server(id, settings.max_servers) {
            let pid = self.pid(id);
            self.shared.events.push(Event::Error { id, pid, code: e.code, message: e.message.clone() });
            Err(e)
        } else {
            match self.keys.get(&key) {
                Some(&hid) => Ok(hid),
                None => self.create_handle(id, &key, m, &at, data, &settings),
            }
        };
        let hid = match hid {
            Ok(hid) => hid,
            Err(e) => {
                let pid = self.pid(id);
                if e.code == crate::error::code::PROTOCOL {
                    self.shared.events.push(Event::Error { id, pid, code: e.code, message: e.message.clone() });
                }
                let errno = if e.code > -4096 { e.code } else { -libc::EINVAL };
                let reply_seq = self.next_seq();
                self.out.clear();
                let r = wire::QueryReply { errno: Some(errno as i64), key: &key, ack: seq, data: "null", sockname: None, lane: false };
                wire::query_reply(&mut self.out, &r, reply_seq);
                self.send_line(id, None);
                return Ok(());
            }
        };
        let reply_seq = self.next_seq();
        let max_in_flight = self.workers.get(&id).map_or(1, |w| w.max_in_flight);
        let h = self.handles.get_mut(&hid).expect("handle for key");
        self.out.clear();
        match h {
            Handle::RoundRobin(rr) => {
                // A libcluster peer that asks for the fast lane gets one (unless it is off).
                let lane = match m.lane.filter(|f| f & wire::LANE_WANTED != 0) {
                    Some(f) if settings.fast_lane => Lane::new(f & wire::LANE_NONBLOCKING != 0).and_then(|l| Ok((l.worker_end()?, l))).ok(),
                    _ => None,
                };
                let path = match &lane {
                    Some(_) => Path::Lane { window: settings.lane_window },
                    None => Path::Node { max: max_in_flight },
                };
                let (end, lane) = lane.unzip();
                rr.add(id, path, lane);
                let sockname = address::sockname_parts(&rr.bound);
                let r = wire::QueryReply {
                    errno: None,
                    key: &key,
                    ack: seq,
                    data: &rr.data,
                    sockname: sockname.as_ref().map(|(a, f, p)| (a.as_str(), *f, *p)),
                    lane: end.is_some(),
                };
                let sent = match end {
                    // The lane's end travels with the reply, as a shared handle's socket does.
                    Some(end) => {
                        let mut inner = Vec::with_capacity(256);
                        wire::query_reply(&mut inner, &r, reply_seq);
                        wire::handle_envelope(&mut self.out, HandleType::NetNative, &inner);
                        self.send_line(id, Some(OutFd::Owned(end)))
                    }
                    None => {
                        wire::query_reply(&mut self.out, &r, reply_seq);
                        self.send_line(id, None)
                    }
                };
                if sent {
                    self.pump(hid);
                }
            }
            Handle::ReusePort(rp) => {
                // Its own listener in the group, as a shared handle (§6.5).
                let listener = match rp.add(id, max_in_flight) {
                    Ok((l, was_orphan)) => {
                        if was_orphan {
                            let _ = self.epoll.delete(l.as_fd());
                        }
                        l.try_clone()
                    }
                    Err(e) => Err(e),
                };
                let mut inner = Vec::with_capacity(128);
                match listener {
                    Ok(l) => {
                        let r = wire::QueryReply { errno: Some(0), key: &key, ack: seq, data: &rp.data, sockname: None, lane: false };
                        wire::query_reply(&mut inner, &r, reply_seq);
                        wire::handle_envelope(&mut self.out, HandleType::NetNative, &inner);
                        self.send_line(id, Some(OutFd::Owned(l)));
                    }
                    Err(e) => {
                        let errno = -e.raw_os_error().unwrap_or(libc::EINVAL) as i64;
                        let r = wire::QueryReply { errno: Some(errno), key: &key, ack: seq, data: "null", sockname: None, lane: false };
                        wire::query_reply(&mut self.out, &r, reply_seq);
                        self.send_line(id, None);
                    }
                }
            }
            Handle::Shared(sh) => {
                sh.add(id);
                // The reply travels inside a NODE_HANDLE with the bound socket (§6.5).
                let mut inner = Vec::with_capacity(128);
                let r = wire::QueryReply { errno: Some(0), key: &key, ack: seq, data: &sh.data, sockname: None, lane: false };
                wire::query_reply(&mut inner, &r, reply_seq);
                let ty = if sh.udp { HandleType::DgramNative } else { HandleType::NetNative };
                wire::handle_envelope(&mut self.out, ty, &inner);
                let raw = sh.sock.as_raw_fd();
                self.send_line(id, Some(OutFd::Borrowed(raw)));
            }
        }
        Ok(())
    }

    /// A worker holds at most `max_servers` servers, and the primary keeps its last
    /// `FD_RESERVE` fds for accepting and forking (every server, listener or lane, costs the
    /// primary fds): past either, the worker's `queryServer` fails with `EMFILE`.
    fn room_for_server(&self, id: u32, max: usize) -> Result<()> {
        let held = self.handles.values().filter(|h| h.has(id)).count();
        if held >= max {
            return Err(Error::errno(
                libc::EMFILE,
                format!("worker {id} already holds {held} servers, the most one worker may (max_servers)"),
            ));
        }
        match crate::sys::fd::headroom() {
            Ok(free) if free < FD_RESERVE => Err(Error::errno(
                libc::EMFILE,
                format!("the primary keeps its last {FD_RESERVE} fds for accepting and forking; server for worker {id} refused"),
            )),
            _ => Ok(()),
        }
    }

    fn create_handle(&mut self, id: u32, key: &str, m: &Msg<'_>, address_type: &str, data: String, settings: &Distribution) -> Result<u32> {
        let target = Target::from_query(m.address.as_deref(), m.port, address_type)?;
        // A Unix path is bound (and later removed) with the asking worker's filesystem
        // rights, never the primary's: a worker cannot reach through it where it could not
        // go itself (a symlink into a directory it may not write, say).
        let owner = match &target {
            Target::Pipe(_) => {
                Some(crate::sys::fscred::of_process(self.pid(id)).map_err(|e| Error::io(format!("credentials of worker {id}"), e))?)
            }
            _ => None,
        };
        let target = &target;
        let bind = |f: &dyn Fn() -> Result<Handle>| -> Result<Handle> {
            match &owner {
                Some(c) => {
                    crate::sys::fscred::run_as(c, f).map_err(|e| Error::io(format!("take the filesystem rights of worker {id}"), e))?
                }
                None => f(),
            }
        };
        let backlog = match message::int_or_none(m.backlog)? {
            Some(b) if b > 0 => b.min(i32::MAX as i64) as i32,
            _ => DEFAULT_BACKLOG,
        };
        let flags = m.flags.unwrap_or(0);
        let ipv6_only = flags & FLAG_IPV6ONLY != 0;
        let udp = address_type.starts_with("udp");
        let shared = udp || settings.sched_policy == SchedPolicy::None;
        let policy_reuseport = settings.sched_policy == SchedPolicy::ReusePort && !matches!(target, Target::Pipe(_));
        let least_loaded = settings.least_loaded;
        let (readable_all, writable_all) = (message::is_true(m.readable_all), message::is_true(m.writable_all));
        // A socket the primary was given for this address (systemd, a hot upgrade) is taken
        // as it is: its clients may be waiting in its backlog already.
        let inherited = self.shared.inherited.lock().take(target, udp);
        if let Some(s) = inherited {
            crate::trace::trace!("primary", "inherited socket for key={key}");
            let handle = if udp || shared {
                Handle::Shared(SharedHandle::new(key.to_string(), s.fd, s.addr, data.clone(), udp))
            } else {
                socket::listen(s.fd.as_fd(), backlog).map_err(|e| Error::io("listen on an inherited socket", e))?;
                Handle::RoundRobin(RoundRobinHandle::new(key.to_string(), s.fd, s.addr, data.clone(), least_loaded))
            };
            return self.insert_handle(key, handle);
        }
        let mut handle = bind(&|| {
            Ok(if udp {
                let (sock, bound) = target.bind_datagram(ipv6_only, flags & 4 != 0)?;
                Handle::Shared(SharedHandle::new(key.to_string(), sock, bound, data.clone(), true))
            } else if shared {
                let (sock, bound) = target.bind(ipv6_only, None)?;
                crate::address::apply_pipe_mode(&bound, readable_all, writable_all)?;
                Handle::Shared(SharedHandle::new(key.to_string(), sock, bound, data.clone(), false))
            } else if policy_reuseport {
                let opts = ListenOpts { backlog: Some(backlog), ipv6_only, reuse_port: true };
                let (first, bound) = target.bind_with(opts)?;
                Handle::ReusePort(ReusePortHandle::new(key.to_string(), first, bound, data.clone(), opts))
            } else {
                let (listener, bound) = target.bind(ipv6_only, Some(backlog))?;
                crate::address::apply_pipe_mode(&bound, readable_all, writable_all)?;
                Handle::RoundRobin(RoundRobinHandle::new(key.to_string(), listener, bound, data.clone(), least_loaded))
            })
        })?;
        handle.set_path_owner(owner);
        self.insert_handle(key, handle)
    }

    fn insert_handle(&mut self, key: &str, handle: Handle) -> Result<u32> {
        let hid = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(hid, handle);
        if let Err(e) = self.add_listener(hid) {
            self.handles.remove(&hid);
            return Err(Error::io("epoll_ctl", e));
        }
        self.keys.insert(key.to_string(), hid);
        Ok(hid)
    }
}
