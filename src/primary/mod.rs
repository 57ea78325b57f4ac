//! The primary: forks workers and runs the distributor thread.
//!
//! Protocol (see `docs/protocol.md` §5–§6): a worker sends `online`, then
//! `queryServer` per server; we bind once per handle key and reply; each accepted connection
//! goes to one worker inside a `NODE_HANDLE` `newconn` with the fd, and the worker answers
//! `{ack, accepted}`.
//!
//! Invariants kept here:
//! - the primary closes its copy of a connection fd only after the worker's
//!   `accepted: true`; a refusal, a NACK, the worker's exit or a channel error hands the
//!   connection to another worker (Node v20 leaks it; we don't);
//! - one handle in flight per channel; everything else queues behind it (`ipc::writer`);
//! - workers are reaped through their pidfds only, never `waitpid(-1)`; no signal handler.
//!
//! This file is the user-facing façade, [`Primary`]; the worker table shared with the
//! distributor thread is in `table`, and the worker's command line in `spawn_plan`.

#![forbid(unsafe_code)]

mod activation;
pub(crate) mod agent;
mod dealing;
mod distributor;
mod handle;
mod id_map;
pub(crate) mod inherited;
mod lane;
mod messages;
pub(crate) mod notify;
pub mod reuseport;
pub mod round_robin;
pub mod scheduler;
pub mod settings;
pub mod shared_handle;
mod spawn_plan;
pub mod stats;
mod supervising;
pub mod supervisor;
mod table;
mod upgrade;
mod worker_conn;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::event::EventQueue;
use crate::sys::eventfd::EventFd;

use settings::Settings;
use spawn_plan::build_plan;

pub use table::{AllowRule, WorkerInfo, WorkerState};
pub(crate) use table::{Command, Shared};
/// The time a new primary has to become ready by default (ms).
pub(crate) const UPGRADE_TIMEOUT_MS: u64 = upgrade::DEFAULT_TIMEOUT_MS;

/// How TCP connections reach workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedPolicy {
    /// Node's SCHED_RR: the primary accepts and deals (over the fast lane to libcluster
    /// workers).
    RoundRobin,
    /// Node's SCHED_NONE: every worker accepts on the one shared socket.
    None,
    /// libcluster's: one SO_REUSEPORT listener per worker, made and watched by the primary.
    ReusePort,
}

pub struct Primary {
    shared: Arc<Shared>,
    started: Mutex<bool>,
}

impl Primary {
    pub fn new(events: Arc<EventQueue>) -> Result<Primary> {
        // The program's path, read now: later forks run the file at that path.
        let _ = crate::sys::process::current_command();
        let wake = EventFd::new().map_err(|e| Error::io("eventfd", e))?;
        // Started by a hot upgrade: the old primary's listeners, read before anything runs.
        let mut inherited = inherited::Inherited::default();
        let upgrade_sock = upgrade::adopt_from_env(&mut inherited)?;
        Ok(Primary {
            shared: Arc::new(Shared {
                events,
                commands: Mutex::new(VecDeque::new()),
                wake,
                table: Mutex::new(BTreeMap::new()),
                retired: Mutex::new(BTreeMap::new()),
                allow: Mutex::new(Vec::new()),
                settings: RwLock::new(Settings::from_env()),
                next_id: AtomicU32::new(1),
                supervising: AtomicBool::new(false),
                supervise_pending: AtomicUsize::new(0),
                inherited: Mutex::new(inherited),
                upgraded: AtomicBool::new(upgrade_sock.is_some()),
                upgrade_sock: Mutex::new(upgrade_sock),
            }),
            started: Mutex::new(false),
        })
    }

    fn ensure_started(&self) -> Result<()> {
        let mut started = self.started.lock();
        if !*started {
            distributor::start(self.shared.clone())?;
            *started = true;
        }
        Ok(())
    }

    fn command(&self, cmd: Command) {
        self.shared.commands.lock().push_back(cmd);
        self.shared.wake.signal();
    }

    /// Starts a worker running this program again, with `extra_env` added to our
    /// environment. Returns its id (1, 2, ... never reused).
    pub fn fork(&self, extra_env: &[(OsString, OsString)]) -> Result<u32> {
        self.fork_env(extra_env, &[])
    }

    /// As `fork`, also leaving the variables named in `unset` out of the worker's
    /// environment (Node's `fork({ KEY: undefined })`).
    pub fn fork_env(&self, extra_env: &[(OsString, OsString)], unset: &[OsString]) -> Result<u32> {
        self.ensure_started()?;
        // The id is taken under the settings lock: `setup` sees either no fork yet and its
        // policy applies to this worker, or this fork and its policy change is refused.
        let (id, settings) = {
            let settings = self.shared.settings.read();
            (self.shared.next_id.fetch_add(1, Ordering::Relaxed), settings.clone())
        };
        let plan = build_plan(id, &settings, extra_env, unset)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.command(Command::Spawn { id, plan, reply: tx });
        rx.recv().map_err(|_| Error::protocol("distributor thread is gone"))??;
        Ok(id)
    }

    /// Node's `setupPrimary`, and libcluster's tuning: validates the whole update, then
    /// applies it, all or nothing. Fields left `None` are kept. Fails with `EINVAL` (see
    /// [`Settings::validate`]) or `EBUSY` (a different scheduling policy once a worker
    /// was forked); then nothing changed.
    pub fn setup(&self, update: Settings) -> Result<()> {
        update.validate()?;
        let mut current = self.shared.settings.write();
        if let Some(policy) = update.sched_policy
            && policy != current.sched_policy()
            && self.shared.next_id.load(Ordering::Relaxed) > 1
        {
            return Err(Error::errno(libc::EBUSY, "the scheduling policy is fixed once the first worker is forked"));
        }
        current.merge(update);
        Ok(())
    }

    /// The current settings (every field that has a value: set, or a default).
    pub fn settings(&self) -> Settings {
        self.shared.settings.read().clone()
    }

    /// Adds an entry to the bind allowlist: once it has any, a `queryServer` for an address
    /// it does not list is refused with `EACCES`.
    pub fn allow_bind(&self, rule: AllowRule) {
        self.shared.allow.lock().push(rule);
    }

    pub fn sched_policy(&self) -> SchedPolicy {
        self.shared.settings.read().sched_policy()
    }

    /// Sends `sig` to worker `id` (through its pidfd, so never to a recycled pid).
    pub fn kill(&self, id: u32, sig: i32) -> Result<()> {
        if !(0..=64).contains(&sig) {
            return Err(Error::errno(libc::EINVAL, format!("signal {sig} is not a valid signal number")));
        }
        let table = self.shared.table.lock();
        let child = match table.get(&id) {
            Some(w) if !w.dead => w.child.clone().ok_or_else(|| Error::errno(libc::ESRCH, format!("worker {id} is dead")))?,
            Some(_) => return Err(Error::errno(libc::ESRCH, format!("worker {id} is dead"))),
            None => return Err(Error::errno(libc::ESRCH, format!("no worker with id {id}"))),
        };
        // Signalled under the table lock: a worker reaped by pid (no pidfd) is marked dead
        // under it too, so its pid cannot have been recycled here.
        child.signal(sig).map_err(|e| Error::io(format!("kill worker {id}"), e))
    }

    /// The ids in `cluster.workers`, ascending.
    pub fn worker_ids(&self) -> Vec<u32> {
        self.shared.table.lock().values().filter(|w| w.listed).map(|w| w.id).collect()
    }

    /// A worker in the table: alive, or not yet both disconnected and reaped.
    pub fn live_worker(&self, id: u32) -> Result<WorkerInfo> {
        self.shared.table.lock().get(&id).cloned().ok_or_else(|| Error::errno(libc::ESRCH, format!("no worker with id {id} in the table")))
    }

    /// A worker that is alive or connected, or one that has gone (then `dead`).
    pub fn worker(&self, id: u32) -> Result<WorkerInfo> {
        if let Some(w) = self.shared.table.lock().get(&id) {
            return Ok(w.clone());
        }
        self.shared.retired.lock().get(&id).cloned().ok_or_else(|| Error::errno(libc::ESRCH, format!("no worker with id {id}")))
    }

    pub fn worker_count(&self) -> usize {
        self.shared.table.lock().values().filter(|w| w.listed).count()
    }

    /// Whether any worker process is still being watched (alive or not yet reaped), or
    /// `events_pending` says events wait; checked under the table lock, which the
    /// distributor holds while it retires a worker and queues its last event.
    pub fn has_workers_or(&self, events_pending: impl FnOnce() -> bool) -> bool {
        let table = self.shared.table.lock();
        !table.is_empty()
            || self.shared.supervising.load(Ordering::Acquire)
            || self.shared.supervise_pending.load(Ordering::Acquire) > 0
            || events_pending()
    }

    /// systemd socket activation: adopts the sockets passed in `LISTEN_FDS` (when
    /// `LISTEN_PID` is this process); a worker's server on one of their addresses takes it.
    /// Returns how many were adopted.
    pub fn listen_fds(&self) -> Result<usize> {
        activation::adopt(&mut self.shared.inherited.lock())
    }

    /// An inherited stream socket bound where `target` says (the agent's, after a hot upgrade).
    pub fn take_inherited(&self, target: &crate::address::Target) -> Option<std::os::fd::OwnedFd> {
        self.shared.inherited.lock().take(target, false).map(|s| s.fd)
    }

    /// The inherited sockets no worker took yet: `(address, name)`.
    pub fn inherited(&self) -> Vec<(crate::sys::socket::Addr, Option<String>)> {
        self.shared.inherited.lock().describe()
    }

    /// systemd notifications (`notify`, `docs/systemd.md`), opt-in: `flags` 0 turns them
    /// off. Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` now. Returns whether
    /// anything will be sent (false without `NOTIFY_SOCKET`).
    pub fn systemd(&self, flags: u32) -> Result<bool> {
        if flags & !notify::ALL != 0 {
            return Err(Error::errno(libc::EINVAL, format!("unknown systemd flags {flags:#x}")));
        }
        let target = crate::sys::notify::Target::from_env().map_err(|e| Error::io("NOTIFY_SOCKET", e))?;
        let watchdog = notify::watchdog_interval(|k| std::env::var(k).ok(), crate::sys::process::getpid());
        let on = flags != 0 && target.is_some();
        let target = target.filter(|_| on);
        self.ask(|reply| Command::Systemd { flags, target, watchdog, reply })?;
        Ok(on)
    }

    // ---- supervision (`supervisor`): carried out on the distributor thread

    fn ask<T>(&self, make: impl FnOnce(mpsc::SyncSender<T>) -> Command) -> Result<T> {
        self.ensure_started()?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.command(make(tx));
        rx.recv().map_err(|_| Error::protocol("distributor thread is gone"))
    }

    /// Turns supervision on (or changes it): `policy` is validated first (`EINVAL`).
    pub fn supervise(&self, policy: supervisor::policy::Policy) -> Result<()> {
        policy.validate()?;
        self.ensure_started()?;
        // Until the distributor has applied it, the run loop must not end for want of
        // workers: a pass before then stores `supervising` from the old policy (no workers).
        self.shared.supervise_pending.fetch_add(1, Ordering::AcqRel);
        self.command(Command::Supervise { policy });
        Ok(())
    }

    /// A rolling restart, `surge` new workers ahead (0: the policy's). Returns the
    /// generation it moves to.
    pub fn rolling_restart(&self, surge: usize) -> Result<u32> {
        self.ask(|reply| Command::RollingRestart { surge, reply })?
    }

    pub fn scale(&self, workers: usize) -> Result<()> {
        self.ask(|reply| Command::Scale { workers, reply })?
    }

    /// Drains worker `id` (disconnect, SIGTERM and SIGKILL on the policy's clock).
    pub fn drain(&self, id: u32) -> Result<()> {
        self.ask(|reply| Command::Drain { id, reply })?
    }

    pub fn reset_breaker(&self) -> Result<()> {
        self.ensure_started()?;
        self.command(Command::ResetBreaker);
        Ok(())
    }

    /// What a signal would do, asked for directly (`signal` 0: none).
    pub fn control(&self, action: supervisor::Control, signal: i32) -> Result<()> {
        self.ensure_started()?;
        self.command(Command::Control { action, signal });
        Ok(())
    }

    /// A hot upgrade of the primary (`docs/upgrade.md`): starts the program file now on disk
    /// as the new primary, hands it the listening sockets; once its workers are ready this
    /// primary stops accepting, forwards what it holds, drains its workers and its run loop
    /// ends. `timeout_ms` (0: 60 s) for the new primary to become ready, else it is killed
    /// and nothing changes. Returns the new primary's pid; `CLUSTER_E_BUSY` while one runs.
    pub fn upgrade(&self, timeout_ms: u64) -> Result<i32> {
        let timeout_ms = if timeout_ms == 0 { upgrade::DEFAULT_TIMEOUT_MS } else { timeout_ms };
        self.ask(|reply| Command::Upgrade { timeout_ms, reply })?
    }

    /// Whether this primary was started by a hot upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.shared.upgraded.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> Result<stats::ClusterStats> {
        self.ask(|reply| Command::Stats { reply })
    }

    fn connected_worker(&self, id: u32) -> Result<()> {
        match self.shared.table.lock().get(&id) {
            Some(w) if w.connected => Ok(()),
            Some(_) => Err(Error::new(crate::error::code::CLOSED, format!("worker {id} is disconnected"))),
            None => Err(Error::errno(libc::ESRCH, format!("no live worker with id {id}"))),
        }
    }

    /// `worker.send(message[, handle])`: `json` is any JSON text; `fd`, a socket to pass
    /// (duplicated: the caller keeps theirs). Queued in order behind a handle in flight.
    pub fn send(&self, id: u32, json: &str, fd: Option<std::os::fd::BorrowedFd<'_>>) -> Result<()> {
        self.connected_worker(id)?;
        let (line, fd) = crate::ipc::outbound::user_message(json, fd)?;
        self.command(Command::Send { id, line, fd });
        Ok(())
    }

    /// `worker.disconnect()`: the worker leaves `cluster.workers` and every server at once,
    /// is told to disconnect, closes its servers and its channel; `exitedAfterDisconnect`
    /// becomes true. A second call fails with `CLUSTER_E_CLOSED`.
    pub fn disconnect(&self, id: u32) -> Result<()> {
        {
            let mut table = self.shared.table.lock();
            match table.get_mut(&id) {
                Some(w) if w.connected && w.listed => {
                    w.exited_after_disconnect = true;
                }
                Some(_) => {
                    return Err(Error::new(crate::error::code::CLOSED, format!("worker {id} is already disconnecting or disconnected")));
                }
                None => return Err(Error::errno(libc::ESRCH, format!("no live worker with id {id}"))),
            }
        }
        self.shared.unlist(id);
        self.command(Command::Disconnect { id });
        Ok(())
    }

    /// Node's `worker.process.disconnect()`: closes the worker's channel at once, without
    /// the disconnect protocol. The worker sees its primary gone and exits (code 0); here
    /// it leaves every handle and `disconnect` follows, as on any channel close.
    pub fn close_channel(&self, id: u32) -> Result<()> {
        self.connected_worker(id)?;
        self.command(Command::CloseChannel { id });
        Ok(())
    }

    /// `cluster.disconnect()`: disconnects every connected worker. Returns how many.
    /// `Event::Drained` follows once `cluster.workers` is empty (at once if it is).
    pub fn disconnect_all(&self) -> usize {
        let ids: Vec<u32> = self.shared.table.lock().values().filter(|w| w.connected && w.listed).map(|w| w.id).collect();
        let n = ids.iter().filter(|&&id| self.disconnect(id).is_ok()).count();
        if n == 0 && self.worker_count() == 0 {
            self.shared.events.push(crate::event::Event::Drained);
        }
        n
    }
}
