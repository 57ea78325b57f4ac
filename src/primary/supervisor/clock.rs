//! The supervisor's clock: the breaker's failures and cool-down, respawns on their backoff,
//! boot timeouts, drain escalation, the end of a run of deaths, and when it next has work.

#![forbid(unsafe_code)]

use super::policy::backoff;
use super::{Action, BreakerState, DrainReason, Metrics, Ms, Notice, Purpose, Stage, Supervisor};

impl Supervisor {
    pub(super) fn boot_failed(&mut self, now: Ms) {
        let (burst, window) = (self.policy.breaker_burst, self.policy.breaker_window_ms);
        if self.policy.workers > 0 && self.breaker.failed(now, burst, window) {
            self.breaker.open(now, self.policy.breaker_cooldown_ms);
            self.respawns_due.clear();
            self.probe_pending = false;
            let failures = self.breaker.failures();
            self.notice(Notice::Breaker { state: BreakerState::Open, failures });
        }
    }

    pub(super) fn close_breaker(&mut self, now: Ms) {
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
    pub(super) fn refill(&mut self, now: Ms, after_death: bool) {
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
