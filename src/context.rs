//! The process's cluster role and its one-time start-up.
//!
//! A process is a worker iff `NODE_UNIQUE_ID` is in its environment when the library is
//! first used (§1). The role is decided once; the worker's start-up (online, channel reader)
//! runs on the first call into the library.

#![forbid(unsafe_code)]

use std::sync::Arc;

use once_cell::sync::OnceCell;

use crate::error::{Error, Result, code};
use crate::event::EventQueue;
use crate::primary::Primary;
use crate::sys::process;
use crate::worker::Worker;

pub enum Role {
    Primary(Primary),
    Worker(Worker),
}

pub struct Context {
    pub pid: i32,
    pub events: Arc<EventQueue>,
    pub role: Role,
}

static CONTEXT: OnceCell<std::result::Result<Context, Error>> = OnceCell::new();
/// Decided before start-up removes `NODE_UNIQUE_ID` from the environment.
static IS_WORKER: OnceCell<bool> = OnceCell::new();

fn decide_role() -> bool {
    *IS_WORKER.get_or_init(|| {
        let worker = std::env::var_os("NODE_UNIQUE_ID").is_some();
        crate::signals::set_role(!worker);
        worker
    })
}

fn init() -> std::result::Result<Context, Error> {
    let events = Arc::new(EventQueue::new().map_err(|e| Error::io("eventfd", e))?);
    let pid = process::getpid();
    let role = match std::env::var("NODE_UNIQUE_ID") {
        Ok(id) => {
            let id = id.trim().parse::<u32>().unwrap_or(0);
            let chan = std::env::var("NODE_CHANNEL_FD").ok();
            let mode = std::env::var("NODE_CHANNEL_SERIALIZATION_MODE").unwrap_or_else(|_| "json".into());
            if mode != "json" {
                return Err(Error::new(code::UNSUPPORTED, format!("serialization {mode:?} is not supported (only json)")));
            }
            Role::Worker(Worker::start(id, chan.as_deref(), events.clone())?)
        }
        Err(_) => Role::Primary(Primary::new(events.clone())?),
    };
    Ok(Context { pid, events, role })
}

/// The context, started on first use. Fails in a process forked from the one that started
/// it (`CLUSTER_E_FORKED`, house style P2) or if the worker start-up failed.
pub fn get() -> Result<&'static Context> {
    decide_role();
    let ctx = CONTEXT.get_or_init(init).as_ref().map_err(Clone::clone)?;
    if ctx.pid != process::getpid() {
        return Err(Error::new(code::FORKED, "process was forked after libcluster started; use it from the original process"));
    }
    Ok(ctx)
}

pub fn primary() -> Result<&'static Primary> {
    match &get()?.role {
        Role::Primary(p) => Ok(p),
        Role::Worker(_) => Err(Error::new(code::WRONG_ROLE, "only the primary can do this; this process is a worker")),
    }
}

pub fn worker() -> Result<&'static Worker> {
    match &get()?.role {
        Role::Worker(w) => Ok(w),
        Role::Primary(_) => Err(Error::new(code::WRONG_ROLE, "only a worker can do this; this process is the primary")),
    }
}

/// Whether this process is a worker, decided without starting anything.
pub fn is_worker() -> bool {
    decide_role()
}
