//! Node v20's IPC channel: `json` framing (one JSON value per line), `SCM_RIGHTS` fds bound
//! to the `NODE_HANDLE` line they arrive with, the handle-in-flight rule, and the
//! `NODE_CLUSTER` messages (see `docs/protocol.md` §3–§5).

#![forbid(unsafe_code)]

pub mod codec;
pub mod hot_lines;
pub mod inbound;
pub mod message;
pub mod outbound;
pub mod user_json;
pub mod wire;
pub mod writer;

use std::sync::atomic::{AtomicUsize, Ordering};

/// Default cap on one line's length (a peer sending more is a protocol error).
pub(crate) const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

static MAX_LINE: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_LINE);

/// The cap on one message (line) every channel of this process enforces.
pub fn max_line() -> usize {
    MAX_LINE.load(Ordering::Relaxed)
}

/// Changes the cap, for every channel (existing ones from their next line on).
pub fn set_max_line(bytes: usize) {
    MAX_LINE.store(bytes, Ordering::Relaxed);
}
