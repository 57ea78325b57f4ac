//! Node's `SharedHandle` (§6.5): SCHED_NONE and every UDP server. The primary binds (TCP:
//! without listening) and sends the socket itself to each worker, which listens and accepts
//! on its own; the primary keeps its copy until the last worker leaves.

#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use super::scheduler::WorkerId;
use crate::sys::fscred::Creds;
use crate::sys::socket::Addr;

#[derive(Debug)]
pub struct SharedHandle {
    pub key: String,
    pub sock: OwnedFd,
    pub bound: Addr,
    pub data: String,
    pub udp: bool,
    all: Vec<WorkerId>,
    /// A Unix path's owner: the filesystem rights it was bound with and is removed with.
    pub path_owner: Option<Creds>,
}

impl SharedHandle {
    pub fn new(key: String, sock: OwnedFd, bound: Addr, data: String, udp: bool) -> SharedHandle {
        SharedHandle { key, sock, bound, data, udp, all: Vec::new(), path_owner: None }
    }

    pub fn add(&mut self, w: WorkerId) -> bool {
        if self.all.contains(&w) {
            return false;
        }
        self.all.push(w);
        true
    }

    /// Returns true when no worker is left.
    pub fn remove(&mut self, w: WorkerId) -> bool {
        self.all.retain(|&x| x != w);
        self.all.is_empty()
    }

    pub fn has(&self, w: WorkerId) -> bool {
        self.all.contains(&w)
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn unix_path(&self) -> Option<PathBuf> {
        match &self.bound {
            Addr::Unix(p) => Some(p.clone()),
            Addr::Inet(_) => None,
        }
    }
}
