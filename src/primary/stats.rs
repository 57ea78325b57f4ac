//! Per-worker accounting of the connections the primary hands out, kept by the distributor
//! thread alone (plain integers: no atomics, no locks on the hot path) and copied out on
//! request. Conservation, which tests check against what clients saw:
//!
//! `handed = received + queued + rerouted + lost`
//!
//! - handed: connections given to the worker (a lane send, or a Node `newconn`);
//! - received: taken by the worker's program (a Node peer's `accepted: true`; on a lane,
//!   no longer in its queue and not taken back);
//! - queued: handed and not yet received (in its lane, or a `newconn` not yet answered);
//! - rerouted: taken back and dealt to another worker (refused, a stalled or draining
//!   worker's queue, a dead worker's unanswered connections);
//! - lost: none by design (the primary keeps a connection until it is received); counted
//!   so that a test would see one.

#![forbid(unsafe_code)]

use std::time::Duration;

use serde_json::{Value, json};

/// log2 buckets of microseconds: bucket k holds latencies below 2^k µs (the last, the rest).
pub(crate) const BUCKETS: usize = 24;

#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub handed: u64,
    /// Node path: answered `accepted: true`.
    pub acked: u64,
    pub rerouted: u64,
    /// Of `handed` and `rerouted`, what went over the lanes (received = lane_handed -
    /// lane_rerouted - what waits in the lanes).
    pub lane_handed: u64,
    pub lane_rerouted: u64,
    pub lost: u64,
    pub latency: Histogram,
}

#[derive(Clone, Debug)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS],
    pub max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: [0; BUCKETS], max_us: 0 }
    }
}

impl Histogram {
    /// Records `n` handoffs that each took `d`.
    pub fn record(&mut self, d: Duration, n: u64) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let k = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[k] += n;
        self.max_us = self.max_us.max(us);
    }

    /// The upper bound of the bucket holding the `q` quantile (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= want {
                return if k == BUCKETS - 1 { self.max_us } else { (1u64 << k).min(self.max_us.max(1)) };
            }
        }
        self.max_us
    }
}

/// One worker's figures, as the API gives them.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    pub id: u32,
    pub pid: i32,
    pub generation: u32,
    pub alive: bool,
    pub ready: bool,
    pub draining: bool,
    /// How its life ended (`supervisor::ExitKind` as a number; 0 while alive), and its
    /// exit code / signal.
    pub exit_kind: i32,
    pub exit_code: i32,
    pub exit_signal: i32,
    /// Milliseconds since the primary started supervising: forked, ready (-1: not yet).
    pub forked_ms: i64,
    pub ready_ms: i64,
    pub handed: u64,
    pub received: u64,
    pub queued: u64,
    pub rerouted: u64,
    pub lost: u64,
    pub handoff_us_p50: u64,
    pub handoff_us_p99: u64,
    pub handoff_us_max: u64,
    pub rss_bytes: u64,
}

impl WorkerStats {
    /// Fills the connection figures from the counters and what waits for the worker now.
    pub fn fill(&mut self, c: &Counters, lane_queued: u64, node_queued: u64) {
        self.handed = c.handed;
        self.queued = lane_queued + node_queued;
        self.rerouted = c.rerouted;
        self.lost = c.lost;
        self.received = c.acked + c.lane_handed.saturating_sub(c.lane_rerouted).saturating_sub(lane_queued);
        self.handoff_us_p50 = c.latency.quantile(0.5);
        self.handoff_us_p99 = c.latency.quantile(0.99);
        self.handoff_us_max = c.latency.max_us;
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "pid": self.pid, "generation": self.generation,
            "alive": self.alive, "ready": self.ready, "draining": self.draining,
            "exit": match self.exit_kind { 0 => Value::Null, 1 => "asked".into(), 2 => "crash".into(), _ => "boot_failure".into() },
            "exit_code": self.exit_code, "exit_signal": self.exit_signal,
            "forked_ms": self.forked_ms, "ready_ms": self.ready_ms,
            "handed": self.handed, "received": self.received, "queued": self.queued,
            "rerouted": self.rerouted, "lost": self.lost,
            "handoff_us": { "p50": self.handoff_us_p50, "p99": self.handoff_us_p99, "max": self.handoff_us_max },
            "rss_bytes": self.rss_bytes,
        })
    }
}

/// The whole cluster, as the API gives it.
#[derive(Clone, Debug, Default)]
pub struct ClusterStats {
    /// Workers to keep (0: no respawn).
    pub target: u32,
    pub workers: u32,
    pub ready: u32,
    pub draining: u32,
    pub generation: u32,
    /// `BreakerState` as a number: 0 closed, 1 open, 2 half-open.
    pub breaker: i32,
    pub respawns: u64,
    /// The generation a rolling restart is moving to, 0 when none runs.
    pub rollout: u32,
    /// 0 running, 1 stopping gracefully, 2 stopping fast.
    pub stopping: i32,
    /// Every worker alive, then the most recent gone ones (oldest first).
    pub per_worker: Vec<WorkerStats>,
}

impl ClusterStats {
    pub fn to_json(&self) -> Value {
        let breaker = ["closed", "open", "half_open"][self.breaker.clamp(0, 2) as usize];
        let stopping = ["no", "graceful", "fast"][self.stopping.clamp(0, 2) as usize];
        json!({
            "target": self.target, "workers": self.workers, "ready": self.ready, "draining": self.draining,
            "generation": self.generation,
            "breaker": breaker,
            "respawns": self.respawns, "rollout": self.rollout,
            "stopping": stopping,
            "per_worker": self.per_worker.iter().map(WorkerStats::to_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        h.record(Duration::from_micros(3), 98);
        h.record(Duration::from_micros(1000), 2);
        assert_eq!(h.quantile(0.5), 4);
        assert_eq!(h.quantile(0.99), 1000);
        assert_eq!(h.max_us, 1000);
    }

    #[test]
    fn lane_received_is_what_left_the_queue_and_was_not_taken_back() {
        let c = Counters { handed: 12, acked: 2, rerouted: 3, lane_handed: 10, lane_rerouted: 3, ..Default::default() };
        let mut s = WorkerStats::default();
        s.fill(&c, 4, 0);
        assert_eq!((s.received, s.queued), (5, 4));
        assert_eq!(s.handed, s.received + s.queued + s.rerouted + s.lost);
    }
}
