//! An eventfd used as a level-style "something is pending" flag.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::eventfd::{EfdFlags, EventFd as NixEventFd};

use super::fd;

/// A non-blocking, close-on-exec eventfd.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        let efd = NixEventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(EventFd { fd: efd.into() })
    }

    /// Makes the fd readable. Never blocks (the counter cannot realistically overflow).
    pub fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        let _ = fd::write(self.fd.as_fd(), &one);
    }

    /// Makes the fd unreadable again (until the next `signal`).
    pub fn reset(&self) {
        let mut buf = [0u8; 8];
        let _ = fd::read(self.fd.as_fd(), &mut buf);
    }

    /// Waits until signalled or `timeout_ms` passes (-1: no limit).
    pub fn wait(&self, timeout_ms: i32) -> io::Result<bool> {
        fd::poll_readable(self.fd.as_fd(), timeout_ms)
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
