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
mod clock;
mod notice;
pub mod policy;
mod rollout;
#[cfg(test)]
mod tests;
mod workers;

use std::collections::BTreeMap;

use breaker::Breaker;
pub use breaker::BreakerState;
pub use notice::{Action, Control, DrainReason, ExitKind, Metrics, Notice, Purpose, RecycleReason, Stage, UpgradeState};
use policy::{Jitter, Policy};
use rollout::Rollout;
pub use rollout::RolloutState;

/// Milliseconds on the distributor's monotonic clock.
pub type Ms = u64;

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
}
