//! Replacing workers without losing capacity: rolling restarts (every worker), recycling
//! (one worker), scaling and stopping. A rollout forks at most `surge` new workers ahead,
//! drains an old worker only when a new one is ready, and aborts at the first new worker
//! that fails to become ready: the old ones it has not replaced keep serving.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use super::{Action, BreakerState, Control, DrainReason, Metrics, Ms, Notice, Purpose, RecycleReason, Supervisor};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutState {
    Started = 1,
    Step = 2,
    Done = 3,
    Aborted = 4,
}

#[derive(Debug)]
pub(super) struct Rollout {
    pub generation: u32,
    surge: usize,
    /// Old workers still to replace.
    pub old: BTreeSet<u32>,
    /// New workers not ready yet.
    pub booting: BTreeSet<u32>,
    /// Forks asked for and not yet reported.
    pub forks_pending: usize,
    replaced: u32,
    /// A recycle: one worker, the generation unchanged.
    recycle: bool,
}

use crate::error::code::{BREAKER_OPEN, BUSY};

impl Supervisor {
    /// A rolling restart of every serving worker, `surge` at a time (0: the policy's).
    /// Returns the new generation. `CLUSTER_E_BUSY` while another runs or a stop is under
    /// way; `CLUSTER_E_BREAKER_OPEN` while the breaker is not closed.
    pub fn rolling_restart(&mut self, surge: usize, now: Ms) -> Result<u32> {
        let surge = if surge == 0 { self.policy.max_surge } else { surge };
        let old: BTreeSet<u32> = self.members.iter().filter(|(_, m)| m.drain.is_none()).map(|(&id, _)| id).collect();
        self.start_rollout(old, surge, false, now)
    }

    fn start_rollout(&mut self, old: BTreeSet<u32>, surge: usize, recycle: bool, now: Ms) -> Result<u32> {
        if self.stopping.is_some() {
            return Err(Error::new(BUSY, "the primary is stopping"));
        }
        if self.rollout.is_some() {
            return Err(Error::new(BUSY, "a rolling restart or recycle is under way"));
        }
        if self.upgrading {
            return Err(Error::new(BUSY, "a hot upgrade of the primary is under way"));
        }
        if self.breaker.state != BreakerState::Closed {
            return Err(Error::new(BREAKER_OPEN, "the crash-loop breaker is open: no new workers until it closes"));
        }
        let generation = if recycle { self.generation } else { self.generation + 1 };
        self.rollout =
            Some(Rollout { generation, surge: surge.max(1), old, booting: BTreeSet::new(), forks_pending: 0, replaced: 0, recycle });
        if !recycle {
            self.notice(Notice::Rollout { state: RolloutState::Started, generation, replaced: 0 });
        }
        self.advance_rollout(now);
        Ok(generation)
    }

    /// Forks up to the surge, or finishes.
    pub(super) fn advance_rollout(&mut self, _now: Ms) {
        let Some(r) = self.rollout.as_mut() else { return };
        if r.old.is_empty() && r.booting.is_empty() && r.forks_pending == 0 {
            let (generation, replaced, recycle) = (r.generation, r.replaced, r.recycle);
            self.rollout = None;
            if !recycle {
                self.generation = generation;
                self.notice(Notice::Rollout { state: RolloutState::Done, generation, replaced });
            }
            if std::mem::take(&mut self.reload_pending) {
                let _ = self.rolling_restart(0, _now);
            }
            return;
        }
        while r.booting.len() + r.forks_pending < r.surge.min(r.old.len()) {
            r.forks_pending += 1;
            self.out.push(Action::Fork { purpose: Purpose::Rollout });
        }
    }

    /// A new worker is ready: one old worker drains.
    pub(super) fn rollout_ready(&mut self, id: u32, now: Ms) {
        let Some(r) = self.rollout.as_mut() else { return };
        if !r.booting.remove(&id) {
            return;
        }
        let Some(old) = r.old.pop_first() else {
            self.advance_rollout(now);
            return;
        };
        r.replaced += 1;
        let (generation, replaced, recycle) = (r.generation, r.replaced, r.recycle);
        let reason = if recycle { DrainReason::Recycle } else { DrainReason::Rollout };
        self.start_drain(old, reason, now, false);
        if !recycle {
            self.notice(Notice::Rollout { state: RolloutState::Step, generation, replaced });
        }
        self.advance_rollout(now);
    }

    /// A worker of the rollout is gone: a new one that never became ready aborts it.
    pub(super) fn rollout_exited(&mut self, id: u32, now: Ms, failed: bool) {
        let Some(r) = self.rollout.as_mut() else { return };
        r.old.remove(&id);
        if r.booting.remove(&id) && failed {
            self.abort_rollout(now);
            return;
        }
        self.advance_rollout(now);
    }

    /// Stops the rollout: new workers not yet ready are stopped, the old ones stay.
    pub(super) fn abort_rollout(&mut self, now: Ms) {
        let Some(r) = self.rollout.take() else { return };
        for id in r.booting {
            self.start_drain(id, DrainReason::Aborted, now, true);
        }
        self.reload_pending = false;
        self.notice(Notice::Rollout { state: RolloutState::Aborted, generation: r.generation, replaced: r.replaced });
    }

    /// One worker past a recycling limit (at most one at a time): a one-worker rollout.
    pub(super) fn check_recycle(&mut self, now: Ms, metrics: impl Fn(u32) -> Metrics) {
        let p = &self.policy;
        if self.rollout.is_some() || self.stopping.is_some() || !(p.max_connections > 0 || p.max_rss_bytes > 0 || p.max_age_ms > 0) {
            return;
        }
        let due = self.members.iter().filter(|(_, m)| m.drain.is_none() && m.ready_at.is_some()).find_map(|(&id, m)| {
            let got = metrics(id);
            if m.max_connections > 0 && got.received >= m.max_connections {
                Some((id, RecycleReason::Connections))
            } else if p.max_rss_bytes > 0 && got.rss.is_some_and(|r| r >= p.max_rss_bytes) {
                Some((id, RecycleReason::Rss))
            } else if m.max_age > 0 && now >= m.forked_at + m.max_age {
                Some((id, RecycleReason::Age))
            } else {
                None
            }
        });
        if let Some((id, reason)) = due
            && self.start_rollout(BTreeSet::from([id]), 1, true, now).is_ok()
        {
            self.notice(Notice::Recycle { id, reason });
        }
    }

    /// Keeps `n` workers (at least 1): more are forked at once, the extra ones drain (those
    /// not ready first, then the newest).
    pub fn scale(&mut self, n: usize, now: Ms) -> Result<()> {
        if n == 0 || n > 4096 {
            return Err(Error::errno(libc::EINVAL, "workers must be 1..4096"));
        }
        if self.stopping.is_some() {
            return Err(Error::new(BUSY, "the primary is stopping"));
        }
        self.policy.workers = n;
        let mut live: Vec<(bool, u32)> =
            self.members.iter().filter(|(_, m)| m.drain.is_none()).map(|(&id, m)| (m.ready_at.is_some(), id)).collect();
        // Not ready first, then the newest.
        live.sort_by_key(|&(ready, id)| (ready, std::cmp::Reverse(id)));
        let extra = (live.len() + self.respawns_due.len()).saturating_sub(n);
        let from_due = extra.min(self.respawns_due.len());
        self.respawns_due.truncate(self.respawns_due.len() - from_due);
        for &(_, id) in live.iter().take(extra - from_due) {
            self.start_drain(id, DrainReason::ScaleDown, now, false);
            if let Some(r) = self.rollout.as_mut() {
                r.old.remove(&id);
            }
        }
        self.refill(now, false);
        self.advance_rollout(now);
        Ok(())
    }

    /// Stops every worker: graceful (drain, escalating on the drain clock) or fast (SIGTERM
    /// now). A fast stop during a fast stop sends SIGKILL. With `drain_delay_ms`, a graceful
    /// stop first only announces itself (`stopping`, so the agent says `drain`; no respawn,
    /// no rollout) while every worker keeps serving, and the drains begin after the delay
    /// (`tick`); a fast stop during the delay drains at once.
    pub fn stop(&mut self, fast: bool, now: Ms) {
        let again_fast = fast && self.stopping == Some(true);
        let first = self.stopping.is_none();
        self.stopping = Some(fast || self.stopping == Some(true));
        self.respawns_due.clear();
        self.reload_pending = false;
        if self.rollout.is_some() {
            self.abort_rollout(now);
        }
        if !fast && first && self.policy.drain_delay_ms > 0 {
            self.stop_drains_at = Some(now + self.policy.drain_delay_ms);
            return;
        }
        if !fast && self.stop_drains_at.is_some() {
            // A graceful stop again during the delay: the delay stands.
            return;
        }
        self.stop_drains_at = None;
        self.drain_all(fast, again_fast, now);
    }

    /// Every worker drains (`fast`: with SIGTERM now; `again_fast`: SIGKILL now).
    pub(super) fn drain_all(&mut self, fast: bool, again_fast: bool, now: Ms) {
        let ids: Vec<u32> = self.members.keys().copied().collect();
        for id in ids {
            let Some(m) = self.members.get_mut(&id) else { continue };
            match m.drain.as_mut() {
                None => self.start_drain(id, DrainReason::Stop, now, fast),
                Some(d) if fast && d.term_at.is_none() => {
                    d.term_at = Some(now);
                    let reason = d.reason;
                    self.out.push(Action::Signal(id, libc::SIGTERM));
                    self.notice(Notice::Draining { id, stage: super::Stage::Term, reason });
                }
                Some(d) if again_fast && d.kill_at.is_none() => {
                    d.kill_at = Some(now);
                    let reason = d.reason;
                    self.out.push(Action::Signal(id, libc::SIGKILL));
                    self.notice(Notice::Draining { id, stage: super::Stage::Kill, reason });
                }
                Some(_) => {}
            }
        }
    }

    /// What a signal asks for (see `control`), told to the program first.
    pub fn control(&mut self, action: Control, signal: i32, now: Ms) {
        self.notice(Notice::Control { action, signal });
        match action {
            Control::None => {}
            Control::Reload => match self.rolling_restart(0, now) {
                // Repeats coalesce: one more rollout after this one (for a newer binary).
                Err(e) if e.code == BUSY && self.stopping.is_none() && !self.upgrading => self.reload_pending = true,
                _ => {}
            },
            Control::ScaleUp if self.policy.workers > 0 => {
                let _ = self.scale(self.policy.workers + 1, now);
            }
            Control::ScaleUp => {
                if self.stopping.is_none() {
                    self.forks_pending += 1;
                    self.out.push(Action::Fork { purpose: Purpose::Scale });
                }
            }
            Control::ScaleDown if self.policy.workers > 1 => {
                let _ = self.scale(self.policy.workers - 1, now);
            }
            Control::ScaleDown => {
                // Without a target (or at 1): drain the newest while more than one serve.
                if self.policy.workers == 0 && self.live() > 1 {
                    let newest = self.members.iter().rev().find(|(_, m)| m.drain.is_none()).map(|(&id, _)| id);
                    if let Some(id) = newest {
                        self.start_drain(id, DrainReason::ScaleDown, now, false);
                    }
                }
            }
            Control::StopGraceful => {
                let fast = self.stopping == Some(false);
                self.stop(fast, now);
            }
            Control::StopFast => self.stop(true, now),
            // One at a time, and not while stopping: the distributor reports a refusal.
            Control::Upgrade => {
                if self.stopping.is_none() {
                    self.out.push(Action::Upgrade);
                }
            }
        }
    }
}
