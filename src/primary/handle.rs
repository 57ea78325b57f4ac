//! A server the primary holds for one key: round-robin, shared or reuseport, behind one
//! interface.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use super::reuseport::ReusePortHandle;
use super::round_robin::RoundRobinHandle;
use super::scheduler::{Scheduler, WorkerId};
use super::shared_handle::SharedHandle;
use crate::sys::fscred::Creds;
use crate::sys::socket;

#[derive(Debug)]
pub enum Handle {
    RoundRobin(RoundRobinHandle),
    Shared(SharedHandle),
    ReusePort(ReusePortHandle),
}

impl Handle {
    pub fn key(&self) -> &str {
        match self {
            Handle::RoundRobin(h) => &h.key,
            Handle::Shared(h) => &h.key,
            Handle::ReusePort(h) => &h.key,
        }
    }

    /// Detaches a worker. Returns true when no worker is left (the caller then closes the
    /// handle).
    pub fn remove(&mut self, w: WorkerId) -> bool {
        match self {
            Handle::RoundRobin(h) => h.remove(w).0,
            Handle::Shared(h) => h.remove(w),
            Handle::ReusePort(h) => h.remove(w).0,
        }
    }

    /// A round-robin or shared server with no worker attached: the primary may keep it
    /// bound for a replacement (supervision), its clients waiting in the backlog.
    pub fn held_idle(&self) -> bool {
        match self {
            Handle::RoundRobin(h) => h.sched.is_empty(),
            Handle::Shared(h) => h.is_empty(),
            Handle::ReusePort(_) => false,
        }
    }

    pub fn has(&self, w: WorkerId) -> bool {
        match self {
            Handle::RoundRobin(h) => h.has(w),
            Handle::Shared(h) => h.has(w),
            Handle::ReusePort(h) => h.has(w),
        }
    }

    /// Whose filesystem rights bind and remove this handle's Unix path.
    pub fn set_path_owner(&mut self, owner: Option<Creds>) {
        match self {
            Handle::RoundRobin(h) => h.path_owner = owner,
            Handle::Shared(h) => h.path_owner = owner,
            Handle::ReusePort(_) => {}
        }
    }

    pub fn path_owner(&self) -> Option<&Creds> {
        match self {
            Handle::RoundRobin(h) => h.path_owner.as_ref(),
            Handle::Shared(h) => h.path_owner.as_ref(),
            Handle::ReusePort(_) => None,
        }
    }

    pub fn unix_path(&self) -> Option<PathBuf> {
        match self {
            Handle::RoundRobin(h) => h.unix_path(),
            Handle::Shared(h) => h.unix_path(),
            Handle::ReusePort(h) => h.unix_path(),
        }
    }

    /// Whether the distributor has periodic work for this handle (lanes, rebalancing, or an
    /// accept to try again after it failed).
    pub fn ticks(&self) -> bool {
        match self {
            Handle::RoundRobin(h) => !h.lanes.is_empty() || h.sched.accept_paused(),
            Handle::ReusePort(h) => h.listeners.len() > 1 || h.sched.accept_paused(),
            Handle::Shared(_) => false,
        }
    }

    /// The scheduler of a handle whose connections pass through the primary.
    pub fn sched(&mut self) -> Option<&mut Scheduler<OwnedFd>> {
        match self {
            Handle::RoundRobin(h) => Some(&mut h.sched),
            Handle::ReusePort(h) => Some(&mut h.sched),
            Handle::Shared(_) => None,
        }
    }

    /// Accepts one connection for the primary to deal (`WouldBlock`: none waits).
    pub fn accept(&self) -> io::Result<OwnedFd> {
        match self {
            Handle::RoundRobin(h) => socket::accept(h.listener.as_fd(), h.accept_nonblocking.unwrap_or(true)),
            Handle::ReusePort(h) => h.accept(),
            Handle::Shared(_) => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
        }
    }
}
