//! Thin safe wrappers over the system calls libcluster makes.
//!
//! This module and `capi/` are the only places allowed to use `unsafe`. Code outside
//! never sees `-1` or `errno`: every wrapper returns `io::Result`. Every fd created here is
//! close-on-exec from the call that creates it (see house style P3).

// The crate denies `unsafe` (lib.rs); the system calls are one of its two homes.
#![allow(unsafe_code)]

macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller passes arguments that satisfy the system call's contract; each
        // call site documents why.
        #[allow(unused_unsafe, clippy::undocumented_unsafe_blocks)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub mod epoll;
pub mod eventfd;
pub mod fd;
pub mod fdkind;
pub mod fscred;
pub mod lane;
pub mod notify;
pub mod pidfd;
pub mod process;
pub mod scm;
pub mod signal;
pub mod socket;
pub mod spawn;

use std::io;

/// Runs `f` again while it fails with `EINTR`.
pub fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
