//! Carrying out the handles' scheduling (`docs/design.md` §4–§5): the distributor accepts, deals
//! connections over lanes (batched) or Node's `newconn`, takes answers and refusals, detaches
//! workers, and does the periodic work of lanes (stalls, probes) and of the reuseport policy
//! (orphans, rebalancing). The decisions are the `Scheduler`'s; this is the I/O.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::distributor::{Distributor, KIND_LISTENER, TICK_MS, token};
use super::handle::Handle;
use super::id_map::IdMap;
use super::lane::Lane;
use super::round_robin::RoundRobinHandle;
use super::scheduler::{Action, Scheduler};
use super::worker_conn::{InFlight, WorkerConn};
use crate::ipc::wire;
use crate::ipc::writer::OutFd;
use crate::sys::epoll::{EDGE, READABLE};
use crate::sys::socket;
use std::time::Instant;

/// How soon a handle whose every worker is full looks again (the fast lane has no acks to
/// wake it; its workers' queues are read from the kernel).
const STALLED_POLL_MS: i32 = 1;
/// How soon an accept that failed (EMFILE, ...) is tried again.
const ACCEPT_RETRY_MS: i32 = 50;
/// How often reuseport accept queues are compared, while some are deep and while idle.
const REBALANCE_BUSY_MS: i32 = 2;
const REBALANCE_IDLE_MS: i32 = 50;

/// Sends what `batch` holds for lane worker `w` (up to `lane::BATCH`) in one `sendmmsg` and
/// closes our copies of what went; what did not go is held again (and the lane, if it is
/// gone, gets nothing more). Returns whether anything was held again, and how many went.
fn send_lane(h: &mut RoundRobinHandle, w: u32, batch: &mut Vec<(u32, OwnedFd)>) -> (bool, usize) {
    let accepted_nb = h.accept_nonblocking.unwrap_or(true);
    let mut raw = [0; crate::sys::lane::BATCH];
    let mut n = 0;
    for (bw, c) in batch.iter() {
        if *bw == w && n < raw.len() {
            if let Some(lane) = h.lanes.get(&w) {
                lane.prepare(c, accepted_nb);
            }
            raw[n] = c.as_raw_fd();
            n += 1;
        }
    }
    let (mut sent, mut lost) = (0, !h.lanes.contains_key(&w));
    if let Some(lane) = h.lanes.get(&w) {
        while sent < n {
            match lane.send(&raw[sent..n]) {
                Ok(k) => sent += k,
                Err(e) => {
                    // EAGAIN: its socket buffer is full; EPIPE: the worker closed its server.
                    lost = e.raw_os_error() != Some(libc::EAGAIN);
                    break;
                }
            }
        }
    }
    let (mut k, mut i) = (0, 0);
    while i < batch.len() && k < n {
        if batch[i].0 != w {
            i += 1;
            continue;
        }
        let (_, c) = batch.remove(i);
        if k >= sent {
            h.sched.undeliverable(w, c, lost);
        }
        k += 1;
    }
    if n > 0 {
        crate::trace::trace!("primary", "lane worker={w} key={} sent={sent} held={}", h.key, n - sent);
    }
    (n > sent, sent)
}

/// Counts `n` connections handed to `w` over its lane, handed `since` (the pass's start).
fn count_lane(workers: &mut IdMap<WorkerConn>, w: u32, n: usize, since: Instant) {
    if n > 0
        && let Some(wc) = workers.get_mut(&w)
    {
        wc.counters.handed += n as u64;
        wc.counters.lane_handed += n as u64;
        wc.counters.latency.record(since.elapsed(), n as u64);
    }
}

impl Distributor {
    /// A connection a worker did not take goes back to the head of its handle's queue.
    pub(super) fn requeue(&mut self, f: InFlight) {
        if let Some(sched) = self.handles.get_mut(&f.handle).and_then(Handle::sched) {
            sched.give_back(f.conn);
            self.pump(f.handle);
        }
    }

    /// Carries out the handle's scheduling until it says nothing can move: accepts (until
    /// `EAGAIN` or every worker is full), deals connections, batching each lane's into one
    /// `sendmmsg` and closing our copies at once; Node peers get a `newconn` each.
    pub(super) fn pump(&mut self, hid: u32) {
        // Handed over to a new primary: nothing is accepted or dealt here any more.
        if self.upgrade.handed_over {
            self.forward_held(hid);
            return;
        }
        // Started by an upgrade and not ready yet: the old primary accepts meanwhile, so a
        // new primary that fails loses no client (`upgrade_poll` starts accepting).
        if self.upgrade.waiting() {
            return;
        }
        let Some(sched) = self.handles.get_mut(&hid).and_then(Handle::sched) else { return };
        sched.begin_pass();
        // One clock read per pass: the handoff latency of what this pass deals.
        self.pass_at = Instant::now();
        let since = self.pass_at;
        // Connections for lanes, sent per worker in one sendmmsg (the buffer is reused).
        let mut batch = std::mem::take(&mut self.lane_batch);
        while let Some(h) = self.handles.get_mut(&hid) {
            let accepted = match h.sched().and_then(Scheduler::next_action) {
                None => break,
                Some(Action::Accept) => h.accept(),
                Some(Action::Measure(w)) => {
                    let Handle::RoundRobin(h) = h else { continue };
                    // What is batched for it is not in its queue yet: send that first.
                    let (_, sent) = send_lane(h, w, &mut batch);
                    count_lane(&mut self.workers, w, sent, since);
                    let q = h.lanes.get(&w).map_or(0, Lane::queued);
                    h.sched.measured(w, q);
                    continue;
                }
                Some(Action::Deliver { worker, conn }) => {
                    match h {
                        Handle::RoundRobin(h) if h.lanes.contains_key(&worker) => {
                            batch.push((worker, conn));
                            if batch.iter().filter(|(bw, _)| *bw == worker).count() >= crate::sys::lane::BATCH {
                                let (_, sent) = send_lane(h, worker, &mut batch);
                                count_lane(&mut self.workers, worker, sent, since);
                            }
                        }
                        _ => self.handoff(worker, hid, conn),
                    }
                    continue;
                }
            };
            let Some(sched) = self.handles.get_mut(&hid).and_then(Handle::sched) else { break };
            match accepted {
                Ok(c) => sched.accepted(c),
                Err(e) => match e.raw_os_error() {
                    Some(libc::ECONNABORTED) | Some(libc::EPROTO) => {}
                    Some(libc::EAGAIN) => sched.backlog_empty(),
                    // EMFILE and friends: retried at the next event or tick.
                    _ => sched.accept_failed(),
                },
            }
        }
        let mut retry = false;
        if let Some(Handle::RoundRobin(h)) = self.handles.get_mut(&hid) {
            while let Some(&(w, _)) = batch.first() {
                let (held, sent) = send_lane(h, w, &mut batch);
                count_lane(&mut self.workers, w, sent, since);
                retry |= held;
            }
        }
        // (A handle that closed meanwhile closed its lanes: what is left here is dropped.)
        batch.clear();
        self.lane_batch = batch;
        // A lane refused some: they are held again, for the others.
        if retry {
            self.pump(hid);
        }
    }

    /// Sends one connection to Node-path worker `w` in a `newconn`; it stays in flight (and
    /// ours) until the worker answers.
    fn handoff(&mut self, w: u32, hid: u32, conn: OwnedFd) {
        let seq = self.next_seq();
        let Some(h) = self.handles.get(&hid) else { return };
        self.out.clear();
        wire::newconn(&mut self.out, h.key(), seq);
        crate::trace::trace!("primary", "newconn worker={w} key={} seq={seq}", h.key());
        let raw = conn.as_raw_fd();
        match self.workers.get_mut(&w) {
            Some(wc) if wc.connected() => {
                wc.in_flight.push(InFlight { seq, handle: hid, conn, at: self.pass_at });
                wc.counters.handed += 1;
            }
            _ => {
                if let Some(sched) = self.handles.get_mut(&hid).and_then(Handle::sched) {
                    sched.undeliverable(w, conn, true);
                }
                return;
            }
        }
        // On failure close_channel requeues the in-flight connections.
        self.send_line(w, Some(OutFd::Borrowed(raw)));
    }

    /// The worker answered our newconn.
    pub(super) fn on_newconn_reply(&mut self, id: u32, ack: i64, accepted: bool) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        let Some(pos) = w.in_flight.iter().position(|f| f.seq == ack) else { return };
        let f = w.in_flight.remove(pos);
        if accepted {
            w.counters.acked += 1;
            w.counters.latency.record(f.at.elapsed(), 1);
        } else {
            w.counters.rerouted += 1;
        }
        let hid = f.handle;
        let Some(sched) = self.handles.get_mut(&hid).and_then(Handle::sched) else { return };
        sched.answered(id);
        if !accepted {
            sched.give_back(f.conn);
        }
        self.pump(hid);
    }

    /// Detaches a worker from a handle; the last one out closes it (and what it holds).
    /// `hold`: the worker is leaving (its channel closed, it was disconnected or drained),
    /// not closing this server itself: a supervised primary keeps the server bound for its
    /// replacement.
    pub(super) fn remove_from_handle(&mut self, hid: u32, id: u32, hold: bool) {
        let Some(h) = self.handles.get_mut(&hid) else { return };
        let last = match h {
            // Its listener stays in the group as an orphan: the primary serves what reaches it.
            Handle::ReusePort(rp) => {
                let (last, orphan) = rp.remove(id);
                if let Some(l) = orphan.filter(|_| !last) {
                    let _ = self.epoll.add(l.as_fd(), READABLE | EDGE, token(KIND_LISTENER, hid));
                    rp.sched.listener_ready();
                }
                last
            }
            Handle::RoundRobin(rr) => {
                // What its lane still held goes to the others: rerouted.
                let (last, returned) = rr.remove(id);
                if let Some(wc) = self.workers.get_mut(&id) {
                    wc.counters.rerouted += returned as u64;
                    wc.counters.lane_rerouted += returned as u64;
                }
                last
            }
            h => h.remove(id),
        };
        if !last {
            // What it had not taken (or a new orphan's backlog) goes to the others.
            self.pump(hid);
            return;
        }
        // Supervised: the server stays bound for the replacement, its clients wait in the
        // backlog (and what the primary holds stays held) instead of being refused;
        // `release_held_servers` closes it once no replacement is coming.
        if hold && self.sup.keeps_running() && self.handles.get(&hid).is_some_and(Handle::held_idle) {
            crate::trace::trace!("primary", "server held for a replacement key={}", self.handles[&hid].key());
            return;
        }
        self.close_handle(hid);
    }

    /// Closes a server the primary holds: its listener, its key, its Unix path.
    pub(super) fn close_handle(&mut self, hid: u32) {
        if self.upgrade.handed_over {
            self.forward_held(hid);
        }
        if let Some(h) = self.handles.remove(&hid) {
            match &h {
                Handle::RoundRobin(rr) => {
                    let _ = self.epoll.delete(rr.listener.as_fd());
                }
                Handle::ReusePort(rp) => {
                    for l in &rp.orphans {
                        let _ = self.epoll.delete(l.as_fd());
                    }
                }
                Handle::Shared(_) => {}
            }
            self.keys.remove(h.key());
            if let Some(p) = h.unix_path() {
                // With the rights it was bound with (the worker's), never the primary's.
                match h.path_owner() {
                    Some(owner) => {
                        let _ = crate::sys::fscred::run_as(owner, || socket::unlink(&p));
                    }
                    None => socket::unlink(&p),
                }
            }
        }
    }

    /// Periodic work for the fast lanes: a lane whose worker has taken nothing for a while
    /// with connections queued gives them back (a stalled worker), and handles that wait
    /// for room are dealt again. Returns the epoll timeout until the next tick.
    pub(super) fn tick(&mut self, due: bool) -> i32 {
        let mut timeout = -1;
        let mut hids = std::mem::take(&mut self.tick_ids);
        hids.clear();
        hids.extend(self.handles.iter().filter(|(_, h)| h.ticks()).map(|(&id, _)| id));
        for &hid in &hids {
            let t = match self.handles.get_mut(&hid) {
                Some(Handle::RoundRobin(h)) => {
                    if due {
                        for (&w, lane) in &h.lanes {
                            let queued = if h.sched.load(w) > 0 { lane.queued() } else { 0 };
                            if h.sched.tick(w, queued) {
                                let back = lane.take_back();
                                if let Some(wc) = self.workers.get_mut(&w) {
                                    wc.counters.rerouted += back.len() as u64;
                                    wc.counters.lane_rerouted += back.len() as u64;
                                }
                                for c in back.into_iter().rev() {
                                    h.sched.give_back(c);
                                }
                            }
                        }
                    }
                    let lanes = !h.lanes.is_empty();
                    // Lanes have no acks to wake the primary: it looks again while they are
                    // full or it holds connections. An accept that failed (EMFILE) is tried
                    // again after a pause, lanes or not: the edge-triggered listener would
                    // not say so again until another client arrived.
                    if (lanes && (h.sched.stalled() || h.sched.held() > 0)) || h.sched.accept_paused() {
                        self.pump(hid);
                    }
                    let Some(Handle::RoundRobin(h)) = self.handles.get(&hid) else { continue };
                    if !h.lanes.is_empty() && h.sched.stalled() {
                        STALLED_POLL_MS
                    } else if h.sched.accept_paused() {
                        ACCEPT_RETRY_MS
                    } else if h.sched.lanes_busy() {
                        TICK_MS as i32
                    } else {
                        -1
                    }
                }
                Some(Handle::ReusePort(h)) => {
                    if h.sched.accept_paused() {
                        self.pump(hid);
                    }
                    let paused = matches!(self.handles.get(&hid), Some(Handle::ReusePort(h)) if h.sched.accept_paused());
                    let t = self.rebalance(hid);
                    if paused && !(0..=ACCEPT_RETRY_MS).contains(&t) { ACCEPT_RETRY_MS } else { t }
                }
                _ => -1,
            };
            if t >= 0 && (timeout < 0 || t < timeout) {
                timeout = t;
            }
        }
        self.tick_ids = hids;
        timeout
    }

    /// Reuseport: moves half of the deepest accept queue to a worker whose queue is empty
    /// (Node's `newconn`). Returns how soon to look again: soon while queues are deep.
    fn rebalance(&mut self, hid: u32) -> i32 {
        let Some(Handle::ReusePort(h)) = self.handles.get_mut(&hid) else { return -1 };
        let busy = h.listeners.values().any(|l| socket::accept_queue(l.as_fd()).unwrap_or(0) > 0);
        let Some((from, to, n)) = h.rebalance(|l| socket::accept_queue(l.as_fd()).unwrap_or(0)) else {
            return if busy { REBALANCE_BUSY_MS } else { REBALANCE_IDLE_MS };
        };
        let mut moved = Vec::with_capacity(n);
        if let Some(l) = h.listeners.get(&from) {
            while moved.len() < n {
                match socket::accept(l.as_fd(), true) {
                    Ok(c) => moved.push(c),
                    Err(_) => break,
                }
            }
        }
        for c in moved {
            if let Some(sched) = self.handles.get_mut(&hid).and_then(Handle::sched) {
                sched.assigned(to);
            }
            self.handoff(to, hid, c);
        }
        REBALANCE_BUSY_MS
    }

    pub(super) fn add_listener(&mut self, hid: u32) -> io::Result<()> {
        if self.upgrade.waiting() {
            return Ok(());
        }
        match &self.handles[&hid] {
            Handle::RoundRobin(h) => self.epoll.add(h.listener.as_fd(), READABLE | EDGE, token(KIND_LISTENER, hid)),
            // Reuseport: its first listener waits for the first worker, which takes it at once.
            Handle::Shared(_) | Handle::ReusePort(_) => Ok(()),
        }
    }
}
