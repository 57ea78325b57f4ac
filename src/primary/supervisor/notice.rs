//! The supervisor's vocabulary: why it forks, why a worker drains, what a signal asks for,
//! what it tells the program (`Notice`), what it asks the distributor to do (`Action`), and
//! how it counts a worker's end.

#![forbid(unsafe_code)]

use super::{BreakerState, Ms, RolloutState};

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
