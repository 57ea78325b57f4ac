//! The reuseport policy's handle (libcluster's, not Node's): one `SO_REUSEPORT` listener per
//! worker, created by the primary, so the kernel deals connections with no primary on the
//! path. To a worker it is a shared handle (Node's `SharedHandle` reply), so Node workers
//! work under it too.
//!
//! The primary keeps its copy of every listener, so nothing is lost: a listener whose
//! worker left (died, closed its server, disconnected) stays in the group as an orphan; the
//! primary accepts its connections and deals them to the other workers (Node's `newconn`,
//! which both kinds of worker take for a shared server), until a new worker takes the
//! orphan over. The distributor also moves queued connections off a worker whose accept
//! queue grows while another's is empty.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use super::scheduler::{Path, Scheduler, WorkerId};
use crate::sys::socket::{self, Addr, ListenOpts};

/// Connections at least this deep in one worker's accept queue, with another's empty,
/// are moved.
pub(crate) const REBALANCE_MIN: usize = 2;

#[derive(Debug)]
pub struct ReusePortHandle {
    pub key: String,
    pub bound: Addr,
    pub data: String,
    opts: ListenOpts,
    /// Each worker's listener (the primary's copy of it).
    pub listeners: HashMap<WorkerId, OwnedFd>,
    /// Listeners whose worker left: the primary accepts from them until one is taken over.
    pub orphans: Vec<OwnedFd>,
    /// Deals what the primary accepts (from orphans, or moved off a busy worker).
    pub sched: Scheduler<OwnedFd>,
}

impl ReusePortHandle {
    /// `first` is the group's first listener, bound to `bound`; it waits as an orphan for
    /// the first worker.
    pub fn new(key: String, first: OwnedFd, bound: Addr, data: String, opts: ListenOpts) -> ReusePortHandle {
        ReusePortHandle { key, bound, data, opts, listeners: HashMap::new(), orphans: vec![first], sched: Scheduler::new(false) }
    }

    /// Attaches a worker with a listener of its own: an orphan if one waits (it takes it
    /// over, connections queued included), else a new one in the group. Returns the listener
    /// and whether it was an orphan (the caller stops watching it).
    pub fn add(&mut self, w: WorkerId, max_in_flight: usize) -> io::Result<(&OwnedFd, bool)> {
        if self.listeners.contains_key(&w) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let (l, was_orphan) = match self.orphans.pop() {
            Some(l) => (l, true),
            None => (socket::bind_stream(&self.bound, self.opts)?, false),
        };
        self.sched.add(w, Path::Node { max: max_in_flight });
        Ok((self.listeners.entry(w).or_insert(l), was_orphan))
    }

    /// Detaches a worker; its listener becomes an orphan (returned, for the caller to
    /// watch). Returns true too when no worker is left (the caller closes the handle).
    pub fn remove(&mut self, w: WorkerId) -> (bool, Option<&OwnedFd>) {
        self.sched.remove(w);
        let orphan = self.listeners.remove(&w).map(|l| {
            self.orphans.push(l);
            self.orphans.last()
        });
        (self.sched.is_empty(), orphan.flatten())
    }

    pub fn has(&self, w: WorkerId) -> bool {
        self.sched.has(w)
    }

    /// Accepts one connection from the orphans (`WouldBlock` when none waits).
    pub fn accept(&self) -> io::Result<OwnedFd> {
        for l in &self.orphans {
            match socket::accept(l.as_fd(), true) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
        Err(io::Error::from_raw_os_error(libc::EAGAIN))
    }

    /// Which worker's queued connections should move, and to whom: the deepest accept
    /// queue (at least `REBALANCE_MIN`) and an idle worker (empty queue, nothing forwarded
    /// in flight). Returns `(from, to, how many)`.
    pub fn rebalance(&self, depth: impl Fn(&OwnedFd) -> usize) -> Option<(WorkerId, WorkerId, usize)> {
        if self.listeners.len() < 2 {
            return None;
        }
        let depths: Vec<(WorkerId, usize)> = self.listeners.iter().map(|(&w, l)| (w, depth(l))).collect();
        let &(from, deep) = depths.iter().max_by_key(|(_, d)| *d)?;
        let &(to, _) = depths.iter().find(|(w, d)| *d == 0 && *w != from && self.sched.load(*w) == 0)?;
        (deep >= REBALANCE_MIN).then_some((from, to, deep / 2))
    }

    pub fn unix_path(&self) -> Option<PathBuf> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn orphans_are_taken_over_and_deep_queues_move_to_an_idle_worker() {
        let opts = ListenOpts { backlog: Some(16), ipv6_only: false, reuse_port: true };
        let target = crate::address::Target::from_user(Some("127.0.0.1"), 0).unwrap();
        let (first, bound) = target.bind_with(opts).unwrap();
        let first_raw = first.as_raw_fd();
        let mut h = ReusePortHandle::new("k".into(), first, bound, "null".into(), opts);
        let (l1, orphan) = h.add(1, 1).unwrap();
        assert!(orphan && l1.as_raw_fd() == first_raw, "the first worker takes the first listener");
        let (_, orphan) = h.add(2, 1).unwrap();
        assert!(!orphan);
        let raw = |w: WorkerId, h: &ReusePortHandle| h.listeners[&w].as_raw_fd();
        let (r1, r2) = (raw(1, &h), raw(2, &h));
        let depth = |d1: usize, d2: usize| {
            move |l: &OwnedFd| {
                if l.as_raw_fd() == r1 {
                    d1
                } else if l.as_raw_fd() == r2 {
                    d2
                } else {
                    0
                }
            }
        };
        assert_eq!(h.rebalance(depth(6, 0)), Some((1, 2, 3)));
        assert_eq!(h.rebalance(depth(1, 0)), None, "too shallow to move");
        assert_eq!(h.rebalance(depth(4, 1)), None, "nobody idle");
        h.sched.assigned(2);
        assert_eq!(h.rebalance(depth(6, 0)), None, "what was moved is not yet answered");
        // Worker 1 leaves: its listener waits as an orphan, then worker 3 takes it over.
        let (last, orphan) = h.remove(1);
        assert!(!last && orphan.map(|l| l.as_raw_fd()) == Some(r1));
        let (l3, orphan) = h.add(3, 1).unwrap();
        assert!(orphan && l3.as_raw_fd() == r1);
        assert!(h.orphans.is_empty());
        assert!(!h.remove(2).0);
        assert!(h.remove(3).0, "the last one out");
    }
}
