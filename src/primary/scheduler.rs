//! The scheduling of a `RoundRobinHandle` as a state machine with no I/O: it is told what
//! happened (a connection accepted, the backlog empty, a worker's queue measured, a
//! connection answered or refused, a worker gone) and says what to do next (accept, deliver
//! connection c to worker w, measure a worker's queue). The distributor carries it out.
//!
//! Two kinds of worker share it:
//! - a Node peer (`Path::Node`): Node's rule, `max` connections in flight, each answered;
//! - a libcluster peer on the fast lane (`Path::Lane`): connections wait in a kernel queue
//!   of at most `window`; the queue's length is read from the kernel (`measured`) instead
//!   of waiting for answers, so between measurements `load` is an upper bound.
//!
//! Connections are dealt round-robin among workers with room (on lanes: to the shortest
//! queue, ties in round-robin order; or to the least loaded, as an option), and accepted
//! only while some worker has room: the rest wait in the kernel's backlog.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

pub type WorkerId = u32;

/// How a worker receives its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Node's `newconn`: at most `max` unanswered.
    Node { max: usize },
    /// The fast lane: at most `window` waiting in the worker's queue.
    Lane { window: usize },
}

/// What the distributor should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<C> {
    /// Accept one connection and report `accepted` or `backlog_empty`.
    Accept,
    /// Hand `conn` to `worker` (then `undeliverable` if that failed).
    Deliver { worker: WorkerId, conn: C },
    /// Read the length of `worker`'s lane queue and report it with `measured`.
    Measure(WorkerId),
}

#[derive(Debug)]
struct Slot {
    id: WorkerId,
    path: Path,
    /// Node: connections unanswered. Lane: connections possibly still queued.
    load: usize,
    /// Lane: `load` was read from the kernel in this pass.
    fresh: bool,
    /// Lane: connections delivered, ever; with the queue length this tells progress.
    sent: u64,
    received_at_tick: u64,
    idle_ticks: u32,
    /// Lane: its queue was taken back after it stalled; one at a time until it moves.
    suspect: bool,
    /// Suspect: ticks since it was last given a connection to show it moves again.
    since_probe: u32,
}

impl Slot {
    fn capacity(&self) -> usize {
        match self.path {
            Path::Node { max } => max,
            Path::Lane { .. } if self.suspect => 1,
            Path::Lane { window } => window,
        }
    }

    fn has_room(&self) -> bool {
        self.load < self.capacity()
    }
}

/// Ticks without progress (with connections queued) before a lane counts as stalled.
pub(crate) const STALL_TICKS: u32 = 4;
/// A suspect lane gets a new connection (a probe) at most once in this many ticks, unless
/// no other worker has room; a probe it does not take within a tick is taken back.
pub(crate) const PROBE_TICKS: u32 = 4;

#[derive(Debug)]
pub struct Scheduler<C> {
    slots: Vec<Slot>,
    /// Where the next round-robin search starts.
    cursor: usize,
    /// Connections the primary holds for a worker (handed back ones first).
    queue: VecDeque<C>,
    /// How many at the head of `queue` came back (a suspect lane never gets those: a
    /// connection taken back from a stalled worker must not return to it).
    returned: usize,
    /// The listener may have connections waiting.
    backlog_ready: bool,
    /// Accepting failed (EMFILE and the like): not again in this pass.
    accept_paused: bool,
    least_loaded: bool,
}

impl<C> Default for Scheduler<C> {
    fn default() -> Self {
        Scheduler::new(false)
    }
}

impl<C> Scheduler<C> {
    pub fn new(least_loaded: bool) -> Scheduler<C> {
        Scheduler {
            slots: Vec::new(),
            cursor: 0,
            queue: VecDeque::new(),
            returned: 0,
            backlog_ready: true,
            accept_paused: false,
            least_loaded,
        }
    }

    /// Attaches a worker (idle). False if it was attached already.
    pub fn add(&mut self, id: WorkerId, path: Path) -> bool {
        if self.has(id) {
            return false;
        }
        self.slots.push(Slot {
            id,
            path,
            load: 0,
            fresh: false,
            sent: 0,
            received_at_tick: 0,
            idle_ticks: 0,
            suspect: false,
            since_probe: 0,
        });
        true
    }

    /// Detaches a worker. Its connections in flight are the caller's to `give_back`.
    pub fn remove(&mut self, id: WorkerId) {
        if let Some(i) = self.slots.iter().position(|s| s.id == id) {
            self.slots.remove(i);
            if self.cursor > i {
                self.cursor -= 1;
            }
        }
    }

    pub fn has(&self, id: WorkerId) -> bool {
        self.slots.iter().any(|s| s.id == id)
    }

    /// Whether `id`'s lane stalled and has not moved since (`tick`).
    pub fn is_suspect(&self, id: WorkerId) -> bool {
        self.slots.iter().any(|s| s.id == id && s.suspect)
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes every connection the primary holds (a hot upgrade forwards them).
    pub fn take_held(&mut self) -> Vec<C> {
        self.returned = 0;
        self.queue.drain(..).collect()
    }

    /// Connections the primary holds (not in any worker's queue).
    pub fn held(&self) -> usize {
        self.queue.len()
    }

    /// A new pass begins (an event woke the distributor): lane measurements are stale,
    /// accepting may be tried again.
    pub fn begin_pass(&mut self) {
        self.accept_paused = false;
        for s in &mut self.slots {
            s.fresh = false;
        }
    }

    /// The listener became readable.
    pub fn listener_ready(&mut self) {
        self.backlog_ready = true;
    }

    pub fn accepted(&mut self, conn: C) {
        self.queue.push_back(conn);
    }

    /// Accept found nothing (`EAGAIN`): wait for the listener's next readiness.
    pub fn backlog_empty(&mut self) {
        self.backlog_ready = false;
    }

    /// Accept failed otherwise (no fds left): retried in the next pass.
    pub fn accept_failed(&mut self) {
        self.accept_paused = true;
    }

    /// A connection comes back to the primary (refused, returned from a queue, or its
    /// worker gone): it goes first.
    pub fn give_back(&mut self, conn: C) {
        self.returned += 1;
        self.queue.push_front(conn);
    }

    /// A connection was handed to `id` outside the dealing (moved to it on purpose).
    pub fn assigned(&mut self, id: WorkerId) {
        if let Some(s) = self.slot(id) {
            s.load += 1;
        }
    }

    /// Connections handed to `id` and not yet answered (or possibly queued, for a lane).
    pub fn load(&self, id: WorkerId) -> usize {
        self.slots.iter().find(|s| s.id == id).map_or(0, |s| s.load)
    }

    /// A Node worker answered a connection (accepted or not: `give_back` a refused one).
    pub fn answered(&mut self, id: WorkerId) {
        if let Some(s) = self.slot(id) {
            s.load = s.load.saturating_sub(1);
        }
    }

    /// Delivering to `id` failed: the connection is held again, and `id` gets nothing more
    /// in this pass (`lost`: its lane or channel is gone, it gets nothing more at all).
    pub fn undeliverable(&mut self, id: WorkerId, conn: C, lost: bool) {
        self.give_back(conn);
        if let Some(s) = self.slot(id) {
            s.load = s.load.saturating_sub(1);
            s.sent = s.sent.saturating_sub(1);
            if lost {
                s.path = Path::Node { max: 0 };
            } else {
                s.load = s.capacity();
                s.fresh = true;
            }
        }
    }

    /// The kernel says `queued` connections wait in `id`'s lane.
    pub fn measured(&mut self, id: WorkerId, queued: usize) {
        if let Some(s) = self.slot(id) {
            s.load = queued;
            s.fresh = true;
            if s.sent.saturating_sub(queued as u64) > s.received_at_tick {
                s.suspect = false;
            }
        }
    }

    /// A periodic check of lane `id` (its queue just measured as `queued`; 0 without
    /// measuring when nothing may wait in it). True when it has not taken a connection for
    /// `STALL_TICKS` ticks while some waited (a suspect: one tick): the caller takes its
    /// queue back (`give_back` each), and it gets one at a time, now and then, until it
    /// moves again.
    pub fn tick(&mut self, id: WorkerId, queued: usize) -> bool {
        let Some(s) = self.slot(id) else { return false };
        let received = s.sent.saturating_sub(queued as u64);
        if received > s.received_at_tick {
            s.suspect = false;
        }
        if queued == 0 || received > s.received_at_tick {
            s.idle_ticks = 0;
        } else {
            s.idle_ticks += 1;
        }
        s.since_probe = s.since_probe.saturating_add(1);
        s.received_at_tick = received;
        s.load = queued;
        let limit = if s.suspect { 1 } else { STALL_TICKS };
        if s.idle_ticks >= limit {
            s.idle_ticks = 0;
            s.since_probe = 0;
            s.suspect = true;
            // What is taken back no longer counts as sent.
            s.sent = received;
            s.load = 0;
            return true;
        }
        false
    }

    /// Whether any lane may have connections queued (the distributor then ticks).
    pub fn lanes_busy(&self) -> bool {
        self.slots.iter().any(|s| matches!(s.path, Path::Lane { .. }) && s.load > 0)
    }

    /// Whether connections wait (held, or in the backlog) and every worker is full.
    pub fn stalled(&self) -> bool {
        (!self.queue.is_empty() || self.backlog_ready) && !self.slots.is_empty() && !self.slots.iter().any(Slot::has_room)
    }

    /// Whether an accept failed in this pass (the caller retries on a timer).
    pub fn accept_paused(&self) -> bool {
        self.accept_paused && self.backlog_ready
    }

    /// What to do next; `None` when nothing can move until another event.
    pub fn next_action(&mut self) -> Option<Action<C>> {
        if self.queue.is_empty() && (!self.backlog_ready || self.accept_paused) {
            return None;
        }
        let i = match self.pick() {
            Ok(i) => i,
            Err(measure) => return measure.map(Action::Measure),
        };
        let Some(conn) = self.queue.pop_front() else { return Some(Action::Accept) };
        self.returned = self.returned.saturating_sub(1);
        self.cursor = (i + 1) % self.slots.len();
        let s = &mut self.slots[i];
        s.load += 1;
        if matches!(s.path, Path::Lane { .. }) {
            s.sent += 1;
            // Our own send keeps the estimate as good as it was: not read again this pass.
            s.fresh = true;
            if s.suspect {
                s.since_probe = 0;
            }
        }
        Some(Action::Deliver { worker: s.id, conn })
    }

    /// The worker to deal to, or else a lane to measure first.
    ///
    /// Node's path: round-robin among workers with room (Node deals one at a time to idle
    /// workers). With lanes: the shortest queue among workers with room, ties in
    /// round-robin order; a lane whose estimate may be stale (not read from the kernel in
    /// this pass, and not known empty) is measured first, so a worker that is slow to take
    /// its connections stops getting more while the others take theirs.
    ///
    /// A suspect lane (it stalled) is passed over while another worker has room, but for a
    /// probe every `PROBE_TICKS`; a connection that came back never goes to one (it may be
    /// the very one it came from) while any other worker is attached.
    fn pick(&self) -> Result<usize, Option<WorkerId>> {
        let n = self.slots.len();
        let is_lane = |s: &Slot| matches!(s.path, Path::Lane { .. });
        // A suspect is passed over while another worker has room, except for a probe now
        // and then, and never gets back what was given back.
        let returned = self.returned > 0 && !self.queue.is_empty() && self.slots.iter().any(|s| !s.suspect);
        let others_have_room = self.slots.iter().any(|s| !s.suspect && s.has_room());
        let ok = |i: &usize| {
            let s = &self.slots[*i];
            s.has_room() && !(s.suspect && (returned || (others_have_room && s.since_probe < PROBE_TICKS)))
        };
        let mut order = (0..n).map(|k| (self.cursor + k) % n);
        if self.least_loaded || self.slots.iter().any(is_lane) {
            if let Some(s) = self.slots.iter().find(|s| is_lane(s) && !s.fresh && s.load > 0) {
                return Err(Some(s.id));
            }
            return order.filter(ok).min_by_key(|&i| self.slots[i].load).ok_or(None);
        }
        order.find(ok).ok_or(None)
    }

    fn slot(&mut self, id: WorkerId) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal(s: &mut Scheduler<u32>, next_conn: &mut u32, backlog: &mut usize) -> Vec<(WorkerId, u32)> {
        s.begin_pass();
        let mut out = Vec::new();
        while let Some(a) = s.next_action() {
            match a {
                Action::Accept if *backlog > 0 => {
                    *backlog -= 1;
                    *next_conn += 1;
                    s.accepted(*next_conn);
                }
                Action::Accept => s.backlog_empty(),
                Action::Deliver { worker, conn } => out.push((worker, conn)),
                Action::Measure(w) => s.measured(w, 0),
            }
        }
        out
    }

    #[test]
    fn node_path_one_in_flight_round_robin() {
        let mut s = Scheduler::new(false);
        s.add(1, Path::Node { max: 1 });
        s.add(2, Path::Node { max: 1 });
        assert!(!s.add(2, Path::Node { max: 1 }));
        let (mut c, mut backlog) = (0, 5);
        assert_eq!(deal(&mut s, &mut c, &mut backlog), vec![(1, 1), (2, 2)]);
        assert_eq!(backlog, 3, "accepts only as many as there are free workers");
        // Worker 2 refuses: its connection goes first, to the next with room.
        s.answered(2);
        s.give_back(2);
        s.listener_ready();
        assert_eq!(deal(&mut s, &mut c, &mut backlog), vec![(2, 2)]);
        s.answered(1);
        s.listener_ready();
        assert_eq!(deal(&mut s, &mut c, &mut backlog), vec![(1, 3)]);
        assert!(s.stalled());
    }

    /// A kernel queue per lane worker; `per_pass` connections arrive per wakeup, and
    /// `takes(w)` says how many a worker's program receives before each measurement.
    fn run_lanes(
        s: &mut Scheduler<u32>,
        conns: u32,
        per_pass: u32,
        takes: impl Fn(WorkerId) -> usize,
    ) -> (Vec<(WorkerId, u32)>, Vec<WorkerId>) {
        let mut queue = std::collections::HashMap::new();
        let (mut got, mut measures, mut c) = (Vec::new(), Vec::new(), 0);
        while c < conns {
            let last = c;
            s.begin_pass();
            s.listener_ready();
            while let Some(a) = s.next_action() {
                match a {
                    Action::Accept if c < conns && c - last < per_pass => {
                        c += 1;
                        s.accepted(c);
                    }
                    Action::Accept => s.backlog_empty(),
                    Action::Deliver { worker, conn } => {
                        *queue.entry(worker).or_insert(0) += 1;
                        got.push((worker, conn));
                    }
                    Action::Measure(w) => {
                        measures.push(w);
                        let q = queue.entry(w).or_insert(0);
                        *q -= takes(w).min(*q);
                        s.measured(w, *q);
                    }
                }
            }
            if c == last {
                break;
            }
        }
        (got, measures)
    }

    #[test]
    fn lane_deals_to_the_shortest_queue_within_windows() {
        let mut s = Scheduler::new(false);
        s.add(1, Path::Lane { window: 2 });
        s.add(2, Path::Lane { window: 2 });
        // Worker 1 takes one connection, worker 2 none: both fill their windows, ties go
        // round-robin, and the rest stays in the backlog.
        let took = std::cell::Cell::new(false);
        let (got, measures) = run_lanes(&mut s, 10, 10, |w| usize::from(w == 1 && !took.replace(true)));
        assert_eq!(got, vec![(1, 1), (2, 2), (1, 3), (2, 4), (1, 5)]);
        // Each lane read once a pass, only when not known empty (the second pass finds both
        // still full and deals nothing).
        assert_eq!(measures, vec![1, 2, 1, 2]);
        assert!(s.stalled());
    }

    #[test]
    fn a_slow_lane_gets_little_while_the_other_keeps_up() {
        let mut s = Scheduler::new(false);
        s.add(1, Path::Lane { window: 16 });
        s.add(2, Path::Lane { window: 16 });
        // Two connections per wakeup; worker 1 takes everything at once, worker 2 nothing.
        let (got, _) = run_lanes(&mut s, 40, 2, |w| if w == 1 { usize::MAX } else { 0 });
        let to_slow = got.iter().filter(|(w, _)| *w == 2).count();
        assert_eq!(got.len(), 40);
        assert!(to_slow <= 2, "the slow worker got {to_slow} of 40");
    }

    /// The fairness bug the benchmark found: a lane full by its stale estimate was skipped
    /// (never measured while another had room), so one worker got nearly everything.
    #[test]
    fn a_lane_full_by_estimate_is_measured_in_turn_not_skipped() {
        let mut s = Scheduler::new(false);
        s.add(1, Path::Lane { window: 2 });
        s.add(2, Path::Lane { window: 2 });
        let mut got = Vec::new();
        for conn in 0..12 {
            s.begin_pass();
            s.accepted(conn);
            s.backlog_empty();
            while let Some(a) = s.next_action() {
                match a {
                    Action::Deliver { worker, .. } => got.push(worker),
                    // Each worker takes its connections at once.
                    Action::Measure(w) => s.measured(w, 0),
                    Action::Accept => s.backlog_empty(),
                }
            }
        }
        assert_eq!(got, [1, 2].repeat(6));
    }

    #[test]
    fn lost_worker_gets_nothing_and_its_connection_goes_elsewhere() {
        let mut s = Scheduler::new(false);
        s.add(1, Path::Lane { window: 4 });
        s.add(2, Path::Node { max: 1 });
        s.begin_pass();
        s.accepted(7);
        let Some(Action::Deliver { worker: 1, conn: 7 }) = s.next_action() else { panic!() };
        s.undeliverable(1, 7, true);
        assert_eq!(s.next_action(), Some(Action::Deliver { worker: 2, conn: 7 }));
        s.accepted(8);
        s.backlog_empty();
        assert_eq!(s.next_action(), None);
        assert_eq!(s.held(), 1);
        s.remove(1);
        s.remove(2);
        assert!(s.is_empty());
        assert_eq!(s.held(), 1, "connection 8 waits for a worker");
    }

    #[test]
    fn stalled_lane_is_taken_back_then_gets_one_at_a_time() {
        let mut s = Scheduler::new(false);
        s.add(1, Path::Lane { window: 8 });
        let (mut c, mut backlog) = (0, 3);
        assert_eq!(deal(&mut s, &mut c, &mut backlog).len(), 3);
        // Nothing received for STALL_TICKS ticks: stalled.
        assert!(!s.tick(1, 3));
        for _ in 1..STALL_TICKS - 1 {
            assert!(!s.tick(1, 3));
        }
        assert!(s.tick(1, 3));
        for conn in [3, 2, 1] {
            s.give_back(conn);
        }
        s.begin_pass();
        assert_eq!(s.next_action(), Some(Action::Deliver { worker: 1, conn: 1 }), "suspect: one at a time");
        assert_eq!(s.next_action(), None, "full: not read again in the pass that filled it");
        s.begin_pass();
        assert_eq!(s.next_action(), Some(Action::Measure(1)));
        s.measured(1, 1);
        assert_eq!(s.next_action(), None, "it has not taken it yet");
        // It takes that one: back to its full window.
        s.begin_pass();
        s.measured(1, 0);
        let mut got = Vec::new();
        while let Some(a) = s.next_action() {
            if let Action::Deliver { worker, conn } = a {
                got.push((worker, conn));
            }
        }
        assert_eq!(got, vec![(1, 2), (1, 3)]);
    }

    #[test]
    fn a_suspect_lane_gets_a_probe_now_and_then_and_loses_it_fast() {
        let mut s = Scheduler::new(false);
        s.add(1, Path::Lane { window: 4 });
        s.add(2, Path::Lane { window: 4 });
        // Worker 1 gets one connection and never takes it: stalled after STALL_TICKS.
        s.begin_pass();
        s.accepted(100);
        assert_eq!(s.next_action(), Some(Action::Deliver { worker: 1, conn: 100 }));
        for _ in 0..STALL_TICKS - 1 {
            assert!(!s.tick(1, 1));
        }
        assert!(s.tick(1, 1));
        // New connections one at a time (each taken at once by worker 2): all go to worker 2
        // until PROBE_TICKS ticks have passed since the stall, then one probe to worker 1.
        let one = |s: &mut Scheduler<u32>, c: u32| -> WorkerId {
            s.begin_pass();
            s.measured(2, 0);
            s.accepted(c);
            loop {
                match s.next_action() {
                    Some(Action::Deliver { worker, .. }) => return worker,
                    Some(Action::Measure(w)) => s.measured(w, 0),
                    other => panic!("{other:?}"),
                }
            }
        };
        let mut to = Vec::new();
        for t in 0..PROBE_TICKS {
            to.push(one(&mut s, t));
            assert!(!s.tick(1, 0));
        }
        assert!(to.iter().all(|&w| w == 2), "{to:?}");
        assert_eq!(one(&mut s, 9), 1, "the probe");
        // Not taken within one tick: taken back.
        assert!(s.tick(1, 1));
        assert_eq!(one(&mut s, 10), 2);
    }

    #[test]
    fn what_a_stalled_lane_gave_back_goes_to_another_worker() {
        let mut s = Scheduler::new(false);
        s.add(1, Path::Lane { window: 4 });
        s.add(2, Path::Lane { window: 4 });
        s.begin_pass();
        for c in 1..=4 {
            s.accepted(c);
        }
        s.backlog_empty();
        let mut to1 = Vec::new();
        while let Some(a) = s.next_action() {
            match a {
                Action::Deliver { worker: 1, conn } => to1.push(conn),
                Action::Deliver { .. } => {}
                // Worker 2 takes its connections; worker 1 takes nothing.
                Action::Measure(w) => s.measured(w, if w == 1 { to1.len() } else { 0 }),
                Action::Accept => s.backlog_empty(),
            }
        }
        assert_eq!(to1.len(), 2);
        for _ in 0..STALL_TICKS - 1 {
            assert!(!s.tick(1, 2));
        }
        assert!(s.tick(1, 2), "stalled");
        for c in to1.iter().rev() {
            s.give_back(*c);
        }
        // Worker 1 is suspect (room for one): the two it gave back go to worker 2, and only
        // a new connection may go to it.
        s.begin_pass();
        s.measured(2, 0);
        let mut got = Vec::new();
        s.accepted(9);
        while let Some(a) = s.next_action() {
            match a {
                Action::Deliver { worker, conn } => got.push((worker, conn)),
                Action::Measure(w) => s.measured(w, 0),
                Action::Accept => s.backlog_empty(),
            }
        }
        let back: Vec<_> = got.iter().filter(|(_, c)| to1.contains(c)).collect();
        assert!(back.iter().all(|(w, _)| *w == 2), "{got:?}");
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn least_loaded_prefers_the_emptiest() {
        let mut s = Scheduler::new(true);
        s.add(1, Path::Node { max: 4 });
        s.add(2, Path::Node { max: 4 });
        s.begin_pass();
        for c in 0..4 {
            s.accepted(c);
        }
        s.backlog_empty();
        let mut got = Vec::new();
        while let Some(Action::Deliver { worker, .. }) = s.next_action() {
            got.push(worker);
            if (2..=3).contains(&got.len()) {
                s.answered(1);
            }
        }
        assert_eq!(got, vec![1, 2, 1, 1]);
    }
}
