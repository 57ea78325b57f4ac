//! Node's `RoundRobinHandle` (§6.4): the primary binds and listens once and deals accepted
//! connections to workers. The decisions are the `Scheduler`'s; this holds what they act
//! on: the listener, and each fast-lane worker's lane.
//!
//! Unlike Node, connections are not accepted ahead of demand: the listener is edge-triggered
//! and we accept only while a worker has room, so waiting connections stay in the kernel's
//! backlog (back-pressure); the scheduler holds only connections handed back.

#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use super::id_map::IdMap;
use super::lane::Lane;
use super::scheduler::{Path, Scheduler, WorkerId};
use crate::sys::fscred::Creds;
use crate::sys::socket::Addr;

#[derive(Debug)]
pub struct RoundRobinHandle {
    pub key: String,
    pub listener: OwnedFd,
    pub bound: Addr,
    /// The handle's `data` (raw JSON), from the first worker's query.
    pub data: String,
    pub sched: Scheduler<OwnedFd>,
    /// Fast-lane workers' lanes.
    pub lanes: IdMap<Lane>,
    /// Accept connections non-blocking (what the first fast-lane worker asked).
    pub accept_nonblocking: Option<bool>,
    /// A Unix path's owner: the filesystem rights it was bound with and is removed with.
    pub path_owner: Option<Creds>,
}

impl RoundRobinHandle {
    pub fn new(key: String, listener: OwnedFd, bound: Addr, data: String, least_loaded: bool) -> RoundRobinHandle {
        RoundRobinHandle {
            key,
            listener,
            bound,
            data,
            sched: Scheduler::new(least_loaded),
            lanes: IdMap::default(),
            accept_nonblocking: None,
            path_owner: None,
        }
    }

    /// Attaches a worker, on its lane when it has one. False if attached already.
    pub fn add(&mut self, w: WorkerId, path: Path, lane: Option<Lane>) -> bool {
        if !self.sched.add(w, path) {
            return false;
        }
        if let Some(l) = lane {
            self.accept_nonblocking.get_or_insert(l.nonblocking);
            self.lanes.insert(w, l);
        }
        true
    }

    /// Detaches a worker; what its lane still held goes back to the scheduler. Returns
    /// whether no worker is left (the caller closes the handle) and how many came back.
    pub fn remove(&mut self, w: WorkerId) -> (bool, usize) {
        self.sched.remove(w);
        let mut returned = 0;
        if let Some(l) = self.lanes.remove(&w) {
            let back = l.close();
            returned = back.len();
            for c in back.into_iter().rev() {
                self.sched.give_back(c);
            }
        }
        (self.sched.is_empty(), returned)
    }

    pub fn has(&self, w: WorkerId) -> bool {
        self.sched.has(w)
    }

    /// The Unix socket path to unlink when the handle closes.
    pub fn unix_path(&self) -> Option<PathBuf> {
        match &self.bound {
            Addr::Unix(p) => Some(p.clone()),
            Addr::Inet(_) => None,
        }
    }
}
