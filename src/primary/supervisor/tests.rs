//! The supervisor's decisions, driven by a simulated clock and simulated workers.

use super::*;

struct Sim {
    s: Supervisor,
    next_id: u32,
    now: Ms,
    forked: Vec<(u32, Purpose)>,
    log: Vec<Action>,
}

impl Sim {
    fn new(policy: Policy) -> Sim {
        let mut s = Supervisor::new(1);
        s.enable();
        s.configure(Policy { seed: 9, ..policy }, 0);
        let mut sim = Sim { s, next_id: 1, now: 0, forked: Vec::new(), log: Vec::new() };
        sim.run();
        sim
    }

    /// Carries out the actions the way the distributor does: forks get the next id.
    fn run(&mut self) -> Vec<Action> {
        let mut all = Vec::new();
        loop {
            let acts = self.s.take_actions();
            if acts.is_empty() {
                break;
            }
            for a in acts {
                if let Action::Fork { purpose } = a {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.forked.push((id, purpose));
                    self.s.forked(id, self.now, Some(purpose));
                }
                all.push(a);
            }
        }
        self.log.extend(all.iter().cloned());
        all
    }

    fn at(&mut self, t: Ms) -> Vec<Action> {
        self.now = t;
        self.s.tick(t, |_| Metrics::default());
        self.run()
    }

    fn ready(&mut self, id: u32) -> Vec<Action> {
        self.s.listening(id, self.now);
        self.run()
    }

    fn exit(&mut self, id: u32) -> (ExitKind, Vec<Action>) {
        let k = self.s.exited(id, self.now, false);
        (k, self.run())
    }
}

fn forks(acts: &[Action]) -> usize {
    acts.iter().filter(|a| matches!(a, Action::Fork { .. })).count()
}

fn supervised(workers: usize) -> Policy {
    Policy {
        workers,
        breaker_burst: 3,
        breaker_window_ms: 10_000,
        breaker_cooldown_ms: 5_000,
        drain_timeout_ms: 1_000,
        kill_after_ms: 500,
        ..Policy::recommended()
    }
}

#[test]
fn respawn_waits_a_growing_jittered_delay() {
    let mut sim = Sim::new(supervised(2));
    assert_eq!(sim.forked.len(), 2, "the target is filled at once");
    sim.ready(1);
    sim.ready(2);
    sim.now = 1_000;
    let (kind, acts) = sim.exit(1);
    assert_eq!(kind, ExitKind::Crash);
    let Some(Action::Notice(Notice::Respawn { delay_ms, streak: 1 })) = acts.first().cloned() else { panic!("{acts:?}") };
    assert!((50..=100).contains(&delay_ms), "{delay_ms}");
    assert_eq!(forks(&sim.at(1_000 + delay_ms - 1)), 0, "not before its delay");
    assert_eq!(forks(&sim.at(1_000 + delay_ms)), 1);
    // The new one crashes after it was ready (streak 2): the next delay is in 100..=200.
    sim.ready(3);
    sim.now = 2_000;
    let (_, acts) = sim.exit(3);
    let Some(Action::Notice(Notice::Respawn { delay_ms, streak: 2 })) = acts.first().cloned() else { panic!("{acts:?}") };
    assert!((100..=200).contains(&delay_ms), "{delay_ms}");
}

#[test]
fn boot_failures_open_the_breaker_then_one_probe_closes_it() {
    let mut sim = Sim::new(supervised(2));
    sim.ready(1);
    sim.ready(2);
    // Worker 2's replacements die before they are ready.
    let mut t = 100;
    sim.now = t;
    sim.exit(2);
    let mut opened = false;
    for _ in 0..20 {
        t += 2_000;
        let acts = sim.at(t);
        if let Some(&(id, _)) = sim.forked.last().filter(|_| forks(&acts) == 1) {
            let (kind, acts) = sim.exit(id);
            assert_eq!(kind, ExitKind::BootFailure);
            if acts.iter().any(|a| matches!(a, Action::Notice(Notice::Breaker { state: BreakerState::Open, .. }))) {
                opened = true;
                break;
            }
        }
    }
    assert!(opened, "{:?}", sim.log);
    assert_eq!(sim.forked.len(), 2 + 3, "forks stop at the burst");
    assert_eq!(sim.s.breaker_state(), BreakerState::Open);
    // Nothing during the cool-down; worker 1 is left alone.
    for dt in (0..5_000).step_by(250) {
        let acts = sim.at(t + dt);
        assert_eq!(forks(&acts), 0);
        assert!(!acts.iter().any(|a| matches!(a, Action::Disconnect(1) | Action::Signal(1, _))));
    }
    let acts = sim.at(t + 5_000);
    assert!(acts.contains(&Action::Fork { purpose: Purpose::Probe }), "{acts:?}");
    assert_eq!(sim.s.breaker_state(), BreakerState::HalfOpen);
    let probe = sim.forked.last().unwrap().0;
    let acts = sim.ready(probe);
    assert!(acts.contains(&Action::Notice(Notice::Breaker { state: BreakerState::Closed, failures: 0 })));
    assert_eq!(sim.s.breaker_state(), BreakerState::Closed);
}

#[test]
fn a_failed_probe_opens_the_breaker_again() {
    let mut sim = Sim::new(Policy { breaker_burst: 1, ..supervised(1) });
    sim.now = 10;
    sim.exit(1);
    assert_eq!(sim.s.breaker_state(), BreakerState::Open);
    sim.at(5_010);
    let probe = sim.forked.last().unwrap().0;
    sim.exit(probe);
    assert_eq!(sim.s.breaker_state(), BreakerState::Open);
    assert_eq!(forks(&sim.at(5_020)), 0);
}

#[test]
fn rollout_drains_an_old_worker_only_after_a_new_one_is_ready() {
    let mut sim = Sim::new(supervised(3));
    for id in 1..=3 {
        sim.ready(id);
    }
    let generation = sim.s.rolling_restart(1, 0).unwrap();
    assert_eq!(generation, 2);
    let acts = sim.run();
    assert_eq!(forks(&acts), 1, "surge 1");
    assert_eq!(sim.s.rolling_restart(1, 0).unwrap_err().code, crate::error::code::BUSY);
    for (new, old) in [(4, 1), (5, 2), (6, 3)] {
        assert!(!sim.log.contains(&Action::Disconnect(old)), "{old} drained before {new} was ready");
        let acts = sim.ready(new);
        assert_eq!(acts.iter().filter(|a| matches!(a, Action::Disconnect(_))).count(), 1);
        assert!(acts.contains(&Action::Disconnect(old)), "{acts:?}");
    }
    assert!(sim.log.contains(&Action::Notice(Notice::Rollout { state: RolloutState::Done, generation: 2, replaced: 3 })));
    assert_eq!(sim.s.generation(), 2);
    for old in 1..=3 {
        assert_eq!(sim.s.exited(old, 10, true), ExitKind::Asked);
    }
    assert_eq!(forks(&sim.run()), 0, "drained workers are not replaced twice");
}

#[test]
fn a_new_worker_that_dies_before_ready_aborts_the_rollout() {
    let mut sim = Sim::new(supervised(2));
    sim.ready(1);
    sim.ready(2);
    sim.s.rolling_restart(2, 0).unwrap();
    sim.run();
    assert_eq!(sim.forked.len(), 4, "surge 2");
    let (kind, acts) = sim.exit(3);
    assert_eq!(kind, ExitKind::BootFailure);
    assert!(acts.contains(&Action::Notice(Notice::Rollout { state: RolloutState::Aborted, generation: 2, replaced: 0 })));
    assert!(acts.contains(&Action::Disconnect(4)) && acts.contains(&Action::Signal(4, libc::SIGTERM)), "{acts:?}");
    assert!(!sim.log.iter().any(|a| matches!(a, Action::Disconnect(1 | 2))), "old workers keep serving");
    assert_eq!(sim.s.generation(), 1);
    // The next rollout is allowed once the breaker is closed.
    assert!(sim.s.rolling_restart(1, 0).is_ok());
}

#[test]
fn a_boot_timeout_is_a_boot_failure() {
    let mut sim = Sim::new(Policy { boot_timeout_ms: 3_000, ..supervised(1) });
    let acts = sim.at(3_000);
    assert!(acts.contains(&Action::Disconnect(1)) && acts.contains(&Action::Signal(1, libc::SIGTERM)), "{acts:?}");
    assert_eq!(sim.s.exited(1, 3_100, false), ExitKind::Asked, "counted once, at the timeout");
}

#[test]
fn a_drain_escalates_on_its_clock() {
    let mut sim = Sim::new(supervised(1));
    sim.ready(1);
    sim.s.drain(1, 0).unwrap();
    let acts = sim.run();
    assert!(acts.contains(&Action::Disconnect(1)));
    assert_eq!(forks(&acts), 1, "replaced at once");
    assert!(sim.s.drain(1, 0).is_err());
    assert!(!sim.at(999).iter().any(|a| matches!(a, Action::Signal(1, _))));
    assert!(sim.at(1_000).contains(&Action::Signal(1, libc::SIGTERM)));
    assert!(!sim.at(1_499).iter().any(|a| matches!(a, Action::Signal(1, _))));
    assert!(sim.at(1_500).contains(&Action::Signal(1, libc::SIGKILL)));
    assert!(!sim.at(5_000).iter().any(|a| matches!(a, Action::Signal(1, _))), "once");
}

#[test]
fn a_stuck_worker_is_stopped_and_replaced_at_once() {
    let mut sim = Sim::new(supervised(2));
    sim.ready(1);
    sim.ready(2);
    sim.s.stuck(2, 100, 20_000);
    let acts = sim.run();
    assert!(acts.contains(&Action::Disconnect(2)) && acts.contains(&Action::Signal(2, libc::SIGTERM)));
    assert_eq!(forks(&acts), 1);
    assert!(sim.at(600).contains(&Action::Signal(2, libc::SIGKILL)));
}

#[test]
fn recycling_replaces_one_worker_at_a_time_surge_first() {
    let mut sim = Sim::new(Policy { max_connections: 100, recycle_jitter_pct: 0, ..supervised(3) });
    for id in 1..=3 {
        sim.ready(id);
    }
    sim.now = 10;
    sim.s.tick(10, |_| Metrics { received: 100, rss: None });
    let acts = sim.run();
    assert_eq!(forks(&acts), 1);
    assert!(acts.contains(&Action::Notice(Notice::Recycle { id: 1, reason: RecycleReason::Connections })));
    assert!(!acts.iter().any(|a| matches!(a, Action::Disconnect(_))), "surge first");
    // While it runs, no second recycle starts.
    sim.s.tick(20, |_| Metrics { received: 1000, rss: None });
    assert_eq!(forks(&sim.run()), 0);
    let acts = sim.ready(4);
    assert!(acts.contains(&Action::Disconnect(1)));
    assert_eq!(sim.s.generation(), 1, "a recycle keeps the generation");
    sim.s.tick(30, |id| Metrics { received: if id == 2 { 100 } else { 0 }, rss: None });
    let acts = sim.run();
    assert!(acts.contains(&Action::Notice(Notice::Recycle { id: 2, reason: RecycleReason::Connections })));
}

#[test]
fn scale_up_and_down() {
    let mut sim = Sim::new(supervised(2));
    sim.ready(1);
    sim.ready(2);
    sim.s.control(Control::ScaleUp, libc::SIGTTIN, 0);
    assert_eq!(forks(&sim.run()), 1);
    sim.ready(3);
    sim.s.control(Control::ScaleDown, libc::SIGTTOU, 0);
    let acts = sim.run();
    assert!(acts.contains(&Action::Disconnect(3)), "the newest: {acts:?}");
    assert_eq!(forks(&acts), 0);
    assert_eq!(sim.s.target(), 2);
}

#[test]
fn stop_graceful_then_fast_then_kill() {
    let mut sim = Sim::new(supervised(2));
    sim.ready(1);
    sim.ready(2);
    sim.s.control(Control::StopGraceful, libc::SIGTERM, 0);
    let acts = sim.run();
    assert!(acts.contains(&Action::Disconnect(1)) && acts.contains(&Action::Disconnect(2)));
    assert!(!acts.iter().any(|a| matches!(a, Action::Signal(..))));
    assert!(!sim.s.keeps_running());
    // A second TERM makes it fast; INT then kills.
    sim.s.control(Control::StopGraceful, libc::SIGTERM, 10);
    assert!(sim.run().contains(&Action::Signal(1, libc::SIGTERM)));
    sim.s.control(Control::StopFast, libc::SIGINT, 20);
    assert!(sim.run().contains(&Action::Signal(2, libc::SIGKILL)));
    sim.s.exited(1, 30, false);
    assert_eq!(forks(&sim.run()), 0, "no respawn while stopping");
}

#[test]
fn reloads_coalesce_into_one_more_rollout() {
    let mut sim = Sim::new(supervised(1));
    sim.ready(1);
    for _ in 0..100 {
        sim.s.control(Control::Reload, libc::SIGHUP, 0);
    }
    sim.run();
    assert_eq!(sim.forked.len(), 2);
    sim.ready(2);
    assert_eq!(sim.forked.len(), 3, "one more rollout, for all the repeats");
    sim.ready(3);
    assert_eq!(sim.forked.len(), 3);
    assert_eq!(sim.s.generation(), 3);
}

#[test]
fn recycling_by_age_and_by_resident_size() {
    let mut sim = Sim::new(Policy { max_age_ms: 10_000, max_rss_bytes: 64 << 20, recycle_jitter_pct: 0, ..supervised(2) });
    sim.ready(1);
    sim.ready(2);
    sim.s.tick(5_000, |_| Metrics { received: 0, rss: Some(1 << 20) });
    assert_eq!(forks(&sim.run()), 0, "young and small");
    sim.now = 6_000;
    sim.s.tick(6_000, |id| Metrics { received: 0, rss: Some(if id == 2 { 65 << 20 } else { 1 << 20 }) });
    let acts = sim.run();
    assert!(acts.contains(&Action::Notice(Notice::Recycle { id: 2, reason: RecycleReason::Rss })), "{acts:?}");
    sim.ready(3);
    assert!(sim.log.contains(&Action::Disconnect(2)));
    sim.s.exited(2, 6_100, true);
    sim.now = 10_000;
    sim.s.tick(10_000, |_| Metrics { received: 0, rss: Some(1 << 20) });
    let acts = sim.run();
    assert!(acts.contains(&Action::Notice(Notice::Recycle { id: 1, reason: RecycleReason::Age })), "{acts:?}");
}

#[test]
fn jitter_spreads_recycling_limits() {
    let mut sim = Sim::new(Policy { max_connections: 1000, recycle_jitter_pct: 10, ..supervised(8) });
    for id in 1..=8 {
        sim.ready(id);
    }
    // At 1000 connections each, only the workers whose jittered limit is 1000 exactly would
    // go; at 1100 every one is due, but only one recycles at a time.
    let due = |limit: u64| {
        let mut s = Supervisor::new(1);
        s.enable();
        s.configure(Policy { max_connections: 1000, recycle_jitter_pct: 10, seed: 9, ..supervised(8) }, 0);
        for id in 1..=8 {
            s.forked(id, 0, Some(Purpose::Respawn));
            s.listening(id, 0);
        }
        s.take_actions();
        s.tick(1, |_| Metrics { received: limit, rss: None });
        s.take_actions().iter().filter(|a| matches!(a, Action::Notice(Notice::Recycle { .. }))).count()
    };
    assert_eq!(due(1100), 1, "one at a time");
    let limits: std::collections::BTreeSet<u64> = sim.s.members.values().map(|m| m.max_connections).collect();
    assert!(limits.len() > 1 && limits.iter().all(|l| (1000..=1100).contains(l)), "{limits:?}");
}

#[test]
fn a_crash_during_a_rollout_is_respawned_with_backoff() {
    let mut sim = Sim::new(supervised(2));
    sim.ready(1);
    sim.ready(2);
    sim.s.rolling_restart(1, 0).unwrap();
    sim.run();
    assert_eq!(sim.forked.len(), 3, "the surge");
    // An old worker crashes while the new one boots: it is replaced on its own clock.
    sim.now = 100;
    let (kind, acts) = sim.exit(2);
    assert_eq!(kind, ExitKind::Crash);
    let Some(Action::Notice(Notice::Respawn { delay_ms, streak: 1 })) = acts.first().cloned() else { panic!("{acts:?}") };
    sim.at(100 + delay_ms);
    assert_eq!(sim.forked.len(), 4);
    assert_eq!(sim.s.respawns(), 1);
    // The rollout goes on: the new worker replaces the remaining old one.
    sim.ready(3);
    assert!(sim.log.contains(&Action::Disconnect(1)));
    sim.ready(4);
    let (_, _, draining) = sim.s.counts();
    assert_eq!(sim.s.live(), 2, "the target, with 1 draining ({draining})");
    assert!(sim.log.contains(&Action::Notice(Notice::Rollout { state: RolloutState::Done, generation: 2, replaced: 1 })));
}

#[test]
fn servers_are_kept_only_while_a_worker_is_expected() {
    let mut sim = Sim::new(supervised(1));
    assert!(sim.s.expecting_workers(), "booting");
    sim.ready(1);
    assert!(!sim.s.expecting_workers(), "settled");
    sim.now = 10;
    sim.exit(1);
    assert!(sim.s.expecting_workers(), "a respawn is due");
    let t = sim.s.next_deadline().unwrap();
    sim.at(t);
    assert!(sim.s.expecting_workers(), "the replacement boots");
    sim.ready(2);
    assert!(!sim.s.expecting_workers());
    sim.s.stop(false, t);
    assert!(!sim.s.expecting_workers(), "stopping: nothing is kept");
    let off = Sim::new(Policy::off());
    assert!(!off.s.expecting_workers(), "unsupervised: Node's behaviour");
}

#[test]
fn a_graceful_stop_with_a_drain_delay_announces_first_then_drains() {
    let mut sim = Sim::new(Policy { drain_delay_ms: 1_500, ..supervised(2) });
    sim.ready(1);
    sim.ready(2);
    sim.now = 100;
    sim.s.control(Control::StopGraceful, libc::SIGTERM, 100);
    let acts = sim.run();
    // Not ready at once (the agent says drain), no drain yet: every worker keeps serving.
    assert_eq!(sim.s.stopping(), Some(false));
    assert!(sim.s.stop_delayed());
    assert!(!acts.iter().any(|a| matches!(a, Action::Disconnect(_) | Action::Signal(..))), "{acts:?}");
    assert_eq!(sim.s.counts(), (2, 2, 0));
    assert!(!sim.s.keeps_running());
    assert_eq!(sim.s.next_deadline(), Some(1_600));
    // A crash during the delay is not replaced; a rolling restart is refused.
    assert!(sim.s.rolling_restart(0, 200).is_err());
    let acts = sim.at(1_599);
    assert!(!acts.iter().any(|a| matches!(a, Action::Disconnect(_))), "{acts:?}");
    // The delay is over: the drains begin, on their own clock.
    let acts = sim.at(1_600);
    assert!(acts.contains(&Action::Disconnect(1)) && acts.contains(&Action::Disconnect(2)), "{acts:?}");
    assert!(!acts.iter().any(|a| matches!(a, Action::Signal(..))));
    assert!(!sim.s.stop_delayed());
    assert_eq!(sim.s.counts(), (2, 0, 2));
    assert!(sim.at(2_600).contains(&Action::Signal(1, libc::SIGTERM)), "drain_timeout_ms after the drains began");
    sim.s.exited(1, 2_700, false);
    sim.s.exited(2, 2_700, false);
    assert_eq!(forks(&sim.run()), 0, "no respawn while stopping");
}

#[test]
fn a_second_term_during_the_drain_delay_drains_at_once() {
    let mut sim = Sim::new(Policy { drain_delay_ms: 10_000, ..supervised(2) });
    sim.ready(1);
    sim.ready(2);
    sim.s.control(Control::StopGraceful, libc::SIGTERM, 0);
    assert!(sim.run().iter().all(|a| !matches!(a, Action::Disconnect(_))));
    sim.now = 50;
    sim.s.control(Control::StopGraceful, libc::SIGTERM, 50);
    let acts = sim.run();
    assert!(acts.contains(&Action::Disconnect(1)) && acts.contains(&Action::Signal(2, libc::SIGTERM)), "{acts:?}");
    assert!(!sim.s.stop_delayed());
}

#[test]
fn an_upgrade_is_asked_for_and_forbids_rollouts_until_it_ends() {
    let mut sim = Sim::new(supervised(2));
    sim.ready(1);
    sim.ready(2);
    sim.s.control(Control::Upgrade, libc::SIGUSR2, sim.now);
    let acts = sim.run();
    assert!(acts.contains(&Action::Upgrade), "{acts:?}");
    assert!(acts.contains(&Action::Notice(Notice::Control { action: Control::Upgrade, signal: libc::SIGUSR2 })));
    sim.s.set_upgrading(true);
    assert_eq!(sim.s.rolling_restart(0, sim.now).unwrap_err().code, crate::error::code::BUSY);
    // A HUP meanwhile is not kept for later: the new program is the upgrade's.
    sim.s.control(Control::Reload, libc::SIGHUP, sim.now);
    assert_eq!(forks(&sim.run()), 0);
    // Aborted: the old primary carries on, rollouts allowed again.
    sim.s.set_upgrading(false);
    assert!(sim.s.rolling_restart(0, sim.now).is_ok());
}

#[test]
fn handing_over_drains_every_worker_and_replaces_none() {
    // A drain delay is for a balancer to notice; after a handover the new primary serves.
    let mut sim = Sim::new(Policy { drain_delay_ms: 1_500, ..supervised(2) });
    sim.ready(1);
    sim.ready(2);
    sim.s.set_upgrading(true);
    sim.s.handed_over(sim.now);
    let acts = sim.run();
    assert!(acts.contains(&Action::Disconnect(1)) && acts.contains(&Action::Disconnect(2)), "{acts:?}");
    assert!(!acts.iter().any(|a| matches!(a, Action::Signal(..))), "a graceful drain first: {acts:?}");
    assert!(sim.s.upgrading());
    assert!(!sim.s.keeps_running(), "the run loop ends once the workers are gone");
    let (kind, acts) = sim.exit(1);
    assert_eq!((kind, forks(&acts)), (ExitKind::Asked, 0));
    // The drain clock still escalates for a worker that does not leave.
    let acts = sim.at(1_000);
    assert!(acts.contains(&Action::Signal(2, libc::SIGTERM)), "{acts:?}");
    // No upgrade is asked for while stopping.
    sim.s.control(Control::Upgrade, libc::SIGUSR2, sim.now);
    assert!(!sim.run().contains(&Action::Upgrade));
}
