//! The worker table (Node's `cluster.workers`) and the rest of the state shared between the
//! user's threads and the distributor thread: each worker's `WorkerInfo`, the commands the
//! user's threads queue for the distributor, the bind allowlist and the settings.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::mpsc;

use parking_lot::{Mutex, RwLock};

use crate::error::Result;
use crate::event::EventQueue;
use crate::sys::eventfd::EventFd;
use crate::sys::pidfd;
use crate::sys::spawn::SpawnPlan;

use super::settings::Settings;
use super::stats::ClusterStats;
use super::supervisor::Control;
use super::supervisor::policy::Policy;

/// Node's worker states (`worker.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    None,
    Online,
    Listening,
    Disconnected,
    Dead,
}

/// What the user's thread may know of a worker (`cluster.workers[id]`).
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    pub id: u32,
    pub pid: i32,
    /// `None` once the worker is gone (its pidfd is closed then).
    pub child: Option<Arc<pidfd::Child>>,
    pub state: WorkerState,
    pub connected: bool,
    pub dead: bool,
    pub exited_after_disconnect: bool,
    /// In `cluster.workers` (a primary-side disconnect takes a worker out at once, §6.6).
    pub listed: bool,
    /// The primary's ends of the worker's stdio pipes (`silent` / `stdio: pipe`).
    /// Index n is the worker's fd n (the channel's is always `None`).
    pub stdio: Vec<Option<Arc<OwnedFd>>>,
}

pub(crate) enum Command {
    Spawn {
        id: u32,
        plan: SpawnPlan,
        reply: mpsc::SyncSender<Result<i32>>,
    },
    /// A complete line for worker `id`, with the fd it carries.
    Send {
        id: u32,
        line: Vec<u8>,
        fd: Option<OwnedFd>,
    },
    /// Node's primary-side `worker.disconnect()`.
    Disconnect {
        id: u32,
    },
    /// Node's `worker.process.disconnect()`: closes the channel, no protocol message.
    CloseChannel {
        id: u32,
    },
    /// Supervision (`supervisor`): a new policy, an operation, or a query.
    Supervise {
        policy: Policy,
    },
    RollingRestart {
        surge: usize,
        reply: mpsc::SyncSender<Result<u32>>,
    },
    Scale {
        workers: usize,
        reply: mpsc::SyncSender<Result<()>>,
    },
    Drain {
        id: u32,
        reply: mpsc::SyncSender<Result<()>>,
    },
    ResetBreaker,
    Control {
        action: Control,
        signal: i32,
    },
    Stats {
        reply: mpsc::SyncSender<ClusterStats>,
    },
    /// systemd notifications (`notify`): the flags, `NOTIFY_SOCKET` and the watchdog
    /// interval, read from the environment on the program's thread.
    Systemd {
        flags: u32,
        target: Option<crate::sys::notify::Target>,
        watchdog: Option<super::supervisor::Ms>,
        reply: mpsc::SyncSender<()>,
    },
    /// A hot upgrade of the primary (`upgrade`): replies with the new primary's pid.
    Upgrade {
        timeout_ms: u64,
        reply: mpsc::SyncSender<Result<i32>>,
    },
}

/// State shared between the user's threads and the distributor thread.
pub(crate) struct Shared {
    pub events: Arc<EventQueue>,
    pub commands: Mutex<VecDeque<Command>>,
    pub wake: EventFd,
    /// Every worker not yet both disconnected and dead; `listed` ones form `cluster.workers`.
    pub table: Mutex<BTreeMap<u32, WorkerInfo>>,
    /// Workers that are gone, for late queries (state, exitedAfterDisconnect). Bounded.
    pub retired: Mutex<BTreeMap<u32, WorkerInfo>>,
    /// Every setting: what forks run and how connections reach workers. Written by
    /// `Primary::setup` (validated, all at once); the distributor copies what it needs out
    /// of it once per `queryServer` (`Settings::distribution`), never per connection.
    pub settings: RwLock<Settings>,
    /// Addresses workers may ask us to bind; empty: any.
    pub allow: Mutex<Vec<AllowRule>>,
    /// The next worker id (1, 2, ... never reused), for the program's forks and the
    /// supervisor's.
    pub next_id: AtomicU32,
    /// Listening sockets the primary was given (systemd, a store, the primary it replaces):
    /// a `queryServer` for an address one is bound to takes it instead of binding.
    pub inherited: Mutex<super::inherited::Inherited>,
    /// Supervision has work even with no worker running (a respawn is due, the breaker
    /// will let a probe through): the run loop goes on.
    pub supervising: AtomicBool,
    /// `cluster_supervise` calls the distributor has not applied yet: until it has, a pass
    /// may still store `supervising` from the old policy, and the run loop must go on.
    pub supervise_pending: AtomicUsize,
    /// This primary was started by a hot upgrade: the channel to the old one, until the
    /// distributor takes it.
    pub upgrade_sock: Mutex<Option<std::os::fd::OwnedFd>>,
    pub upgraded: AtomicBool,
}

/// How many gone workers keep their stdio pipes open for reading.
const RETAINED_STDIO: usize = 16;

/// One entry of the bind allowlist: an address (`None`: any) and a port (`None`: any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    pub address: Option<String>,
    pub port: Option<i64>,
}

impl Shared {
    /// Whether a worker may ask for `address`:`port` (`address` as the query gives it:
    /// `None` for every interface, a path for a pipe).
    pub fn allowed(&self, address: Option<&str>, port: Option<i64>) -> bool {
        let rules = self.allow.lock();
        rules.is_empty()
            || rules.iter().any(|r| {
                let addr_ok = match (&r.address, address) {
                    (None, _) => true,
                    (Some(a), Some(b)) => a == b,
                    (Some(a), None) => a == "null",
                };
                addr_ok && r.port.is_none_or(|p| Some(p) == port)
            })
    }
}

impl Shared {
    /// Moves a worker from the table to the retired list and queues its last event (exit or
    /// disconnect); queues `Drained` when `cluster.workers` becomes empty.
    pub fn retire(&self, id: u32, last_event: crate::event::Event) {
        let mut table = self.table.lock();
        if let Some(mut info) = table.remove(&id) {
            info.state = WorkerState::Dead;
            info.dead = true;
            info.connected = false;
            info.child = None;
            let mut retired = self.retired.lock();
            retired.insert(id, info);
            while retired.len() > 4096 {
                retired.pop_first();
            }
            // A silent worker's pipes stay readable after it is gone (its last output), for
            // the most recent RETAINED_STDIO workers; older ones are closed.
            let mut with_pipes = 0;
            for w in retired.values_mut().rev() {
                if w.stdio.iter().any(Option::is_some) {
                    with_pipes += 1;
                    if with_pipes > RETAINED_STDIO {
                        w.stdio.clear();
                    }
                }
            }
        }
        // Queued under the table lock (after the worker's fds are released), so
        // `cluster_run` never sees an empty table with the last event not yet queued.
        self.events.push(last_event);
        self.check_drained(&table);
    }

    /// Takes a worker out of `cluster.workers` without forgetting it.
    pub fn unlist(&self, id: u32) {
        let mut table = self.table.lock();
        if let Some(info) = table.get_mut(&id)
            && std::mem::replace(&mut info.listed, false)
        {
            self.check_drained(&table);
        }
    }

    fn check_drained(&self, table: &BTreeMap<u32, WorkerInfo>) {
        if !table.values().any(|w| w.listed) {
            self.events.push(crate::event::Event::Drained);
        }
    }
}
