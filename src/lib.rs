//! libcluster: Node.js's `cluster` module for every language with a C FFI.
//!
//! A primary forks workers that re-execute the program; workers ask for servers; the primary
//! binds each once and its distributor thread hands accepted connections to workers
//! round-robin, passing fds over Node v20's own IPC protocol, so Node primaries and Node
//! workers interoperate with ours. The C ABI lives in [`capi`]; `include/cluster.h` is
//! generated from it.
//!
//! `unsafe` is denied crate-wide and allowed only in [`sys`] (the system calls) and [`capi`]
//! (the C ABI); every other module also forbids it at its top.

#![deny(unsafe_code)]

pub mod address;
pub mod api;
pub mod capi;
pub mod context;
pub mod error;
pub mod event;
pub mod handle;
pub mod ipc;
pub mod primary;
pub mod sys;
pub(crate) mod trace;
pub mod worker;
