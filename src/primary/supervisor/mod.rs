//! Supervision as a state machine with no I/O (`docs/supervision.md`): told what happened
//! to workers (forked, ready, exited, stuck) and what the program or a signal asked for
//! (rolling restart, scale, drain, stop), it says what to do (fork, disconnect, signal) and
//! what to tell the program. The distributor carries the actions out and feeds the clock.
//!
//! Its guarantees: a dead worker is replaced after a jittered exponential delay; boot
//! failures in a burst open the breaker (no forks until a cool-down, then one probe); a
//! rollout drains an old worker only once a new one is ready, and stops at the first new
//! worker that fails to become ready, leaving the old ones serving; a drain escalates from
//! disconnect to SIGTERM to SIGKILL on its clock; at most one recycle at a time.

#![forbid(unsafe_code)]

mod breaker;
pub mod policy;
mod rollout;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use breaker::Breaker;
pub use breaker::BreakerState;
use policy::{Jitter, Policy, ReadyOn, backoff};
use rollout::Rollout;
pub use rollout::RolloutState;

/// Milliseconds on the distributor's monotonic clock.
pub type Ms = u64;

/// Why the supervisor asks for a fork.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Respawn,
    Rollout,
    Probe,
    Scale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainReason {
    /// The program asked (`cluster_drain_worker`).
    User = 1,
    /// Replaced by a new worker in a rolling restart.
    Rollout = 2,
    Recycle = 3,
    Stuck = 4,
    ScaleDown = 5,
    Stop = 6,
    BootTimeout = 7,
    /// A new worker of a rollout that was aborted.
    Aborted = 8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Disconnect = 0,
    Term = 1,
    Kill = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecycleReason {
    Connections = 1,
    Rss = 2,
    Age = 3,
}

/// What a signal (or the control call) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    None = 0,
    Reload = 1,
    ScaleUp = 2,
    ScaleDown = 3,
    StopGraceful = 4,
    StopFast = 5,
    /// A hot upgrade of the primary (`upgrade`).
    Upgrade = 6,
}

impl Control {
    pub fn from_i32(v: i32) -> Option<Control> {
        Some(match v {
            0 => Control::None,
            1 => Control::Reload,
            2 => Control::ScaleUp,
            3 => Control::ScaleDown,
            4 => Control::StopGraceful,
            5 => Control::StopFast,
            6 => Control::Upgrade,
            _ => return None,
        })
    }
}

/// What the program is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Ready {
        id: u32,
    },
    Draining {
        id: u32,
        stage: Stage,
        reason: DrainReason,
    },
    Respawn {
        delay_ms: Ms,
        streak: u32,
    },
    Breaker {
        state: BreakerState,
        failures: usize,
    },
    Rollout {
        state: RolloutState,
        generation: u32,
        replaced: u32,
    },
    Stuck {
        id: u32,
        idle_ms: Ms,
    },
    Recycle {
        id: u32,
        reason: RecycleReason,
    },
    Control {
        action: Control,
        signal: i32,
    },
    /// A hot upgrade of the primary moved on (`pid`: the other primary; `error`: why it
    /// was aborted, a negative code, or 0).
    Upgrade {
        state: UpgradeState,
        pid: i32,
        error: i32,
    },
}

/// Where a hot upgrade of the primary is (`CLUSTER_UPGRADE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeState {
    /// Old primary: the new one was started and given the listening sockets.
    Started = 1,
    /// Both: the new primary's workers are ready; the old one stops accepting and drains.
    Ready = 2,
    /// New primary: the old one is gone (it drained its workers and exited).
    Done = 3,
    /// Old primary: the new one died or was not ready in time; it was killed, nothing changed.
    Aborted = 4,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Fork {
        purpose: Purpose,
    },
    /// Node's primary-side disconnect (the worker leaves every server now).
    Disconnect(u32),
    Signal(u32, i32),
    Notice(Notice),
    /// Start a hot upgrade of the primary (the distributor carries it out).
    Upgrade,
}

/// How a worker's life ended, as supervision counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Drained, disconnected or stopped on purpose: never counted as a failure.
    Asked = 1,
    /// Died after it was ready.
    Crash = 2,
    /// Died (or timed out) before it was ready.
    BootFailure = 3,
}

/// What the distributor measures of a worker for recycling.
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    pub received: u64,
    pub rss: Option<u64>,
}

#[derive(Debug)]
struct Drain {
    since: Ms,
    reason: DrainReason,
    term_at: Option<Ms>,
    kill_at: Option<Ms>,
}

#[derive(Debug)]
struct Member {
    generation: u32,
    forked_at: Ms,
    ready_at: Option<Ms>,
    drain: Option<Drain>,
    /// A boot timeout already counted this worker's failure.
    boot_counted: bool,
    /// Its recycling limits (the policy's plus jitter).
    max_connections: u64,
    max_age: Ms,
}

/// A worker as supervision sees it (for stats).
#[derive(Clone, Copy, Debug, Default)]
pub struct MemberView {
    pub generation: u32,
    pub forked_at: Ms,
    pub ready_at: Option<Ms>,
    pub draining: bool,
}

#[derive(Debug)]
pub struct Supervisor {
    policy: Policy,
    jitter: Jitter,
    members: BTreeMap<u32, Member>,
    generation: u32,
    /// Deaths in a row (reset once a worker stays ready `stable_ms`).
    streak: u32,
    last_death: Ms,
    respawns_due: Vec<Ms>,
    breaker: Breaker,
    rollout: Option<Rollout>,
    reload_pending: bool,
    /// `Some(fast)` once a stop began.
    stopping: Option<bool>,
    /// A graceful stop announced (not ready) whose drains begin at this time
    /// (`drain_delay_ms`): until then every worker keeps serving.
    stop_drains_at: Option<Ms>,
    respawns: u64,
    /// A probe fork asked for and not yet made.
    probe_pending: bool,
    /// Respawn and scale forks asked for and not yet reported (they count as workers).
    forks_pending: usize,
    /// The program used supervision (a policy, an operation, a signal): only then is it
    /// told (a program that never did sees Node's events only).
    enabled: bool,
    /// The program set a policy (`configure`): boot timeouts apply to every worker, not
    /// only to a rollout's new ones.
    configured: bool,
    /// A hot upgrade of the primary is under way: no rollout starts meanwhile.
    upgrading: bool,
    out: Vec<Action>,
}

impl Supervisor {
    pub fn new(entropy: u64) -> Supervisor {
        Supervisor {
            policy: Policy::off(),
            jitter: Jitter::new(entropy),
            members: BTreeMap::new(),
            generation: 1,
            streak: 0,
            last_death: 0,
            respawns_due: Vec::new(),
            breaker: Breaker::new(),
            rollout: None,
            reload_pending: false,
            stopping: None,
            stop_drains_at: None,
            respawns: 0,
            probe_pending: false,
            forks_pending: 0,
            enabled: false,
            configured: false,
            upgrading: false,
            out: Vec::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The program's policy (validated by the caller): applies from now on.
    pub fn configure(&mut self, policy: Policy, now: Ms) {
        if policy.seed != 0 && policy.seed != self.policy.seed {
            self.jitter = Jitter::new(policy.seed);
        }
        self.policy = policy;
        self.enabled = true;
        self.configured = true;
        self.refill(now, false);
    }

    /// What to do, in order; empties the list.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    pub fn has_actions(&self) -> bool {
        !self.out.is_empty()
    }

    fn notice(&mut self, n: Notice) {
        if self.enabled {
            self.out.push(Action::Notice(n));
        }
    }

    /// The program asked for supervision (a policy, an operation, a signal): from now on
    /// it is told what supervision does.
    pub fn enable(&mut self) {
        self.enabled = true;
    }

    // ---- state for stats and for the run loop

    /// Whether supervision still has work when no worker runs (a respawn is due, or the
    /// breaker will let a probe through): the program's run loop must not end.
    pub fn keeps_running(&self) -> bool {
        self.stopping.is_none() && self.policy.workers > 0
    }

    /// Whether a worker is on its way (a respawn due or being forked, one booting, a
    /// rollout or a probe under way, fewer than the target): the servers no worker holds
    /// now are kept for it.
    pub fn expecting_workers(&self) -> bool {
        self.keeps_running()
            && (!self.respawns_due.is_empty()
                || self.forks_pending > 0
                || self.probe_pending
                || self.rollout.is_some()
                || self.breaker.state != BreakerState::Closed
                || self.members.values().any(|m| m.drain.is_none() && m.ready_at.is_none())
                || self.live() < self.policy.workers)
    }

    pub fn target(&self) -> usize {
        self.policy.workers
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state
    }

    pub fn respawns(&self) -> u64 {
        self.respawns
    }

    pub fn rollout_state(&self) -> Option<u32> {
        self.rollout.as_ref().map(|r| r.generation)
    }

    /// A hot upgrade began (`true`) or ended without handing over (`false`).
    pub fn set_upgrading(&mut self, on: bool) {
        self.upgrading = on;
    }

    pub fn upgrading(&self) -> bool {
        self.upgrading
    }

    /// The new primary is ready and serves: every worker drains (as a graceful stop) and
    /// none is replaced. The upgrade stays under way until this primary exits. No
    /// `drain_delay_ms` first: the new primary already accepts on the same sockets, so
    /// there is no balancer to tell before this one stops accepting.
    pub fn handed_over(&mut self, now: Ms) {
        self.upgrading = true;
        self.stopping = Some(false);
        self.respawns_due.clear();
        self.reload_pending = false;
        if self.rollout.is_some() {
            self.abort_rollout(now);
        }
        self.stop_drains_at = None;
        self.drain_all(false, false, now);
    }

    pub fn stopping(&self) -> Option<bool> {
        self.stopping
    }

    /// A graceful stop is announced and its drains have not begun (`drain_delay_ms`).
    pub fn stop_delayed(&self) -> bool {
        self.stop_drains_at.is_some()
    }

    pub fn member(&self, id: u32) -> Option<MemberView> {
        self.members.get(&id).map(|m| MemberView {
            generation: m.generation,
            forked_at: m.forked_at,
            ready_at: m.ready_at,
            draining: m.drain.is_some(),
        })
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let ready = self.members.values().filter(|m| m.ready_at.is_some() && m.drain.is_none()).count();
        let draining = self.members.values().filter(|m| m.drain.is_some()).count();
        (self.members.len(), ready, draining)
    }

    /// Whether worker `id` must be ready within the boot timeout: always once the program
    /// set a policy; before, only a rollout's new workers (Node's workers need not listen).
    fn boot_clock(&self, id: u32) -> bool {
        self.configured || self.rollout.as_ref().is_some_and(|r| r.booting.contains(&id))
    }

    /// Workers that count toward the target: not draining, and not a rollout's new worker
    /// still booting (the surge is extra until it is ready and an old one drains).
    fn live(&self) -> usize {
        let booting = |id: &u32| self.rollout.as_ref().is_some_and(|r| r.booting.contains(id));
        self.members.iter().filter(|(id, m)| m.drain.is_none() && !booting(id)).count()
    }

    // ---- what happened to workers

    /// A worker was forked (`purpose` `None`: the program forked it itself).
    pub fn forked(&mut self, id: u32, now: Ms, purpose: Option<Purpose>) {
        let p = self.policy.clone();
        let jitter = |j: &mut Jitter, v: u64| if v == 0 { 0 } else { v + j.between(0, v * p.recycle_jitter_pct as u64 / 100) };
        let max_connections = jitter(&mut self.jitter, p.max_connections);
        let max_age = jitter(&mut self.jitter, p.max_age_ms);
        // A worker forked during a rolling restart runs the new program: the new generation.
        let mut generation = self.rollout.as_ref().map_or(self.generation, |r| r.generation);
        if matches!(purpose, Some(Purpose::Respawn | Purpose::Scale)) {
            self.forks_pending = self.forks_pending.saturating_sub(1);
        }
        if purpose == Some(Purpose::Probe) {
            self.probe_pending = false;
            self.breaker.probe = Some(id);
        }
        let in_rollout = purpose == Some(Purpose::Rollout) && self.rollout.is_some();
        if let Some(r) = self.rollout.as_mut().filter(|_| in_rollout) {
            r.forks_pending = r.forks_pending.saturating_sub(1);
            r.booting.insert(id);
            generation = r.generation;
        }
        let m = Member { generation, forked_at: now, ready_at: None, drain: None, boot_counted: false, max_connections, max_age };
        self.members.insert(id, m);
        if purpose == Some(Purpose::Rollout) && !in_rollout {
            // Its rollout was aborted while this fork was under way.
            self.start_drain(id, DrainReason::Aborted, now, true);
        }
    }

    /// A fork the supervisor asked for failed (the program file is gone, say): a boot failure.
    pub fn fork_failed(&mut self, purpose: Purpose, now: Ms) {
        if matches!(purpose, Purpose::Respawn | Purpose::Scale) {
            self.forks_pending = self.forks_pending.saturating_sub(1);
        }
        if purpose == Purpose::Probe {
            self.probe_pending = false;
        }
        if purpose == Purpose::Rollout
            && let Some(r) = self.rollout.as_mut()
        {
            r.forks_pending = r.forks_pending.saturating_sub(1);
            self.abort_rollout(now);
        }
        self.boot_failed(now);
        self.refill(now, true);
    }

    pub fn online(&mut self, id: u32, now: Ms) {
        if self.policy.ready_on == ReadyOn::Online {
            self.ready(id, now);
        }
    }

    pub fn listening(&mut self, id: u32, now: Ms) {
        if self.policy.ready_on == ReadyOn::Listening {
            self.ready(id, now);
        }
    }

    /// The worker said it is ready (`cluster_worker_ready`).
    pub fn said_ready(&mut self, id: u32, now: Ms) {
        if self.policy.ready_on == ReadyOn::Explicit {
            self.ready(id, now);
        }
    }

    fn ready(&mut self, id: u32, now: Ms) {
        let Some(m) = self.members.get_mut(&id) else { return };
        if m.ready_at.is_some() || m.drain.is_some() {
            return;
        }
        m.ready_at = Some(now);
        self.notice(Notice::Ready { id });
        if self.breaker.probe == Some(id) {
            self.close_breaker(now);
        }
        self.rollout_ready(id, now);
    }

    /// A worker exited; `asked`: the program (or the worker itself) disconnected it first.
    pub fn exited(&mut self, id: u32, now: Ms, asked: bool) -> ExitKind {
        let Some(m) = self.members.remove(&id) else { return ExitKind::Asked };
        let kind = if m.drain.is_some() || asked || m.boot_counted {
            ExitKind::Asked
        } else if m.ready_at.is_none() {
            ExitKind::BootFailure
        } else {
            ExitKind::Crash
        };
        if kind != ExitKind::Asked {
            self.streak = self.streak.saturating_add(1);
            self.last_death = now;
        }
        if kind == ExitKind::BootFailure {
            self.boot_failed(now);
        }
        if self.breaker.probe == Some(id) && kind == ExitKind::Asked && self.breaker.state == BreakerState::HalfOpen {
            // The probe was stopped on purpose before it was ready: probe again.
            self.breaker.probe = None;
            self.breaker.open(now, 0);
            self.breaker.open_until = Some(now);
        }
        self.rollout_exited(id, now, kind == ExitKind::BootFailure);
        self.refill(now, kind != ExitKind::Asked);
        kind
    }

    /// The distributor saw a worker's queued connections wait `idle_ms` without it taking
    /// any: out of rotation now, replaced, stopped.
    pub fn stuck(&mut self, id: u32, now: Ms, idle_ms: Ms) {
        if self.members.get(&id).is_none_or(|m| m.drain.is_some()) {
            return;
        }
        self.notice(Notice::Stuck { id, idle_ms });
        self.start_drain(id, DrainReason::Stuck, now, true);
        if let Some(r) = self.rollout.as_mut() {
            r.old.remove(&id);
        }
        self.refill(now, false);
        self.advance_rollout(now);
    }

    /// `cluster_drain_worker`: `ESRCH` for an unknown worker, `CLUSTER_E_CLOSED` when it
    /// drains already.
    pub fn drain(&mut self, id: u32, now: Ms) -> crate::error::Result<()> {
        match self.members.get(&id) {
            None => return Err(crate::error::Error::errno(libc::ESRCH, format!("no live worker with id {id}"))),
            Some(m) if m.drain.is_some() => {
                return Err(crate::error::Error::new(crate::error::code::CLOSED, format!("worker {id} is draining already")));
            }
            Some(_) => {}
        }
        self.start_drain(id, DrainReason::User, now, false);
        if let Some(r) = self.rollout.as_mut() {
            r.old.remove(&id);
        }
        self.refill(now, false);
        self.advance_rollout(now);
        Ok(())
    }

    /// A worker the program disconnected itself (not through a drain): it no longer counts
    /// as serving, and the supervisor replaces it.
    pub fn disconnected_by_program(&mut self, id: u32, now: Ms) {
        if let Some(m) = self.members.get_mut(&id)
            && m.drain.is_none()
        {
            m.drain = Some(Drain { since: now, reason: DrainReason::User, term_at: None, kill_at: None });
            if let Some(r) = self.rollout.as_mut() {
                r.old.remove(&id);
            }
            self.refill(now, false);
            self.advance_rollout(now);
        }
    }

    fn start_drain(&mut self, id: u32, reason: DrainReason, now: Ms, hard: bool) {
        let Some(m) = self.members.get_mut(&id) else { return };
        if m.drain.is_some() {
            return;
        }
        m.drain = Some(Drain { since: now, reason, term_at: hard.then_some(now), kill_at: None });
        // Told first: the worker's own `disconnect` and `exit` may follow at once.
        self.notice(Notice::Draining { id, stage: Stage::Disconnect, reason });
        self.out.push(Action::Disconnect(id));
        if hard {
            self.notice(Notice::Draining { id, stage: Stage::Term, reason });
            self.out.push(Action::Signal(id, libc::SIGTERM));
        }
    }

    fn boot_failed(&mut self, now: Ms) {
        let (burst, window) = (self.policy.breaker_burst, self.policy.breaker_window_ms);
        if self.policy.workers > 0 && self.breaker.failed(now, burst, window) {
            self.breaker.open(now, self.policy.breaker_cooldown_ms);
            self.respawns_due.clear();
            self.probe_pending = false;
            let failures = self.breaker.failures();
            self.notice(Notice::Breaker { state: BreakerState::Open, failures });
        }
    }

    fn close_breaker(&mut self, now: Ms) {
        self.breaker.close();
        self.streak = 0;
        self.notice(Notice::Breaker { state: BreakerState::Closed, failures: 0 });
        self.refill(now, false);
    }

    /// `cluster_breaker_reset`: closes an open breaker at once.
    pub fn reset_breaker(&mut self, now: Ms) {
        if self.breaker.state != BreakerState::Closed {
            self.close_breaker(now);
        }
    }

    /// Schedules forks until the workers (serving, booting, or due) reach the target.
    /// `after_death`: wait the backoff delay first.
    fn refill(&mut self, now: Ms, after_death: bool) {
        if self.stopping.is_some() || self.policy.workers == 0 || self.breaker.state != BreakerState::Closed {
            return;
        }
        let have = self.live() + self.respawns_due.len() + self.forks_pending;
        for _ in have..self.policy.workers {
            if after_death && self.streak > 0 {
                let delay = backoff(&self.policy, self.streak, &mut self.jitter);
                self.respawns_due.push(now + delay);
                self.notice(Notice::Respawn { delay_ms: delay, streak: self.streak });
            } else {
                self.forks_pending += 1;
                self.out.push(Action::Fork { purpose: Purpose::Respawn });
            }
        }
    }

    /// The earliest time `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Ms> {
        let p = &self.policy;
        let mut next: Option<Ms> = None;
        let mut at = |t: Ms| next = Some(next.map_or(t, |n| n.min(t)));
        self.respawns_due.iter().for_each(|&t| at(t));
        if let Some(t) = self.breaker.open_until {
            at(t);
        }
        if let Some(t) = self.stop_drains_at {
            at(t);
        }
        for (&id, m) in &self.members {
            match &m.drain {
                Some(d) => match (d.term_at, d.kill_at) {
                    (None, _) => at(d.since + p.drain_timeout_ms),
                    (Some(t), None) => at(t + p.kill_after_ms),
                    _ => {}
                },
                None if m.ready_at.is_none() && !m.boot_counted && self.boot_clock(id) => at(m.forked_at + p.boot_timeout_ms),
                None => {
                    if self.streak > 0
                        && let Some(r) = m.ready_at.filter(|&r| r >= self.last_death)
                    {
                        at(r + p.stable_ms);
                    }
                }
            }
        }
        next
    }

    /// Runs what is due at `now`; `metrics` gives a worker's counts for recycling.
    pub fn tick(&mut self, now: Ms, metrics: impl Fn(u32) -> Metrics) {
        // The drain delay of a graceful stop is over: the drains begin.
        if self.stop_drains_at.is_some_and(|t| now >= t) {
            self.stop_drains_at = None;
            self.drain_all(false, false, now);
        }
        // Respawns due.
        let before = self.respawns_due.len();
        self.respawns_due.retain(|&t| t > now);
        for _ in self.respawns_due.len()..before {
            self.respawns += 1;
            self.forks_pending += 1;
            self.out.push(Action::Fork { purpose: Purpose::Respawn });
        }
        // The breaker's cool-down.
        if self.breaker.cooled(now) {
            self.notice(Notice::Breaker { state: BreakerState::HalfOpen, failures: self.breaker.failures() });
            if self.stopping.is_none() && self.live() < self.policy.workers {
                self.probe_pending = true;
                self.respawns += 1;
                self.out.push(Action::Fork { purpose: Purpose::Probe });
            } else {
                self.close_breaker(now);
            }
        }
        let p = self.policy.clone();
        let mut timed_out = Vec::new();
        let mut signals = Vec::new();
        let clocked: Vec<u32> = self.members.keys().copied().filter(|&id| self.boot_clock(id)).collect();
        for (&id, m) in self.members.iter_mut() {
            match m.drain.as_mut() {
                Some(d) if d.term_at.is_none() && now >= d.since + p.drain_timeout_ms => {
                    d.term_at = Some(now);
                    signals.push((id, libc::SIGTERM, Stage::Term, d.reason));
                }
                Some(d) if d.kill_at.is_none() && d.term_at.is_some_and(|t| now >= t + p.kill_after_ms) => {
                    d.kill_at = Some(now);
                    signals.push((id, libc::SIGKILL, Stage::Kill, d.reason));
                }
                Some(_) => {}
                None if m.ready_at.is_none() && !m.boot_counted && now >= m.forked_at + p.boot_timeout_ms && clocked.contains(&id) => {
                    m.boot_counted = true;
                    timed_out.push(id);
                }
                None => {}
            }
        }
        for (id, sig, stage, reason) in signals {
            self.out.push(Action::Signal(id, sig));
            self.notice(Notice::Draining { id, stage, reason });
        }
        for id in timed_out {
            self.streak = self.streak.saturating_add(1);
            self.last_death = now;
            self.boot_failed(now);
            self.start_drain(id, DrainReason::BootTimeout, now, true);
            self.rollout_exited(id, now, true);
            self.refill(now, true);
        }
        // A run of deaths ends once a worker forked after the last one stays ready.
        if self.streak > 0
            && self
                .members
                .values()
                .any(|m| m.drain.is_none() && m.ready_at.is_some_and(|r| r >= self.last_death && now >= r + p.stable_ms))
        {
            self.streak = 0;
        }
        self.check_recycle(now, metrics);
    }
}
