//! The primary: forks workers and runs the distributor thread.
//!
//! Protocol (see `node-cluster-protocol.md` §5–§6): a worker sends `online`, then
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

#![forbid(unsafe_code)]

mod distributor;
mod handle;
mod lane;
mod messages;
pub mod reuseport;
pub mod round_robin;
pub mod scheduler;
pub mod shared_handle;
pub mod settings;
mod worker_conn;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::event::EventQueue;
use crate::sys::eventfd::EventFd;
use crate::sys::spawn::SpawnPlan;
use crate::sys::{pidfd, process};

use settings::Settings;

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
    pub stdio: [Option<Arc<OwnedFd>>; 3],
}

pub(crate) enum Command {
    Spawn { id: u32, plan: SpawnPlan, reply: mpsc::SyncSender<Result<i32>> },
    /// A complete line for worker `id`, with the fd it carries.
    Send { id: u32, line: Vec<u8>, fd: Option<OwnedFd> },
    /// Node's primary-side `worker.disconnect()`.
    Disconnect { id: u32 },
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
    /// SCHED_NONE (shared handles for TCP too) instead of round-robin; fixed at first fork.
    pub sched_none: std::sync::atomic::AtomicBool,
    /// The reuseport policy (one SO_REUSEPORT listener per worker) for TCP servers.
    pub reuseport: std::sync::atomic::AtomicBool,
    /// Addresses workers may ask us to bind; empty: any.
    pub allow: Mutex<Vec<AllowRule>>,
    /// Most connections in flight per libcluster worker (Node workers always get 1).
    pub max_in_flight: std::sync::atomic::AtomicUsize,
    /// Hand a connection to the worker with the fewest unanswered ones, instead of the
    /// longest idle.
    pub least_loaded: std::sync::atomic::AtomicBool,
    /// Grant the fast lane to libcluster workers that ask (`LIBCLUSTER_FAST_LANE=0`: no).
    pub fast_lane: std::sync::atomic::AtomicBool,
    /// Most connections waiting in one fast-lane worker's queue.
    pub lane_window: std::sync::atomic::AtomicUsize,
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
                        w.stdio = [None, None, None];
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
            && std::mem::replace(&mut info.listed, false) {
                self.check_drained(&table);
            }
    }

    fn check_drained(&self, table: &BTreeMap<u32, WorkerInfo>) {
        if !table.values().any(|w| w.listed) {
            self.events.push(crate::event::Event::Drained);
        }
    }
}

pub struct Primary {
    shared: Arc<Shared>,
    next_id: AtomicU32,
    started: Mutex<bool>,
    settings: Mutex<Settings>,
}

impl Primary {
    pub fn new(events: Arc<EventQueue>) -> Result<Primary> {
        let wake = EventFd::new().map_err(|e| Error::io("eventfd", e))?;
        Ok(Primary {
            shared: Arc::new(Shared {
                events,
                commands: Mutex::new(VecDeque::new()),
                wake,
                table: Mutex::new(BTreeMap::new()),
                retired: Mutex::new(BTreeMap::new()),
                allow: Mutex::new(Vec::new()),
                max_in_flight: std::sync::atomic::AtomicUsize::new(
                    std::env::var("LIBCLUSTER_MAX_INFLIGHT").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1),
                ),
                least_loaded: std::sync::atomic::AtomicBool::new(false),
                fast_lane: std::sync::atomic::AtomicBool::new(std::env::var("LIBCLUSTER_FAST_LANE").map_or(true, |v| v != "0")),
                lane_window: std::sync::atomic::AtomicUsize::new(
                    std::env::var("LIBCLUSTER_LANE_WINDOW").ok().and_then(|v| v.parse().ok()).unwrap_or(16).clamp(1, 1024),
                ),
                sched_none: std::sync::atomic::AtomicBool::new(
                    std::env::var("NODE_CLUSTER_SCHED_POLICY").is_ok_and(|v| v == "none"),
                ),
                reuseport: std::sync::atomic::AtomicBool::new(
                    std::env::var("NODE_CLUSTER_SCHED_POLICY").is_ok_and(|v| v == "reuseport"),
                ),
            }),
            next_id: AtomicU32::new(1),
            started: Mutex::new(false),
            settings: Mutex::new(Settings::default()),
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
        self.ensure_started()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let settings = self.settings.lock().clone();
        let plan = build_plan(id, &settings, extra_env)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.command(Command::Spawn { id, plan, reply: tx });
        rx.recv().map_err(|_| Error::protocol("distributor thread is gone"))??;
        Ok(id)
    }

    /// Node's `setupPrimary`: changes what later forks run (fields left `None` are kept).
    pub fn setup(&self, update: Settings) {
        self.settings.lock().merge(update);
    }

    pub fn settings(&self) -> Settings {
        self.settings.lock().clone()
    }

    /// Adds an entry to the bind allowlist: once it has any, a `queryServer` for an address
    /// it does not list is refused with `EACCES`.
    pub fn allow_bind(&self, rule: AllowRule) {
        self.shared.allow.lock().push(rule);
    }

    /// Connections in flight per libcluster worker (1: Node's one-at-a-time).
    pub fn set_max_in_flight(&self, n: usize) {
        self.shared.max_in_flight.store(n.max(1), Ordering::Relaxed);
    }

    /// The least-loaded policy (fewest unanswered connections) instead of round-robin.
    pub fn set_least_loaded(&self, on: bool) {
        self.shared.least_loaded.store(on, Ordering::Relaxed);
    }

    /// Sets the scheduling policy. Fixed once a worker exists.
    pub fn set_sched_policy(&self, policy: SchedPolicy) -> Result<()> {
        if self.next_id.load(Ordering::Relaxed) > 1 {
            return Err(Error::errno(libc::EBUSY, "the scheduling policy is fixed once the first worker is forked"));
        }
        self.shared.sched_none.store(policy == SchedPolicy::None, Ordering::Relaxed);
        self.shared.reuseport.store(policy == SchedPolicy::ReusePort, Ordering::Relaxed);
        Ok(())
    }

    /// Node's two policies: `none` (shared handles) or round-robin.
    pub fn set_sched_none(&self, none: bool) -> Result<()> {
        self.set_sched_policy(if none { SchedPolicy::None } else { SchedPolicy::RoundRobin })
    }

    pub fn sched_policy(&self) -> SchedPolicy {
        if self.shared.sched_none.load(Ordering::Relaxed) {
            SchedPolicy::None
        } else if self.shared.reuseport.load(Ordering::Relaxed) {
            SchedPolicy::ReusePort
        } else {
            SchedPolicy::RoundRobin
        }
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
        self.shared
            .table
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::errno(libc::ESRCH, format!("no worker with id {id} in the table")))
    }

    /// A worker that is alive or connected, or one that has gone (then `dead`).
    pub fn worker(&self, id: u32) -> Result<WorkerInfo> {
        if let Some(w) = self.shared.table.lock().get(&id) {
            return Ok(w.clone());
        }
        self.shared
            .retired
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::errno(libc::ESRCH, format!("no worker with id {id}")))
    }

    pub fn worker_count(&self) -> usize {
        self.shared.table.lock().values().filter(|w| w.listed).count()
    }

    /// Whether any worker process is still being watched (alive or not yet reaped), or
    /// `events_pending` says events wait; checked under the table lock, which the
    /// distributor holds while it retires a worker and queues its last event.
    pub fn has_workers_or(&self, events_pending: impl FnOnce() -> bool) -> bool {
        let table = self.shared.table.lock();
        !table.is_empty() || events_pending()
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
        let line = crate::ipc::message::user_line(json)?;
        let (line, fd) = match fd {
            None => (line, None),
            Some(fd) => {
                let (dup, ty) = crate::handle::prepare(fd)?;
                let mut env = Vec::with_capacity(line.len() + 64);
                crate::ipc::wire::handle_envelope(&mut env, ty, &line);
                (env, Some(dup))
            }
        };
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
                Some(_) => return Err(Error::new(crate::error::code::CLOSED, format!("worker {id} is already disconnecting or disconnected"))),
                None => return Err(Error::errno(libc::ESRCH, format!("no live worker with id {id}"))),
            }
        }
        self.shared.unlist(id);
        self.command(Command::Disconnect { id });
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

/// Builds the worker's command line before anything forks (house style P2): this program's
/// executable and argv, our environment plus `extra_env`, then `NODE_UNIQUE_ID`,
/// `NODE_CHANNEL_FD=3` and `NODE_CHANNEL_SERIALIZATION_MODE=json`, in Node's order (§2.1).
fn build_plan(id: u32, settings: &Settings, extra_env: &[(OsString, OsString)]) -> Result<SpawnPlan> {
    let (mut exe, mut args) = process::current_command().map_err(|e| Error::io("read /proc/self", e))?;
    if let Some(prog) = &settings.exec {
        exe = settings::resolve_program(prog)
            .ok_or_else(|| Error::errno(libc::ENOENT, format!("exec {:?} was not found", prog)))?;
        args = vec![prog.clone()];
    }
    if let Some(extra) = &settings.args {
        args.truncate(1);
        args.extend(extra.iter().cloned());
    }
    let cstr = |s: &[u8]| {
        CString::new(s).map_err(|_| Error::errno(libc::EINVAL, "argument or environment entry contains NUL"))
    };
    let internal = ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"];
    let mut env: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !internal.iter().any(|i| k == i)).collect();
    for (k, v) in settings.env.iter().flatten().chain(extra_env) {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env.push(("NODE_UNIQUE_ID".into(), id.to_string().into()));
    env.push(("NODE_CHANNEL_FD".into(), "3".into()));
    env.push(("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into()));
    let envp = env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SpawnPlan {
        path: cstr(exe.as_os_str().as_bytes())?,
        argv: args.iter().map(|a| cstr(a.as_bytes())).collect::<Result<Vec<_>>>()?,
        envp,
        cwd: settings.cwd.as_ref().map(|c| cstr(c.as_os_str().as_bytes())).transpose()?,
        uid: settings.uid,
        gid: settings.gid,
        stdio: settings.stdio(),
        parent_death_signal: libc::SIGTERM,
    })
}
