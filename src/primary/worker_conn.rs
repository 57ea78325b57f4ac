//! The distributor's view of one worker: its channel, its pidfd and its connection in flight.

#![forbid(unsafe_code)]

use std::os::fd::OwnedFd;
use std::sync::Arc;

use std::time::Instant;

use super::stats::Counters;
use crate::ipc::codec::Decoder;
use crate::ipc::writer::Writer;

/// A connection handed to a worker and not yet acked.
#[derive(Debug)]
pub struct InFlight {
    pub seq: i64,
    pub handle: u32,
    pub conn: OwnedFd,
    /// When the pass that handed it began (for the handoff latency and stuck detection).
    pub at: Instant,
}

/// The open channel to a worker.
#[derive(Debug)]
pub struct Channel {
    pub sock: Arc<OwnedFd>,
    pub writer: Writer,
    pub decoder: Decoder,
    /// Registered for EPOLLOUT too.
    pub watching_out: bool,
    /// Not read for now: user messages fill the event queue (see `event`).
    pub paused: bool,
}

#[derive(Debug)]
pub struct WorkerConn {
    pub pid: i32,
    pub channel: Option<Channel>,
    pub child: Arc<crate::sys::pidfd::Child>,
    /// Node's `exitedAfterDisconnect`: unknown until the worker says it or we disconnect it.
    pub exited_after_disconnect: Option<bool>,
    /// Connections handed to the worker and not yet answered, oldest first.
    pub in_flight: Vec<InFlight>,
    /// How many may be in flight: 1 (Node's rule) unless a libcluster worker announced more.
    pub max_in_flight: usize,
    /// The connections handed to it, and what became of them (`stats`).
    pub counters: Counters,
    /// Since when its queued connections have not moved (a stalled lane), if they have not.
    pub stalled_since: Option<Instant>,
}

impl WorkerConn {
    pub fn connected(&self) -> bool {
        self.channel.is_some()
    }
}
