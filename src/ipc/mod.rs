//! Node v20's IPC channel: `json` framing (one JSON value per line), `SCM_RIGHTS` fds bound
//! to the `NODE_HANDLE` line they arrive with, the handle-in-flight rule, and the
//! `NODE_CLUSTER` messages (see `node-cluster-protocol.md` §3–§5).

#![forbid(unsafe_code)]

pub mod codec;
pub mod message;
pub mod wire;
pub mod writer;

/// Default cap on one line's length (a peer sending more is a protocol error).
pub(crate) const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;
