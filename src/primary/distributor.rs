//! The distributor thread: one epoll loop owning every listening socket, worker channel and
//! worker pidfd (`docs/design.md` §3). It never calls user code and never waits for the user's thread.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use super::handle::Handle;
use super::id_map::IdMap;
use super::supervising::{SupState, entropy};
use super::supervisor::Supervisor;
use super::worker_conn::{Channel, WorkerConn};
use super::{Command, Shared, WorkerInfo, WorkerState};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ipc::codec::Decoder;
use crate::ipc::writer::{OutFd, Writer};
use crate::ipc::{message, wire};
use crate::sys::epoll::{Epoll, Events, HUP, READABLE, WRITABLE};
use crate::sys::pidfd::{self, ExitStatus};
use crate::sys::spawn::{self, SpawnPlan};
use crate::sys::{fd, process, scm};

const KIND_WAKE: u64 = 0;
const KIND_CHANNEL: u64 = 1;
const KIND_PIDFD: u64 = 2;
/// The event queue has room again for user messages (see `event`).
const KIND_SPACE: u64 = 4;
pub(super) const KIND_LISTENER: u64 = 3;
/// Reads per channel per wakeup, so one chatty worker cannot starve the others (P6).
const READS_PER_WAKEUP: usize = 16;
/// How often lanes with connections queued are checked for a stalled worker.
pub(super) const TICK_MS: u128 = 250;

pub(super) fn token(kind: u64, id: u32) -> u64 {
    (kind << 32) | id as u64
}

pub(super) struct Distributor {
    pub(super) shared: Arc<Shared>,
    pub(super) epoll: Epoll,
    pub(super) workers: IdMap<WorkerConn>,
    pub(super) handles: IdMap<Handle>,
    pub(super) keys: HashMap<String, u32>,
    pub(super) next_handle: u32,
    /// Node's per-process cluster message counter, shared across workers (§5.1).
    pub(super) seq: i64,
    /// Scratch for outgoing lines: the hot path formats here without allocating.
    pub(super) out: Vec<u8>,
    rbuf: Vec<u8>,
    line: Vec<u8>,
    /// Workers whose exit we poll for (no pidfd on this system).
    by_pid: Vec<u32>,
    /// Scratch list of handle ids for the tick (no allocation per wakeup).
    pub(super) tick_ids: Vec<u32>,
    /// Scratch batch of connections for lanes (no allocation per connection).
    pub(super) lane_batch: Vec<(u32, OwnedFd)>,
    /// When the current dealing pass began.
    pub(super) pass_at: Instant,
    /// Supervision's decisions (`supervisor`) and what the distributor keeps for it.
    pub(super) sup: Supervisor,
    pub(super) sup_state: SupState,
    /// A hot upgrade of the primary, either side (`upgrade`).
    pub(super) upgrade: super::upgrade::UpgradeSlot,
}

pub(super) fn start(shared: Arc<Shared>) -> Result<()> {
    let epoll = Epoll::new().map_err(|e| Error::io("epoll_create1", e))?;
    epoll.add(shared.wake.as_fd(), READABLE, token(KIND_WAKE, 0)).map_err(|e| Error::io("epoll_ctl", e))?;
    epoll.add(shared.events.space_fd(), READABLE, token(KIND_SPACE, 0)).map_err(|e| Error::io("epoll_ctl", e))?;
    let mut d = Distributor {
        shared,
        epoll,
        workers: IdMap::default(),
        handles: IdMap::default(),
        keys: HashMap::new(),
        next_handle: 1,
        seq: 0,
        out: Vec::with_capacity(512),
        rbuf: vec![0; 64 * 1024],
        line: Vec::with_capacity(512),
        by_pid: Vec::new(),
        tick_ids: Vec::new(),
        lane_batch: Vec::with_capacity(64),
        pass_at: Instant::now(),
        sup: Supervisor::new(entropy()),
        sup_state: SupState::new(),
        upgrade: Default::default(),
    };
    d.upgrade_adopt_incoming();
    crate::signals::set_wake(d.shared.wake.raw());
    std::thread::Builder::new()
        .name("cluster-distributor".into())
        .spawn(move || {
            process::block_signals_in_this_thread();
            d.run()
        })
        .map_err(|e| Error::io("spawn distributor thread", e))?;
    Ok(())
}

impl Distributor {
    fn run(&mut self) {
        // Signals that came before the distributor ran.
        self.take_signals();
        let mut events = Events::with_capacity(256);
        let mut last_tick = Instant::now();
        let mut lane_timeout = -1;
        loop {
            // Children watched by pid (no pidfd) are polled every 50 ms.
            let timeout = match (self.by_pid.is_empty(), lane_timeout) {
                (true, t) => t,
                (false, t) if t >= 0 => t.min(50),
                (false, _) => 50,
            };
            let timeout = match (timeout, self.supervision_timeout()) {
                (t, None) => t,
                (t, Some(s)) if t >= 0 => t.min(s),
                (_, Some(s)) => s,
            };
            let timeout = match (timeout, self.upgrade_poll()) {
                (t, -1) => t,
                (-1, u) => u,
                (t, u) => t.min(u),
            };
            if let Err(e) = self.epoll.wait(&mut events, timeout) {
                self.shared.events.push(Event::Error {
                    id: 0,
                    pid: 0,
                    code: Error::from(e).code,
                    message: "epoll_wait failed; distributor stopped".into(),
                });
                return;
            }
            for ready in events.iter() {
                let id = ready.token as u32;
                match ready.token >> 32 {
                    KIND_WAKE => self.run_commands(),
                    KIND_CHANNEL => self.on_channel(id, ready.events),
                    KIND_PIDFD => self.on_pidfd(id),
                    KIND_SPACE => self.resume_channels(),
                    super::upgrade::KIND_UPGRADE => self.on_upgrade(id),
                    KIND_LISTENER => {
                        if let Some(sched) = self.handles.get_mut(&id).and_then(Handle::sched) {
                            sched.listener_ready();
                            self.pump(id);
                        }
                    }
                    _ => {}
                }
            }
            for id in self.by_pid.clone() {
                self.on_pidfd(id);
            }
            self.supervise();
            if lane_timeout >= 0 || self.handles.values().any(Handle::ticks) {
                let due = last_tick.elapsed().as_millis() >= TICK_MS;
                if due {
                    last_tick = Instant::now();
                }
                lane_timeout = self.tick(due);
            }
        }
    }

    pub(super) fn next_seq(&mut self) -> i64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    fn run_commands(&mut self) {
        self.shared.wake.reset();
        self.take_signals();
        loop {
            let Some(cmd) = self.shared.commands.lock().pop_front() else { return };
            match cmd {
                Command::Spawn { id, plan, reply } => {
                    let r = self.spawn(id, &plan);
                    if r.is_ok() {
                        let now = self.sup_now();
                        self.sup.forked(id, now, None);
                        self.sup_state.touch();
                    }
                    let _ = reply.send(r);
                }
                Command::Send { id, line, fd } => {
                    self.out.clear();
                    self.out.extend_from_slice(&line);
                    self.send_line(id, fd.map(OutFd::Owned));
                }
                Command::Disconnect { id } => {
                    let now = self.sup_now();
                    self.sup.disconnected_by_program(id, now);
                    self.sup_state.touch();
                    self.disconnect(id);
                }
                Command::CloseChannel { id } => self.close_channel(id, None),
                Command::Upgrade { timeout_ms, reply } => {
                    let _ = reply.send(self.upgrade_start(timeout_ms));
                }
                other => self.supervision_command(other),
            }
        }
    }

    pub(super) fn spawn(&mut self, id: u32, plan: &SpawnPlan) -> Result<i32> {
        let (ours, theirs) = fd::socketpair().map_err(|e| Error::io("socketpair", e))?;
        let spawned = spawn::spawn(plan, theirs.as_fd()).map_err(|e| Error::io(format!("spawn {}", plan.path.to_string_lossy()), e))?;
        let pid = spawned.pid;
        let mut stdio: Vec<_> = spawned.stdio.into_iter().map(|f| f.map(Arc::new)).collect();
        stdio.extend(spawned.extra.into_iter().map(|f| f.map(Arc::new)));
        drop(theirs);
        // From here on the child exists: on any failure it is killed and reaped.
        let child = match pidfd::Child::open(pid) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                let c = pidfd::Child::Pid(pid);
                let _ = c.signal(libc::SIGKILL);
                pidfd::reap_pid(pid);
                return Err(Error::io("pidfd_open", e));
            }
        };
        let reg = fd::set_nonblocking(ours.as_fd(), true)
            .and_then(|_| self.epoll.add(ours.as_fd(), READABLE | HUP, token(KIND_CHANNEL, id)))
            .and_then(|_| match child.pollable() {
                Some(fd) => self.epoll.add(fd, READABLE, token(KIND_PIDFD, id)),
                None => Ok(()),
            });
        if let Err(e) = reg {
            let _ = self.epoll.delete(ours.as_fd());
            let _ = child.signal(libc::SIGKILL);
            pidfd::reap_pid(pid);
            return Err(Error::io("epoll_ctl", e));
        }
        if child.pollable().is_none() {
            self.by_pid.push(id);
        }
        let sock = Arc::new(ours);
        let channel = Channel {
            writer: Writer::new(sock.clone(), true),
            sock,
            decoder: Decoder::with_global_cap(),
            watching_out: false,
            paused: false,
        };
        self.workers.insert(
            id,
            WorkerConn {
                pid,
                channel: Some(channel),
                child: child.clone(),
                exited_after_disconnect: None,
                in_flight: Vec::new(),
                max_in_flight: 1,
                counters: Default::default(),
                stalled_since: None,
            },
        );
        self.shared.table.lock().insert(
            id,
            WorkerInfo {
                id,
                pid,
                child: Some(child),
                state: WorkerState::None,
                connected: true,
                dead: false,
                exited_after_disconnect: false,
                listed: true,
                stdio,
            },
        );
        crate::trace::trace!("primary", "fork worker={id} pid={pid} exec={}", plan.path.to_string_lossy());
        self.shared.events.push(Event::Fork { id, pid });
        Ok(pid)
    }

    pub(super) fn set_state(&self, id: u32, state: WorkerState) {
        if let Some(w) = self.shared.table.lock().get_mut(&id) {
            w.state = state;
        }
    }

    pub(super) fn pid(&self, id: u32) -> i32 {
        self.workers.get(&id).map_or(0, |w| w.pid)
    }

    fn on_channel(&mut self, id: u32, events: u32) {
        if events & WRITABLE != 0 {
            self.flush(id);
        }
        if events & (READABLE | HUP) != 0 {
            // User messages fill the event queue (the program is not dispatching): leave
            // this channel unread until there is room; its worker is held back by its own
            // socket buffer. A channel that hung up is read to its end.
            if events & HUP == 0 && self.shared.events.is_full() {
                self.pause_channel(id);
            } else {
                self.read_channel(id, READS_PER_WAKEUP);
            }
        }
    }

    fn interest(ch: &Channel) -> u32 {
        (if ch.paused { 0 } else { READABLE }) | HUP | if ch.watching_out { WRITABLE } else { 0 }
    }

    fn pause_channel(&mut self, id: u32) {
        let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { return };
        if ch.paused {
            return;
        }
        ch.paused = true;
        let _ = self.epoll.modify(ch.sock.as_fd(), Self::interest(ch), token(KIND_CHANNEL, id));
        crate::trace::trace!("primary", "paused worker={id} (event queue full)");
    }

    /// The program dispatched: read the paused channels again.
    fn resume_channels(&mut self) {
        self.shared.events.take_space();
        let ids: Vec<u32> = self.workers.iter().filter(|(_, w)| w.channel.as_ref().is_some_and(|c| c.paused)).map(|(&id, _)| id).collect();
        for id in ids {
            let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { continue };
            ch.paused = false;
            let _ = self.epoll.modify(ch.sock.as_fd(), Self::interest(ch), token(KIND_CHANNEL, id));
            crate::trace::trace!("primary", "resumed worker={id}");
            self.read_channel(id, READS_PER_WAKEUP);
        }
    }

    /// Sends one line (with an fd or not) to a worker; a failed write closes its channel, as
    /// does a worker that does not read while more than `writer::queue_limit()` bytes wait
    /// for it (a `CLUSTER_E_PROTOCOL` error event: memory per worker is bounded).
    pub(super) fn send_line(&mut self, id: u32, fd: Option<OutFd>) -> bool {
        let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { return false };
        let r = ch.writer.send(&self.out, fd);
        self.after_write(id, r)
    }

    pub(super) fn send_control(&mut self, id: u32, line: &'static [u8]) -> bool {
        let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { return false };
        let r = ch.writer.send_control(line);
        self.after_write(id, r)
    }

    pub(super) fn flush(&mut self, id: u32) {
        let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { return };
        let r = ch.writer.flush();
        self.after_write(id, r);
    }

    /// Keeps EPOLLOUT registration in step with the writer, or closes a failed channel.
    pub(super) fn after_write(&mut self, id: u32, r: Result<()>) -> bool {
        if let Err(e) = r {
            // EPIPE/ECONNRESET: the worker is gone; its exit tells the rest.
            let gone = e.code == -libc::EPIPE || e.code == -libc::ECONNRESET;
            self.close_channel(id, (!gone).then_some(e));
            return false;
        }
        let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { return false };
        let want = ch.writer.wants_writable();
        if want != ch.watching_out {
            ch.watching_out = want;
            let _ = self.epoll.modify(ch.sock.as_fd(), Self::interest(ch), token(KIND_CHANNEL, id));
        }
        true
    }

    /// Reads up to `max_reads` times (usize::MAX: until EAGAIN or EOF) and handles each line.
    fn read_channel(&mut self, id: u32, max_reads: usize) {
        for _ in 0..max_reads {
            let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { return };
            let got = match scm::recv(ch.sock.as_fd(), &mut self.rbuf, true) {
                Ok(r) if r.truncated => Err(Error::protocol("fds were truncated in transit (MSG_CTRUNC)")),
                Ok(r) if r.len == 0 => {
                    self.close_channel(id, None);
                    return;
                }
                Ok(r) => ch.decoder.feed(&self.rbuf[..r.len], r.fds),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // A worker that died with bytes unread: its channel simply ended.
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {
                    self.close_channel(id, None);
                    return;
                }
                Err(e) => Err(Error::io("read from IPC channel", e)),
            };
            if let Err(e) = got.and_then(|_| self.drain_lines(id)) {
                self.close_channel(id, Some(e));
                return;
            }
        }
    }

    fn drain_lines(&mut self, id: u32) -> Result<()> {
        loop {
            let Some(ch) = self.workers.get_mut(&id).and_then(|w| w.channel.as_mut()) else { return Ok(()) };
            let (fd, mut line) = match ch.decoder.next_line() {
                None => return ch.decoder.finish_read(),
                Some(Err(e)) => return Err(e),
                Some(Ok(l)) => {
                    let mut line = std::mem::take(&mut self.line);
                    line.clear();
                    line.extend_from_slice(l.text);
                    let eligible = l.fd_eligible;
                    let fd = if eligible && message::is_handle_line(&line) { ch.decoder.take_fd() } else { None };
                    (fd, line)
                }
            };
            let r = self.handle_line(id, &line, fd);
            line.clear();
            std::mem::swap(&mut self.line, &mut line);
            r?;
        }
    }

    /// Closes a worker's channel (EOF, error or protocol violation): the worker leaves every
    /// handle, its unacked connection goes to another worker, `disconnect` is emitted.
    pub(super) fn close_channel(&mut self, id: u32, err: Option<Error>) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        let Some(ch) = w.channel.take() else { return };
        let _ = self.epoll.delete(ch.sock.as_fd());
        drop(ch);
        let pid = w.pid;
        let ead = w.exited_after_disconnect.unwrap_or(false);
        let in_flight = std::mem::take(&mut w.in_flight);
        w.counters.rerouted += in_flight.len() as u64;
        if let Some(e) = err {
            self.shared.events.push(Event::Error { id, pid, code: e.code, message: e.message });
        }
        self.leave_all_handles(id);
        for f in in_flight.into_iter().rev() {
            self.requeue(f);
        }
        if let Some(info) = self.shared.table.lock().get_mut(&id) {
            info.connected = false;
            info.state = WorkerState::Disconnected;
            info.exited_after_disconnect = ead;
        }
        // The channel always closes before the exit is handled (on_pidfd drains it first),
        // so the worker is still in the table here; its exit retires it.
        crate::trace::trace!("primary", "channel closed worker={id} exitedAfterDisconnect={ead}");
        self.shared.events.push(Event::Disconnect { id, pid, exited_after_disconnect: ead });
    }

    /// Detaches a worker from every handle it is attached to.
    fn leave_all_handles(&mut self, id: u32) {
        let handle_ids: Vec<u32> = self.handles.iter().filter(|(_, h)| h.has(id)).map(|(&hid, _)| hid).collect();
        for hid in handle_ids {
            self.remove_from_handle(hid, id, true);
        }
    }

    /// The child may have exited (its pidfd is readable, or it is polled by pid): reap it.
    fn on_pidfd(&mut self, id: u32) {
        let Some(w) = self.workers.get(&id) else { return };
        let status = match w.child.try_reap() {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                // ECHILD: someone else reaped it (a host calling waitpid(-1)); it is gone.
                if e.raw_os_error() != Some(libc::ECHILD) {
                    return;
                }
                ExitStatus::Code(-1)
            }
        };
        if let Some(fd) = w.child.pollable() {
            let _ = self.epoll.delete(fd);
        }
        self.by_pid.retain(|&x| x != id);
        // Read what the worker said before it died, so `disconnect` precedes `exit` (§8.2).
        if w.connected() {
            self.read_channel(id, usize::MAX);
            if self.workers.get(&id).is_some_and(WorkerConn::connected) {
                self.close_channel(id, None);
            }
        }
        let Some(w) = self.workers.remove(&id) else { return };
        let (pid, ead) = (w.pid, w.exited_after_disconnect.unwrap_or(false));
        let (code, signal) = match status {
            ExitStatus::Code(c) => (c, 0),
            ExitStatus::Signal(s) => (-1, s),
        };
        let now = self.sup_now();
        let view = self.sup.member(id);
        let kind = self.sup.exited(id, now, ead);
        self.sup_state.touch();
        self.retire_stats(id, &w, view, kind, (code, signal));
        // Release its pidfd before the exit event is queued (no fd outlives the event).
        drop(w);
        if let Some(info) = self.shared.table.lock().get_mut(&id) {
            info.exited_after_disconnect = ead;
        }
        crate::trace::trace!("primary", "exit worker={id} pid={pid} code={code} signal={signal} exitedAfterDisconnect={ead}");
        self.shared.retire(id, Event::Exit { id, pid, code, signal, exited_after_disconnect: ead });
    }

    /// Node's `worker.disconnect()` in the primary: leave every handle now, tell the worker.
    pub(super) fn disconnect(&mut self, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        crate::trace::trace!("primary", "disconnect worker={id}");
        w.exited_after_disconnect = Some(true);
        self.leave_all_handles(id);
        let seq = self.next_seq();
        self.out.clear();
        wire::act(&mut self.out, "disconnect", seq);
        self.send_line(id, None);
    }
}
