//! What happens to workers, as the supervisor hears it: forks, readiness, exits, stuck
//! workers, drains asked for, and the start of every drain.

#![forbid(unsafe_code)]

use super::policy::{Jitter, ReadyOn};
use super::{Action, BreakerState, Drain, DrainReason, ExitKind, Member, Ms, Notice, Purpose, Stage, Supervisor};

impl Supervisor {
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

    pub(super) fn ready(&mut self, id: u32, now: Ms) {
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

    pub(super) fn start_drain(&mut self, id: u32, reason: DrainReason, now: Ms, hard: bool) {
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
}
