//! What supervision does, as the program set it: how many workers to keep, how fast to
//! replace a dead one, when to stop trying, what "ready" means, how long a drain may take,
//! when a worker counts as stuck and when it is recycled. All times in milliseconds.

#![forbid(unsafe_code)]

use crate::error::{Error, Result};

/// When a worker counts as ready (to end a rollout step, close the breaker, stop the boot
/// clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyOn {
    /// Its first `listening` (Node's event): the default.
    Listening,
    /// It says so (`cluster_worker_ready()`, pm2's `wait_ready`).
    Explicit,
    /// Its `online`.
    Online,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Workers to keep; 0: no respawn (Node's behaviour).
    pub workers: usize,
    /// Respawn delay after the n-th death in a row: `base × 2^(n-1)` capped at `max`, with
    /// jitter (a uniform draw in its upper half).
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// A worker ready this long ends the run of deaths (the next delay starts at `base`).
    pub stable_ms: u64,
    /// `breaker_burst` boot failures (deaths before ready) within `breaker_window_ms` open
    /// the breaker: no fork for `breaker_cooldown_ms` (0: until reset), then one probe.
    pub breaker_burst: usize,
    pub breaker_window_ms: u64,
    pub breaker_cooldown_ms: u64,
    pub ready_on: ReadyOn,
    /// Not ready this long after its fork: a boot failure (the worker is stopped).
    pub boot_timeout_ms: u64,
    /// A drain: disconnect, then SIGTERM after `drain_timeout_ms`, SIGKILL `kill_after_ms`
    /// later.
    pub drain_timeout_ms: u64,
    pub kill_after_ms: u64,
    /// Connections waiting for a worker that takes none of them this long: stuck (drained
    /// and replaced). 0: off.
    pub stuck_timeout_ms: u64,
    /// Recycling (a one-worker rollout, one at a time): after this many connections
    /// received, this resident size, this age; 0: off. Each limit gets up to
    /// `recycle_jitter_pct` percent more per worker.
    pub max_connections: u64,
    pub max_rss_bytes: u64,
    pub max_age_ms: u64,
    pub recycle_jitter_pct: u32,
    /// How often the resident size is read (when `max_rss_bytes` is set).
    pub rss_interval_ms: u64,
    /// New workers a rolling restart starts at once (before as many old ones drain).
    pub max_surge: usize,
    /// Seed of the jitter (0: from the clock and pid).
    pub seed: u64,
    /// A graceful stop first says "not ready" (the agent answers `drain`) while every
    /// worker keeps serving, and begins the drains this much later: the time a load
    /// balancer (or Kubernetes' endpoint removal) needs to stop sending. 0: drain at once.
    pub drain_delay_ms: u64,
}

impl Policy {
    /// Before the program asks for supervision: no respawn, no stuck detection, no
    /// recycling; drains (on request or by signal) use the default times.
    pub fn off() -> Policy {
        Policy { workers: 0, stuck_timeout_ms: 0, ..Policy::recommended() }
    }

    /// What `cluster_supervisor_init` fills in: what a production user would pick.
    pub fn recommended() -> Policy {
        Policy {
            workers: 0,
            backoff_base_ms: 100,
            backoff_max_ms: 30_000,
            stable_ms: 30_000,
            breaker_burst: 5,
            breaker_window_ms: 60_000,
            breaker_cooldown_ms: 30_000,
            ready_on: ReadyOn::Listening,
            boot_timeout_ms: 60_000,
            // A graceful stop ends within 25 s (under the 30 s systemd and Kubernetes give).
            drain_timeout_ms: 20_000,
            kill_after_ms: 5_000,
            // Detected within 20 s of its last progress (the check runs every 250 ms).
            stuck_timeout_ms: 20_000,
            max_connections: 0,
            max_rss_bytes: 0,
            max_age_ms: 0,
            recycle_jitter_pct: 10,
            rss_interval_ms: 1_000,
            max_surge: 1,
            seed: 0,
            drain_delay_ms: 0,
        }
    }

    /// Checks every field; `EINVAL` names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::errno(libc::EINVAL, format!("supervisor: {what}")));
        const DAY: u64 = 86_400_000;
        if self.workers > 4096 {
            return bad("workers must be 0..4096");
        }
        if self.backoff_base_ms == 0 || self.backoff_base_ms > self.backoff_max_ms || self.backoff_max_ms > DAY {
            return bad("backoff_base_ms must be at least 1 and at most backoff_max_ms (at most a day)");
        }
        if self.breaker_burst == 0 || self.breaker_window_ms == 0 {
            return bad("breaker_burst and breaker_window_ms must be at least 1");
        }
        if self.boot_timeout_ms == 0 || self.kill_after_ms == 0 {
            return bad("boot_timeout_ms and kill_after_ms must be at least 1");
        }
        if self.recycle_jitter_pct > 100 {
            return bad("recycle_jitter_pct must be 0..100");
        }
        if self.rss_interval_ms == 0 {
            return bad("rss_interval_ms must be at least 1");
        }
        if self.max_surge == 0 || self.max_surge > 4096 {
            return bad("max_surge must be 1..4096");
        }
        let times = [
            self.stable_ms,
            self.breaker_window_ms,
            self.breaker_cooldown_ms,
            self.boot_timeout_ms,
            self.drain_timeout_ms,
            self.kill_after_ms,
            self.stuck_timeout_ms,
            self.max_age_ms,
            self.rss_interval_ms,
            self.drain_delay_ms,
        ];
        if times.iter().any(|&t| t > 30 * DAY) {
            return bad("times must be at most 30 days");
        }
        Ok(())
    }

    /// Whether anything needs the periodic check (stuck workers, recycling).
    pub fn watches(&self) -> bool {
        self.stuck_timeout_ms > 0 || self.max_connections > 0 || self.max_rss_bytes > 0 || self.max_age_ms > 0
    }
}

/// A small deterministic generator for the jitter (splitmix64).
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next_u64() % (hi - lo + 1) }
    }
}

/// The respawn delay after `streak` deaths in a row (1 = the first).
pub fn backoff(p: &Policy, streak: u32, jitter: &mut Jitter) -> u64 {
    let exp = streak.saturating_sub(1).min(40);
    let d = p.backoff_base_ms.saturating_mul(1u64 << exp).min(p.backoff_max_ms);
    jitter.between(d / 2, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_jitter_and_is_capped() {
        let p = Policy { backoff_base_ms: 100, backoff_max_ms: 1000, ..Policy::recommended() };
        let mut j = Jitter::new(7);
        for (streak, hi) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (30, 1000)] {
            for _ in 0..50 {
                let d = backoff(&p, streak, &mut j);
                assert!((hi / 2..=hi).contains(&d), "streak {streak}: {d}");
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let p = Policy::recommended();
        let (mut a, mut b) = (Jitter::new(42), Jitter::new(42));
        let da: Vec<u64> = (1..10).map(|s| backoff(&p, s, &mut a)).collect();
        let db: Vec<u64> = (1..10).map(|s| backoff(&p, s, &mut b)).collect();
        assert_eq!(da, db);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(Policy::recommended().validate().is_ok());
        let e = Policy { max_surge: 0, ..Policy::recommended() }.validate().unwrap_err();
        assert!(e.message.contains("max_surge"), "{}", e.message);
        let e = Policy { backoff_base_ms: 5000, backoff_max_ms: 100, ..Policy::recommended() }.validate().unwrap_err();
        assert_eq!(e.code, -libc::EINVAL);
    }
}
