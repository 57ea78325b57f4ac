//! Node's `RoundRobinHandle` (§6.4): the primary binds and listens once; accepted
//! connections go to the worker that has been idle longest, one in flight per worker.
//!
//! Unlike Node, connections are not accepted ahead of demand: the listener is edge-triggered
//! and we accept only when a worker is free, so waiting connections stay in the kernel's
//! backlog (back-pressure) and `queue` holds only connections handed back by a refusal or a
//! dead worker.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::sys::socket::Addr;

pub type WorkerId = u32;

#[derive(Debug)]
pub struct RoundRobinHandle {
    pub key: String,
    pub listener: OwnedFd,
    pub bound: Addr,
    /// The handle's `data` (raw JSON), from the first worker's query.
    pub data: String,
    all: Vec<WorkerId>,
    free: VecDeque<WorkerId>,
    /// Connections waiting for a free worker (returned ones first).
    pub queue: VecDeque<OwnedFd>,
    /// The listener may have connections waiting (edge-triggered readiness not yet drained).
    pub backlog_ready: bool,
}

impl RoundRobinHandle {
    pub fn new(key: String, listener: OwnedFd, bound: Addr, data: String) -> RoundRobinHandle {
        RoundRobinHandle {
            key,
            listener,
            bound,
            data,
            all: Vec::new(),
            free: VecDeque::new(),
            queue: VecDeque::new(),
            backlog_ready: true,
        }
    }

    /// Attaches a worker (idle). Returns false if it was attached already.
    pub fn add(&mut self, w: WorkerId) -> bool {
        if self.all.contains(&w) {
            return false;
        }
        self.all.push(w);
        self.free.push_back(w);
        true
    }

    /// Detaches a worker. Returns true when no worker is left (the caller closes the handle).
    pub fn remove(&mut self, w: WorkerId) -> bool {
        self.all.retain(|&x| x != w);
        self.free.retain(|&x| x != w);
        self.all.is_empty()
    }

    pub fn has(&self, w: WorkerId) -> bool {
        self.all.contains(&w)
    }

    pub fn workers(&self) -> &[WorkerId] {
        &self.all
    }

    /// The worker is done with its connection: it becomes the most recently idle.
    pub fn set_free(&mut self, w: WorkerId) {
        if self.all.contains(&w) && !self.free.contains(&w) {
            self.free.push_back(w);
        }
    }

    /// Takes the longest-idle worker, if any.
    pub fn take_free(&mut self) -> Option<WorkerId> {
        self.free.pop_front()
    }

    /// Takes the free worker with the lowest `load` (the longest idle among equals): the
    /// least-loaded policy.
    pub fn take_least_loaded(&mut self, load: impl Fn(WorkerId) -> usize) -> Option<WorkerId> {
        let best = (0..self.free.len()).min_by_key(|&i| load(self.free[i]))?;
        self.free.remove(best)
    }

    /// Puts a worker back at the head (no connection was available for it after all).
    pub fn untake(&mut self, w: WorkerId) {
        self.free.push_front(w);
    }

    /// The Unix socket path to unlink when the handle closes.
    pub fn unix_path(&self) -> Option<PathBuf> {
        match &self.bound {
            Addr::Unix(p) => Some(p.clone()),
            Addr::Inet(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> RoundRobinHandle {
        let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        RoundRobinHandle::new("k".into(), fd, Addr::Unix("x".into()), "null".into())
    }

    #[test]
    fn longest_idle_first_and_removal() {
        let mut h = handle();
        assert!(h.add(1) && h.add(2) && h.add(3));
        assert!(!h.add(2));
        assert_eq!(h.take_free(), Some(1));
        assert_eq!(h.take_free(), Some(2));
        h.set_free(1);
        assert_eq!(h.take_free(), Some(3));
        assert_eq!(h.take_free(), Some(1));
        assert_eq!(h.take_free(), None);
        h.set_free(2);
        h.set_free(1);
        h.set_free(3);
        let load = |w: WorkerId| if w == 2 { 3 } else { 1 };
        assert_eq!(h.take_least_loaded(load), Some(1));
        assert_eq!(h.take_least_loaded(load), Some(3));
        assert_eq!(h.take_least_loaded(load), Some(2));
        h.set_free(2);
        assert!(!h.remove(2));
        assert_eq!(h.take_free(), None);
        assert!(!h.remove(1));
        assert!(h.remove(3));
    }
}
