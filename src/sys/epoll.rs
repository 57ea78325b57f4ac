//! A minimal epoll wrapper keyed by 64-bit tokens (never raw fds; see house style P6).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::epoll::{self, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::retry;

pub(crate) const READABLE: u32 = libc::EPOLLIN as u32;
pub(crate) const WRITABLE: u32 = libc::EPOLLOUT as u32;
pub(crate) const EDGE: u32 = libc::EPOLLET as u32;
pub(crate) const HUP: u32 = (libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLERR) as u32;

#[derive(Debug)]
pub struct Epoll {
    ep: epoll::Epoll,
}

/// One readiness report: the token given at registration and the event bits.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub token: u64,
    pub events: u32,
}

/// A reusable buffer for `Epoll::wait`.
pub struct Events {
    buf: Vec<EpollEvent>,
    len: usize,
}

impl Events {
    pub fn with_capacity(n: usize) -> Events {
        Events { buf: vec![EpollEvent::empty(); n], len: 0 }
    }

    pub fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.buf[..self.len].iter().map(|e| Ready { token: e.data(), events: e.events().bits() as u32 })
    }
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        Ok(Epoll { ep: epoll::Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)? })
    }

    fn event(events: u32, token: u64) -> EpollEvent {
        EpollEvent::new(EpollFlags::from_bits_retain(events as i32), token)
    }

    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        Ok(self.ep.add(fd, Self::event(events, token))?)
    }

    pub fn modify(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        Ok(self.ep.modify(fd, &mut Self::event(events, token))?)
    }

    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(self.ep.delete(fd)?)
    }

    pub fn raw(&self) -> i32 {
        self.ep.0.as_raw_fd()
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.ep.0)
    }

    /// Waits for readiness; `timeout_ms` -1 waits without limit.
    /// Any other negative `timeout_ms` is taken as -1, as the kernel takes it.
    pub fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<usize> {
        let timeout = EpollTimeout::try_from(timeout_ms.max(-1)).unwrap_or(EpollTimeout::NONE);
        events.len = retry(|| Ok(self.ep.wait(&mut events.buf, timeout)?))?;
        Ok(events.len)
    }
}
