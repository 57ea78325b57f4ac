//! libcluster: Node.js's `cluster` module for every language with a C FFI.
//!
//! A primary forks workers that re-execute the program; workers ask for servers; the primary
//! binds each once and its distributor thread hands accepted connections to workers
//! round-robin, passing fds over Node v20's own IPC protocol, so Node primaries and Node
//! workers interoperate with ours. The C ABI lives in `capi`; `include/cluster.h` is
//! generated from it.
//!
//! `unsafe` is denied crate-wide and allowed only in `sys` (the system calls) and `capi`
//! (the C ABI); every other module also forbids it at its top.

#![deny(unsafe_code)]

//!
//! The crate's interface is the C ABI (the `cluster_*` exports): every module is
//! `pub(crate)`, so the Rust API is not a second, accidental interface. The integration
//! tests and the test fixture reach the internals through the hidden [`testing`] module.

pub(crate) mod address;
pub(crate) mod api;
pub(crate) mod capi;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod handle;
pub(crate) mod ipc;
pub(crate) mod primary;
pub(crate) mod signals;
pub(crate) mod sys;
pub(crate) mod trace;
pub(crate) mod worker;

/// The internals, for `tests/*.rs` and `examples/fixture.rs` only: not an API (no stability,
/// not documented). Each module mirrors the crate module of the same name.
#[doc(hidden)]
pub mod testing {
    pub mod address {
        pub use crate::address::*;
    }
    pub mod api {
        pub use crate::api::*;
    }
    pub mod capi {
        pub use crate::capi::*;
    }
    pub mod context {
        pub use crate::context::*;
    }
    pub mod error {
        pub use crate::error::*;
    }
    pub mod event {
        pub use crate::event::*;
    }
    pub mod handle {
        pub use crate::handle::*;
    }
    pub mod ipc {
        pub use crate::ipc::*;
    }
    pub mod primary {
        pub use crate::primary::*;
    }
    pub mod sys {
        pub use crate::sys::*;
    }
    pub mod worker {
        pub use crate::worker::*;
    }
}
