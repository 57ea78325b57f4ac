//! The library's calls, whatever this process's role: the one place that decides what a call
//! means in the primary and in a worker. `src/capi` translates C arguments to these and
//! results to codes; it never looks at the role itself.
//!
//! Worker ids are `i32` as the user gives them: 1, 2, ... name a worker (primary only);
//! 0 names the peer (a worker's primary) or this worker, where a call allows it.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::address::Target;
use crate::context::{self, Role};
use crate::error::{Error, Result};
use crate::event::{Event, EventQueue};
use crate::primary::settings::Settings;
use crate::primary::stats::{ClusterStats, WorkerStats};
use crate::primary::supervisor::Control;
use crate::primary::supervisor::policy::Policy;
use crate::primary::{AllowRule, WorkerInfo};
use crate::worker::Server;
use crate::worker::server::ServerOptions;

fn no_worker(id: i32) -> Error {
    Error::errno(libc::ESRCH, format!("no worker with id {id}"))
}

/// `id` as a worker id (`ESRCH` for 0 and below).
fn worker_id(id: i32) -> Result<u32> {
    u32::try_from(id).ok().filter(|&n| n > 0).ok_or_else(|| no_worker(id))
}

// ---- role

/// Whether this process is a worker (`NODE_UNIQUE_ID` was set), decided without starting
/// anything.
pub fn is_worker() -> bool {
    context::is_worker()
}

/// Whether this process is the primary.
pub fn is_primary() -> bool {
    !context::is_worker()
}

/// Starts the library (in a worker: takes the channel and says `online`).
pub fn start() -> Result<()> {
    context::get().map(|_| ())
}

/// This worker's id (`WRONG_ROLE` in the primary).
pub fn worker_self_id() -> Result<u32> {
    context::worker().map(|w| w.id())
}

// ---- events

/// This process's event queue.
pub fn events() -> Result<&'static EventQueue> {
    context::get().map(|c| &*c.events)
}

/// Whether `ev` is the last event this process can get: a worker's DISCONNECT (its
/// channel to the primary is closed).
pub fn is_last_event(ev: &Event) -> bool {
    matches!(ev, Event::Disconnect { .. }) && context::is_worker()
}

/// Whether the blocking loop has nothing left to wait for. Primary: no worker is watched
/// and no event waits. Worker: its last event was dispatched (`last_dispatched`) and no
/// event waits.
pub fn run_finished(last_dispatched: bool) -> Result<bool> {
    let ctx = context::get()?;
    Ok(match &ctx.role {
        Role::Primary(p) => !p.has_workers_or(|| !ctx.events.is_empty()),
        Role::Worker(_) => last_dispatched && ctx.events.is_empty(),
    })
}

// ---- messages and channels, both roles

/// `worker.send()` in the primary (`to` a worker id), `process.send()` in a worker (`to`
/// must be 0: the primary). `fd` is duplicated; the caller keeps it.
pub fn send(to: i32, json: &str, fd: Option<BorrowedFd<'_>>) -> Result<()> {
    match &context::get()?.role {
        Role::Primary(p) => p.send(worker_id(to)?, json, fd),
        Role::Worker(w) if to == 0 => w.send(json, fd),
        Role::Worker(_) => Err(Error::errno(libc::EINVAL, "in a worker, messages go to the primary: worker_id must be 0")),
    }
}

/// Node's `worker.process.disconnect()` in the primary (worker `id`), or
/// `process.disconnect()` in a worker (`id` 0).
pub fn close_channel(id: i32) -> Result<()> {
    if id == 0
        && let Ok(w) = context::worker()
    {
        return w.close_channel();
    }
    let id = worker_id(id)?;
    context::primary()?.close_channel(id)
}

/// Node's `worker.isConnected()`: in the primary for worker `id`, in a worker for its own
/// channel (`id` 0).
pub fn is_connected(id: i32) -> Result<bool> {
    if id == 0
        && let Ok(w) = context::worker()
    {
        return Ok(w.is_connected());
    }
    worker_info(id).map(|w| w.connected)
}

// ---- servers, both roles

/// A server on `target`: in a worker, the primary's (`queryServer`) unless `exclusive`;
/// in the primary, or exclusive, bound here.
pub fn get_server(target: &Target, opts: ServerOptions) -> Result<Server> {
    match &context::get()?.role {
        Role::Worker(w) if !opts.exclusive => Server::query(w, target, opts),
        _ => Server::bind_local(target, opts),
    }
}

// ---- the primary's calls

/// Forks a worker with `env` added to our environment and `unset` left out of it.
pub fn fork(env: &[(OsString, OsString)], unset: &[OsString]) -> Result<u32> {
    context::primary()?.fork_env(env, unset)
}

/// Validates and applies a settings update, all or nothing (`Primary::setup`).
pub fn setup(update: Settings) -> Result<()> {
    context::primary()?.setup(update)
}

pub fn allow_bind(rule: AllowRule) -> Result<()> {
    context::primary()?.allow_bind(rule);
    Ok(())
}

pub fn kill(id: i32, signal: i32) -> Result<()> {
    let id = worker_id(id)?;
    context::primary()?.kill(id, signal)
}

pub fn worker_count() -> Result<usize> {
    context::primary().map(|p| p.worker_count())
}

/// The ids in `cluster.workers`, ascending.
pub fn worker_ids() -> Result<Vec<u32>> {
    context::primary().map(|p| p.worker_ids())
}

/// The pid of a worker in the table.
pub fn worker_pid(id: i32) -> Result<i32> {
    let id = worker_id(id)?;
    context::primary()?.live_worker(id).map(|w| w.pid)
}

/// What the primary knows of worker `id`, also after it is gone.
pub fn worker_info(id: i32) -> Result<WorkerInfo> {
    let id = worker_id(id)?;
    context::primary()?.worker(id)
}

/// A new close-on-exec duplicate of the primary's end of worker `id`'s fd `n` when
/// settings made it a pipe.
pub fn worker_stdio(id: i32, n: usize) -> Result<OwnedFd> {
    let w = worker_info(id)?;
    let fd = w
        .stdio
        .get(n)
        .and_then(Option::as_ref)
        .ok_or_else(|| Error::errno(libc::ENOENT, format!("stdio {n} of worker {id} is not a pipe")))?;
    crate::sys::fd::dup_cloexec_min(fd.as_ref().as_fd(), 0).map_err(|e| Error::io("dup", e))
}

/// Node's `worker.disconnect()` in the primary.
pub fn disconnect_worker(id: i32) -> Result<()> {
    let id = worker_id(id)?;
    context::primary()?.disconnect(id)
}

/// Node's `cluster.disconnect()`: `before` runs once the role is checked, before any
/// worker is told (the caller registers what runs on `Event::Drained` there). Returns how
/// many workers were told.
pub fn disconnect_all(before: impl FnOnce()) -> Result<usize> {
    let p = context::primary()?;
    before();
    Ok(p.disconnect_all())
}

/// A hot upgrade of the primary (`Primary::upgrade`): the new primary's pid.
pub fn upgrade(timeout_ms: u64) -> Result<i32> {
    context::primary()?.upgrade(timeout_ms)
}

/// Whether this primary was started by a hot upgrade.
pub fn is_upgrade() -> Result<bool> {
    Ok(context::primary()?.is_upgrade())
}

/// systemd socket activation (`Primary::listen_fds`).
pub fn listen_fds() -> Result<usize> {
    context::primary()?.listen_fds()
}

/// systemd notifications from the primary (`Primary::systemd`): `flags` are
/// `primary::notify::{NOTIFY, WATCHDOG, FDSTORE}`. Whether anything will be sent.
pub fn systemd(flags: u32) -> Result<bool> {
    context::primary()?.systemd(flags)
}

/// A raw `sd_notify`, in any process and role: whether it was sent (false: no
/// `NOTIFY_SOCKET`).
pub fn notify(state: &str) -> Result<bool> {
    let target = crate::sys::notify::Target::from_env().map_err(|e| Error::io("NOTIFY_SOCKET", e))?;
    let Some(target) = target else { return Ok(false) };
    crate::sys::notify::send(&target, state.as_bytes(), &[]).map_err(|e| Error::io("send to NOTIFY_SOCKET", e))?;
    Ok(true)
}

/// HAProxy's agent check answered on `address`:`port` (`primary::agent`); the bound port.
pub fn agent_listen(address: Option<&str>, port: i32) -> Result<u16> {
    let port = u16::try_from(port).map_err(|_| Error::errno(libc::EINVAL, format!("agent port {port} is not 0..65535")))?;
    let p = context::primary()?;
    // A hot upgrade's new primary: the old one passed its agent socket (taken, not bound).
    let inherited = if port != 0 { p.take_inherited(&crate::primary::agent::target(address, port)?) } else { None };
    crate::primary::agent::listen(address, port, inherited)
}

// ---- supervision (the primary's), see `primary::supervisor`

pub fn supervise(policy: Policy) -> Result<()> {
    context::primary()?.supervise(policy)
}

pub fn rolling_restart(surge: usize) -> Result<u32> {
    context::primary()?.rolling_restart(surge)
}

pub fn scale(workers: usize) -> Result<()> {
    context::primary()?.scale(workers)
}

pub fn drain_worker(id: i32) -> Result<()> {
    let id = worker_id(id)?;
    context::primary()?.drain(id)
}

pub fn reset_breaker() -> Result<()> {
    context::primary()?.reset_breaker()
}

/// Runs what signal action `action` does, now (as if its signal had come).
pub fn control(action: Control) -> Result<()> {
    context::primary()?.control(action, 0)
}

pub fn stats() -> Result<ClusterStats> {
    context::primary()?.stats()
}

/// One worker's figures, alive or among the recently gone.
pub fn worker_stats(id: i32) -> Result<WorkerStats> {
    let id = worker_id(id)?;
    stats()?.per_worker.into_iter().find(|w| w.id == id).ok_or_else(|| no_worker(id as i32))
}

/// Maps a signal to a supervision action (`signals::map`); in the primary only.
pub fn signal_map(signo: i32, action: i32) -> Result<()> {
    context::primary()?;
    crate::signals::map(signo, action)
}

/// Installs handlers for the default mapping's signals (`install` does it), in the primary.
pub fn install_signal_handlers(install: impl FnOnce(&[i32]) -> std::io::Result<()>) -> Result<()> {
    context::primary()?;
    install(&crate::signals::DEFAULT_SIGNALS).map_err(|e| Error::io("sigaction", e))
}

/// How the library ends the process from its own thread (`sys::process::set_quick_exit`).
pub fn set_quick_exit(on: bool) {
    crate::sys::process::set_quick_exit(on)
}

// ---- a worker's calls

/// `cluster_worker_ready()`: tells a supervising primary this worker is ready.
pub fn worker_ready() -> Result<()> {
    context::worker()?.ready()
}

/// Whether this worker is draining (answer `Connection: close`).
pub fn worker_draining() -> Result<bool> {
    context::worker().map(|w| w.draining())
}

/// Node's `cluster.worker.disconnect()` in a worker.
pub fn worker_disconnect() -> Result<()> {
    context::worker()?.disconnect()
}

pub fn keep_channel(on: bool) -> Result<()> {
    context::worker().map(|w| w.keep_channel(on))
}

/// Node's `cluster.worker.destroy()` in a worker: does not return there.
pub fn worker_destroy() -> Result<std::convert::Infallible> {
    context::worker()?.destroy()
}

#[cfg(test)]
mod tests {
    /// The C layer only translates: it never reaches the role (or the context that holds
    /// it) past this façade.
    #[test]
    fn capi_does_not_dispatch_on_the_role() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/capi");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for needle in ["crate::context", "context::", "Role::", "Role}", "Role,"] {
                    assert!(!text.contains(needle), "{} uses {needle:?}: go through crate::api", path.display());
                }
                seen += 1;
            }
        }
        assert!(seen >= 6, "src/capi has {seen} files");
    }

    #[test]
    fn ids_below_one_are_no_worker() {
        for id in [0, -1, i32::MIN] {
            assert_eq!(super::worker_id(id).unwrap_err().code, -libc::ESRCH);
        }
        assert_eq!(super::worker_id(7).unwrap(), 7);
    }
}
