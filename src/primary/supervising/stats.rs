//! The distributor's figures for `cluster_stats_get` and `cluster_worker_stats_get`: each
//! worker's counters as the supervisor and the scheduler see them, and the final figures
//! of the workers that are gone.

#![forbid(unsafe_code)]

use super::GONE_KEPT;
use crate::primary::WorkerState;
use crate::primary::distributor::Distributor;
use crate::primary::handle::Handle;
use crate::primary::stats::{ClusterStats, WorkerStats};
use crate::primary::supervisor::{BreakerState, ExitKind, MemberView};
use crate::primary::worker_conn::WorkerConn;

impl Distributor {
    pub(super) fn worker_stats(&self, id: u32, w: &WorkerConn, view: Option<MemberView>) -> WorkerStats {
        let v = view.unwrap_or_default();
        let mut s = WorkerStats {
            id,
            pid: w.pid,
            generation: v.generation,
            alive: true,
            ready: v.ready_at.is_some(),
            draining: v.draining,
            forked_ms: v.forked_at as i64,
            ready_ms: v.ready_at.map_or(-1, |r| r as i64),
            ..Default::default()
        };
        s.fill(&w.counters, lane_queued(&self.handles, id), w.in_flight.len() as u64);
        s
    }

    /// Keeps a gone worker's final figures.
    pub(in crate::primary) fn retire_stats(
        &mut self,
        id: u32,
        w: &WorkerConn,
        view: Option<MemberView>,
        kind: ExitKind,
        (code, signal): (i32, i32),
    ) {
        let mut s = self.worker_stats(id, w, view);
        s.alive = false;
        s.exit_kind = kind as i32;
        s.exit_code = code;
        s.exit_signal = signal;
        self.sup_state.gone.push_back(s);
        while self.sup_state.gone.len() > GONE_KEPT {
            self.sup_state.gone.pop_front();
        }
    }

    pub(super) fn stats(&self) -> ClusterStats {
        let (workers, ready, draining) = self.sup.counts();
        let mut per_worker: Vec<WorkerStats> = self.sup_state.gone.iter().cloned().collect();
        for (&id, w) in self.workers.iter() {
            let mut s = self.worker_stats(id, w, self.sup.member(id));
            s.rss_bytes = crate::sys::process::rss_bytes(w.pid).unwrap_or(0);
            per_worker.push(s);
        }
        per_worker.sort_by_key(|s| s.id);
        let state = self.shared.table.lock().values().map(|w| (w.id, w.state)).collect::<Vec<_>>();
        for s in per_worker.iter_mut().filter(|s| s.alive) {
            if state.iter().any(|&(id, st)| id == s.id && st == WorkerState::Disconnected) {
                s.draining = true;
            }
        }
        ClusterStats {
            target: self.sup.target() as u32,
            workers: workers as u32,
            ready: ready as u32,
            draining: draining as u32,
            generation: self.sup.generation(),
            breaker: match self.sup.breaker_state() {
                BreakerState::Closed => 0,
                BreakerState::Open => 1,
                BreakerState::HalfOpen => 2,
            },
            respawns: self.sup.respawns(),
            rollout: self.sup.rollout_state().unwrap_or(0),
            stopping: match self.sup.stopping() {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            },
            per_worker,
        }
    }
}

/// Connections waiting in worker `id`'s lanes.
pub(super) fn lane_queued(handles: &crate::primary::id_map::IdMap<Handle>, id: u32) -> u64 {
    handles
        .values()
        .filter_map(|h| match h {
            Handle::RoundRobin(rr) => rr.lanes.get(&id).map(|l| l.queued() as u64),
            _ => None,
        })
        .sum()
}

pub(super) fn received(w: &WorkerConn, lane_queued: u64) -> u64 {
    let c = &w.counters;
    c.acked + c.lane_handed.saturating_sub(c.lane_rerouted).saturating_sub(lane_queued)
}
