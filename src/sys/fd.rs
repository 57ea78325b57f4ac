//! File-descriptor helpers: flags, pipes, socketpairs, plain reads and writes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::retry;

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
    let want = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    if want != flags {
        syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFL, want))?;
    }
    Ok(())
}

/// Whether `O_NONBLOCK` is set on `fd`.
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let flags = syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Sets `FD_CLOEXEC` on `fd`.
pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC)).map(drop)
}

/// Whether `FD_CLOEXEC` is set on the raw fd `fd` (which need not be ours).
pub fn is_cloexec(fd: RawFd) -> io::Result<bool> {
    let flags = syscall!(fcntl(fd, libc::F_GETFD))?;
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// Whether the raw fd `fd` is open in this process.
pub fn is_open(fd: RawFd) -> bool {
    fd >= 0 && is_cloexec(fd).is_ok()
}

/// Duplicates `fd` to the lowest free number `>= min`, close-on-exec (`F_DUPFD_CLOEXEC`).
pub fn dup_cloexec_min(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    let new = syscall!(fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min))?;
    // SAFETY: fcntl just returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A close-on-exec pipe: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: pipe2 filled both slots with new fds owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec `AF_UNIX` `SOCK_STREAM` socketpair.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    // SAFETY: socketpair filled both slots with new fds owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
    retry(|| {
        syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())).map(|n| n as usize)
    })
}

/// `write(2)`, retried on EINTR.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry(|| syscall!(write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len())).map(|n| n as usize))
}

/// Waits until `fd` is readable or `timeout_ms` passes (-1: no limit). Returns readiness.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let n = retry(|| syscall!(poll(&mut p, 1, timeout_ms)))?;
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
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    match syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim)) {
        Ok(_) => lim.rlim_cur,
        Err(_) => u64::MAX,
    }
}

/// How many more fds this process may open: `RLIMIT_NOFILE`'s soft limit less the fds
/// open now (`/proc/self/fd`).
pub fn headroom() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim))?;
    let open = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(lim.rlim_cur.saturating_sub(open))
}

/// Whether `fd` is a socket (`fstat` reports `S_IFSOCK`).
pub fn is_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(fstat(fd.as_raw_fd(), &mut st))?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}
