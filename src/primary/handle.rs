//! A server the primary holds for one key: round-robin or shared, behind one interface.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use super::round_robin::RoundRobinHandle;
use super::scheduler::WorkerId;
use super::shared_handle::SharedHandle;

#[derive(Debug)]
pub enum Handle {
    RoundRobin(RoundRobinHandle),
    Shared(SharedHandle),
}

impl Handle {
    pub fn key(&self) -> &str {
        match self {
            Handle::RoundRobin(h) => &h.key,
            Handle::Shared(h) => &h.key,
        }
    }

    /// Whether any worker takes this handle's connections on a fast lane.
    pub fn has_lanes(&self) -> bool {
        matches!(self, Handle::RoundRobin(h) if !h.lanes.is_empty())
    }

    /// Returns true when no worker is left (the caller then closes the handle).
    pub fn remove(&mut self, w: WorkerId) -> bool {
        match self {
            Handle::RoundRobin(h) => h.remove(w),
            Handle::Shared(h) => h.remove(w),
        }
    }

    pub fn has(&self, w: WorkerId) -> bool {
        match self {
            Handle::RoundRobin(h) => h.has(w),
            Handle::Shared(h) => h.has(w),
        }
    }

    pub fn unix_path(&self) -> Option<PathBuf> {
        match self {
            Handle::RoundRobin(h) => h.unix_path(),
            Handle::Shared(h) => h.unix_path(),
        }
    }
}
