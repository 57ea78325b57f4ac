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

/// Makes the eventfd `fd` readable, from a signal handler: one `write(2)`, which is
/// async-signal-safe; nothing else (no allocation, no lock, errno restored).
pub fn signal_raw(fd: i32) {
    let one = 1u64.to_ne_bytes();
    let saved = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: writes 8 bytes from a live stack buffer; a closed or wrong fd only fails.
    let _ = unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
    // SAFETY: errno is this thread's; the interrupted code may read it after we return.
    unsafe { *libc::__errno_location() = saved };
}
