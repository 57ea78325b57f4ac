//! File-descriptor helpers: flags, pipes, socketpairs, plain reads and writes.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{Resource, getrlimit};
use nix::sys::socket::{AddressFamily, SockFlag, SockType};

use super::retry;

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let want = if on { flags | OFlag::O_NONBLOCK } else { flags - OFlag::O_NONBLOCK };
    if want != flags {
        fcntl(fd, FcntlArg::F_SETFL(want))?;
    }
    Ok(())
}

/// Whether `O_NONBLOCK` is set on `fd`.
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    Ok(flags.contains(OFlag::O_NONBLOCK))
}

/// Sets `FD_CLOEXEC` on `fd`.
pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Whether `FD_CLOEXEC` is set on the raw fd `fd` (which need not be ours).
///
/// Raw `fcntl`: nix's takes a `BorrowedFd`, which must name an open fd, and this asks of a
/// bare number whether it is open at all (`EBADF` if not).
pub fn is_cloexec(fd: RawFd) -> io::Result<bool> {
    // SAFETY (the macro's block): F_GETFD takes no pointer and only reads the fd's flags; any
    // number is allowed.
    let flags = syscall!(fcntl(fd, libc::F_GETFD))?;
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// Whether the raw fd `fd` is open in this process.
pub fn is_open(fd: RawFd) -> bool {
    fd >= 0 && is_cloexec(fd).is_ok()
}

/// Duplicates `fd` to the lowest free number `>= min`, close-on-exec (`F_DUPFD_CLOEXEC`).
pub fn dup_cloexec_min(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    let new = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: fcntl just returned a new fd that nothing else owns (nix returns it raw).
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A close-on-exec pipe: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// A close-on-exec `AF_UNIX` `SOCK_STREAM` socketpair.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::sys::socket::socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?)
}

/// A `SOCK_SEQPACKET` Unix socket pair, close-on-exec (a hot upgrade's channel: one
/// message per send, fds with it).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::sys::socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?)
}

/// Bounds how long a blocking send on socket `fd` may wait for room (`SO_SNDTIMEO`): past
/// it the send fails with `EAGAIN`.
pub fn set_send_timeout(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
    Ok(nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SendTimeout, &tv)?)
}

/// Takes ownership of a raw fd number inherited from the parent (the worker's channel).
///
/// Fails with `EBADF` if `fd` is not open. The caller must be sure nothing else in the
/// process owns `fd`.
pub fn adopt_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    if !is_open(fd) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the fd is open, and by contract (NODE_CHANNEL_FD names it for us) it is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `read(2)`, retried on EINTR.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| Ok(nix::unistd::read(fd, buf)?))
}

/// `write(2)`, retried on EINTR.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry(|| Ok(nix::unistd::write(fd, buf)?))
}

/// Waits until `fd` is readable or `timeout_ms` passes (-1: no limit). Returns readiness.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let timeout = PollTimeout::try_from(timeout_ms.max(-1)).unwrap_or(PollTimeout::NONE);
    let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = retry(|| Ok(nix::poll::poll(&mut p, timeout)?))?;
    Ok(n > 0)
}

/// Lists the fds open in this process (from `/proc/self/fd`), for hygiene checks.
pub fn open_fds() -> io::Result<Vec<RawFd>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(n) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(n);
        }
    }
    // The directory handle itself was one of them and is closed now.
    out.retain(|&fd| is_open(fd));
    out.sort_unstable();
    Ok(out)
}

/// `RLIMIT_NOFILE`'s soft limit: every fd number stays below it.
pub fn soft_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

/// How many more fds this process may open: `RLIMIT_NOFILE`'s soft limit less the fds
/// open now (`/proc/self/fd`).
pub fn headroom() -> io::Result<u64> {
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let open = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(soft.saturating_sub(open))
}

/// Whether `fd` is a socket (`fstat` reports `S_IFSOCK`).
pub fn is_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}
