//! Carrying out supervision (`supervisor` decides): forks, drains and signals on the
//! distributor thread, its clock, the stuck-worker check from the accept path, and the
//! signals a host's handler recorded. The stats it assembles are in `stats`, what it tells
//! systemd in `systemd`.

#![forbid(unsafe_code)]

mod stats;
mod systemd;

use stats::{lane_queued, received};
use systemd::Systemd;

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::Command;
use super::distributor::{Distributor, TICK_MS};
use super::handle::Handle;
use super::scheduler::STALL_TICKS;
use super::spawn_plan::build_plan;
use super::stats::WorkerStats;
use super::supervisor::{Action, Metrics, Ms, Notice, Purpose};
use crate::event::Event;

/// How many gone workers keep their stats.
const GONE_KEPT: usize = 256;

/// What the distributor keeps for supervision besides the supervisor itself.
pub(crate) struct SupState {
    origin: Instant,
    /// When `supervise` has work next (`None`: only when something happens).
    next_due: Option<Ms>,
    /// The last periodic check (stuck workers, resident sizes).
    last_watch: Ms,
    last_rss: Ms,
    gone: VecDeque<WorkerStats>,
    /// systemd notifications (`notify`), once the program turned them on.
    systemd: Option<Systemd>,
}

impl SupState {
    pub fn new() -> SupState {
        SupState { origin: Instant::now(), next_due: None, last_watch: 0, last_rss: 0, gone: VecDeque::new(), systemd: None }
    }

    /// The supervisor was told something: its deadlines may have changed (a boot clock
    /// started, a timer ended), so `supervise` looks again in this pass.
    pub fn touch(&mut self) {
        self.next_due = Some(0);
    }
}

/// A seed for the jitter when the program gives none.
pub(crate) fn entropy() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    t ^ ((crate::sys::process::getpid() as u64) << 32)
}

impl Distributor {
    pub(super) fn sup_now(&self) -> Ms {
        self.sup_state.origin.elapsed().as_millis() as Ms
    }

    /// How long the loop may sleep before supervision has work (`None`: no limit).
    pub(super) fn supervision_timeout(&self) -> Option<i32> {
        if self.sup.has_actions() {
            return Some(0);
        }
        let watchdog = self.sup_state.systemd.as_ref().and_then(|sd| sd.notifier.next_deadline());
        let due = match (self.sup_state.next_due, watchdog) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(due.saturating_sub(self.sup_now()).min(i32::MAX as u64) as i32)
    }

    /// Runs what is due (timers, the periodic checks) and carries out every action.
    pub(super) fn supervise(&mut self) {
        let now = self.sup_now();
        if self.sup_state.systemd.is_some() {
            self.systemd_fdstore();
            self.systemd_watchdog(now);
        }
        if !self.sup.has_actions() && self.sup_state.next_due.is_none_or(|d| now < d) {
            return;
        }
        let watching = self.sup.policy().watches() || self.workers.values().any(|w| w.stalled_since.is_some());
        if watching && now >= self.sup_state.last_watch + TICK_MS as Ms {
            self.sup_state.last_watch = now;
            self.check_stuck(now);
        }
        let max_rss = self.sup.policy().max_rss_bytes;
        let rss_due = max_rss > 0 && now >= self.sup_state.last_rss + self.sup.policy().rss_interval_ms;
        if rss_due {
            self.sup_state.last_rss = now;
        }
        let counting = self.sup.policy().max_connections > 0;
        let (workers, handles) = (&self.workers, &self.handles);
        let metrics = |id: u32| {
            let Some(w) = workers.get(&id) else { return Metrics::default() };
            let received = if counting { received(w, lane_queued(handles, id)) } else { 0 };
            let rss = if rss_due { crate::sys::process::rss_bytes(w.pid).ok() } else { None };
            Metrics { received, rss }
        };
        self.sup.tick(now, metrics);
        self.apply_actions();
        self.release_held_servers();
        let mut next = self.sup.next_deadline();
        if watching || self.sup.policy().watches() {
            let watch = self.sup_state.last_watch + TICK_MS as Ms;
            next = Some(next.map_or(watch, |n| n.min(watch)));
        }
        self.sup_state.next_due = next;
        self.shared.supervising.store(self.sup.keeps_running(), std::sync::atomic::Ordering::Release);
        // What the load balancer's agent check reads (`agent`): one store, only in a pass
        // where something changed.
        let (_, ready, _) = self.sup.counts();
        super::agent::publish(ready, self.sup.target(), self.sup.stopping().is_some());
    }

    /// Servers kept for a replacement (`remove_from_handle`) that no worker took back once
    /// no replacement is coming (a stop, or every worker ready: a new program that does not
    /// ask for them) are closed.
    fn release_held_servers(&mut self) {
        if self.sup.expecting_workers() {
            return;
        }
        let idle: Vec<u32> = self.handles.iter().filter(|(_, h)| h.held_idle()).map(|(&id, _)| id).collect();
        for hid in idle {
            crate::trace::trace!("primary", "held server released key={}", self.handles[&hid].key());
            self.close_handle(hid);
        }
    }

    /// Carries out the supervisor's actions until it has none (a fork may lead to more).
    pub(super) fn apply_actions(&mut self) {
        loop {
            let actions = self.sup.take_actions();
            if actions.is_empty() {
                break;
            }
            for a in actions {
                match a {
                    Action::Fork { purpose } => self.supervised_fork(purpose),
                    Action::Disconnect(id) => self.drain_disconnect(id),
                    Action::Signal(id, sig) => {
                        if let Some(w) = self.workers.get(&id) {
                            crate::trace::trace!("primary", "supervision: signal {sig} to worker={id}");
                            let _ = w.child.signal(sig);
                        }
                    }
                    Action::Notice(n) => self.tell(n),
                    Action::Upgrade => {
                        let env = std::env::var(super::upgrade::ENV_TIMEOUT).ok();
                        if let Err(e) = self.upgrade_start(super::upgrade::signal_timeout_ms(env.as_deref())) {
                            self.shared.events.push(Event::Error {
                                id: 0,
                                pid: 0,
                                code: e.code,
                                message: format!("upgrade aborted: {}", e.message),
                            });
                        }
                    }
                }
            }
        }
        self.systemd_observe();
        // Timers may have changed: look again at once.
        self.sup_state.next_due = Some(0);
    }

    fn supervised_fork(&mut self, purpose: Purpose) {
        let (id, settings) = {
            let s = self.shared.settings.read();
            (self.shared.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed), s.clone())
        };
        let r = build_plan(id, &settings, &[], &[]).and_then(|plan| self.spawn(id, &plan));
        let now = self.sup_now();
        match r {
            Ok(_) => self.sup.forked(id, now, Some(purpose)),
            Err(e) => {
                self.shared.events.push(Event::Error {
                    id: 0,
                    pid: 0,
                    code: e.code,
                    message: format!("supervision: fork failed: {}", e.message),
                });
                self.sup.fork_failed(purpose, now);
            }
        }
    }

    /// A drain begins: as Node's primary-side `worker.disconnect()` (out of every server
    /// now, its queued connections to the others, `exitedAfterDisconnect`).
    fn drain_disconnect(&mut self, id: u32) {
        let ok = {
            let mut table = self.shared.table.lock();
            match table.get_mut(&id) {
                Some(w) if w.connected && w.listed => {
                    w.exited_after_disconnect = true;
                    true
                }
                _ => false,
            }
        };
        if ok {
            self.shared.unlist(id);
            self.disconnect(id);
        }
    }

    fn tell(&mut self, n: Notice) {
        let id = match &n {
            Notice::Ready { id } | Notice::Draining { id, .. } | Notice::Stuck { id, .. } | Notice::Recycle { id, .. } => *id,
            _ => 0,
        };
        crate::trace::trace!("primary", "supervision: {n:?}");
        self.notify_systemd(&n);
        let pid = self.pid(id);
        self.shared.events.push(Event::Supervision { id, pid, notice: n });
    }

    /// A worker whose queued connections have not moved for `stuck_timeout_ms`: a lane that
    /// stalled (the scheduler took its queue back) and has not taken one since, or a Node
    /// peer that has not answered its oldest `newconn`.
    fn check_stuck(&mut self, now: Ms) {
        let timeout = self.sup.policy().stuck_timeout_ms;
        let suspects: HashSet<u32> = self
            .handles
            .values()
            .filter_map(|h| match h {
                Handle::RoundRobin(rr) => Some(rr.lanes.keys().copied().filter(|&w| rr.sched.is_suspect(w)).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        let stall = Duration::from_millis(STALL_TICKS as u64 * TICK_MS as u64);
        let mut stuck = Vec::new();
        for (&id, w) in self.workers.iter_mut() {
            let since = if suspects.contains(&id) {
                // It stopped moving a stall's length before the scheduler noticed.
                Some(*w.stalled_since.get_or_insert_with(|| Instant::now().checked_sub(stall).unwrap_or_else(Instant::now)))
            } else {
                w.stalled_since = None;
                w.in_flight.first().map(|f| f.at)
            };
            if let Some(since) = since
                && timeout > 0
                && since.elapsed() >= Duration::from_millis(timeout)
            {
                stuck.push((id, since.elapsed().as_millis() as Ms));
            }
        }
        for (id, idle) in stuck {
            if let Some(w) = self.workers.get_mut(&id) {
                w.stalled_since = None;
            }
            self.sup.stuck(id, now, idle);
        }
    }

    /// The program's supervision calls.
    pub(super) fn supervision_command(&mut self, cmd: Command) {
        if let Command::Systemd { flags, target, watchdog, reply } = cmd {
            self.systemd_command(flags, target, watchdog);
            let _ = reply.send(());
            return;
        }
        let now = self.sup_now();
        self.sup.enable();
        match cmd {
            Command::Supervise { policy } => {
                self.sup.configure(policy, now);
                // `supervising` as the new policy has it before the call stops counting.
                self.shared.supervising.store(self.sup.keeps_running(), std::sync::atomic::Ordering::Release);
                self.shared.supervise_pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
            Command::RollingRestart { surge, reply } => {
                let _ = reply.send(self.sup.rolling_restart(surge, now));
            }
            Command::Scale { workers, reply } => {
                let _ = reply.send(self.sup.scale(workers, now));
            }
            Command::Drain { id, reply } => {
                let _ = reply.send(self.sup.drain(id, now));
            }
            Command::ResetBreaker => self.sup.reset_breaker(now),
            Command::Control { action, signal } => self.sup.control(action, signal, now),
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            _ => {}
        }
        self.apply_actions();
    }

    /// Signals a host's handler recorded (`signals::handle`), as supervision controls.
    pub(super) fn take_signals(&mut self) {
        let pending = crate::signals::take_pending();
        if pending.is_empty() {
            return;
        }
        let now = self.sup_now();
        self.sup.enable();
        for (signo, action) in pending {
            crate::trace::trace!("primary", "signal {signo} -> {action:?}");
            self.sup.control(action, signo, now);
        }
        self.apply_actions();
    }
}
