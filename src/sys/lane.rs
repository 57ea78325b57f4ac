//! The fast lane's syscalls: a `SOCK_SEQPACKET` pair whose messages are one byte and one
//! connection fd each, so the receiver's queue length in bytes is its number of connections.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{AddressFamily, Shutdown, SockFlag, SockType};

use super::retry;

/// The byte each connection travels with.
const TAG: u8 = b'c';
/// Most connections one `sendmmsg` carries.
pub(crate) const BATCH: usize = 32;

/// A close-on-exec `AF_UNIX` `SOCK_SEQPACKET` pair: `(primary's sending end, worker's end)`.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::sys::socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?)
}

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Cmsg([u8; 24]);

/// Sends each fd of `conns` (the caller's, kept open for the call) as its own message, in one `sendmmsg` (never waits, never
/// SIGPIPE). Returns how many were sent (the rest are still the caller's); an error only if
/// none was.
///
/// Raw, not nix's `sendmmsg`: nix's gives every message the same control messages (each of
/// ours carries its own fd), and it allocates its headers per call on this hot path.
pub fn send(sock: BorrowedFd<'_>, conns: &[RawFd]) -> io::Result<usize> {
    let n = conns.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    let tag = [TAG];
    let mut iovs = [libc::iovec { iov_base: tag.as_ptr() as *mut _, iov_len: 1 }; BATCH];
    let mut cbufs = [Cmsg([0; 24]); BATCH];
    // SAFETY: an all-zero mmsghdr is valid; the fields we use are filled below.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure size computations.
    let (space, len) =
        unsafe { (libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize, libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize) };
    debug_assert!(space <= 24);
    for i in 0..n {
        let h = &mut msgs[i].msg_hdr;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = cbufs[i].0.as_mut_ptr().cast();
        h.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, aligned bytes, so the first header
        // exists and its data area holds one fd.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = len as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), conns[i]);
        }
    }
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    retry(|| syscall!(sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), n as u32, flags))).map(|n| n as usize)
}

/// One `recvmsg` of a lane message: (bytes, the fd it carried, whether it was not exactly a
/// byte and an fd: longer, or with more fds, which the kernel then drops and closes).
///
/// Raw, as `scm::recv` and for the same reasons, which matter more here: the one-fd buffer
/// makes `MSG_CTRUNC` routine for a message with extra fds, and nix would then refuse to
/// hand over (so leak) the fd the kernel did install; nix would also allocate a `Vec` per
/// connection.
fn recv_msg(sock: BorrowedFd<'_>, flags: i32) -> io::Result<(usize, Option<OwnedFd>, bool)> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cbuf = Cmsg([0; 24]);
    // SAFETY: an all-zero msghdr is valid; we fill the fields we use below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    // Room for exactly one fd: the kernel drops (and reports) any further ones.
    // SAFETY: CMSG_LEN is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_LEN(size_of::<RawFd>() as u32) } as _;
    let n = retry(|| syscall!(recvmsg(sock.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC)))?;
    let mut fd = None;
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages;
    // the buffer has room for one fd only, and an SCM_RIGHTS payload's fds are ours.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
            fd = Some(OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>())));
        }
    }
    // A longer message (MSG_TRUNC) or more than one fd (MSG_CTRUNC) is not one connection.
    Ok((n as usize, fd, msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0))
}

/// Receives one connection: `Ok(None)` at end of stream (the lane was shut down and is
/// empty). `nonblocking`: `WouldBlock` instead of waiting. The fd is close-on-exec.
pub fn recv(sock: BorrowedFd<'_>, nonblocking: bool) -> io::Result<Option<OwnedFd>> {
    let flags = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
    loop {
        match recv_msg(sock, flags)? {
            // One fd with its byte, untruncated: a connection.
            (1, Some(fd), false) => return Ok(Some(fd)),
            (0, None, _) => return Ok(None),
            // Anything else is not from our primary: drop it and go on.
            _ => {}
        }
    }
}

/// Whether the next connection would fit in this process's fd table, without taking it:
/// peeking installs a copy of its fd (closed here) or, with no fd left, reports truncation
/// and leaves the message queued — where a plain receive would have lost the connection.
/// `WouldBlock` when none waits.
pub fn next_fits(sock: BorrowedFd<'_>) -> io::Result<bool> {
    match recv_msg(sock, libc::MSG_PEEK | libc::MSG_DONTWAIT)? {
        (_, None, true) => Ok(false),
        _ => Ok(true),
    }
}

/// Connections waiting in the receive queue of `sock` (its bytes, `FIONREAD`). Raw: nix
/// offers ioctls only as macros that generate `unsafe fn`s, no safe `FIONREAD`.
pub fn queued(sock: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY (the macro's block): FIONREAD writes one c_int, into the live local `n`.
    syscall!(ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut n))?;
    Ok(n.max(0) as usize)
}

/// `shutdown(SHUT_RD)` on the worker's end: the sender gets `EPIPE`, a waiting receiver
/// wakes, and what is queued can still be received (by the primary's copy).
pub fn shut_read(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(nix::sys::socket::shutdown(sock.as_raw_fd(), Shutdown::Read)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// What the fast lane relies on (house style P8: fail loudly if the kernel changes):
    /// the queue length is exact, two holders of one end each receive a message once, and
    /// after `SHUT_RD` the queued messages are still there while sends fail.
    #[test]
    fn queue_depth_exactly_once_and_shutdown() {
        let (a, b) = pair().unwrap();
        let kept = b.try_clone().unwrap();
        let f: Vec<OwnedFd> = (0..5).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect();
        let raw: Vec<RawFd> = f.iter().map(|x| x.as_raw_fd()).collect();
        assert_eq!(send(a.as_fd(), &raw).unwrap(), 5);
        assert_eq!(queued(kept.as_fd()).unwrap(), 5);
        let got = recv(b.as_fd(), true).unwrap().unwrap();
        assert!(crate::sys::fd::is_cloexec(got.as_raw_fd()).unwrap());
        assert_eq!(queued(kept.as_fd()).unwrap(), 4);
        shut_read(b.as_fd()).unwrap();
        assert_eq!(send(a.as_fd(), &raw[..1]).unwrap_err().raw_os_error(), Some(libc::EPIPE));
        let mut back = 0;
        while let Some(_fd) = recv(kept.as_fd(), true).unwrap() {
            back += 1;
        }
        assert_eq!(back, 4);
        assert!(recv(b.as_fd(), false).unwrap().is_none(), "shut down and empty: end of stream");
    }
}
