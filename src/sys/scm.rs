//! `sendmsg`/`recvmsg` with `SCM_RIGHTS`, as Node's channel uses them.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr};

use super::retry;

/// The most fds one received segment may carry before we call it truncated. Node sends one.
pub(crate) const MAX_FDS: usize = 4;

/// Aligned control-message buffer big enough for `MAX_FDS` fds.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Sends `data` (and `fd`, as `SCM_RIGHTS`, with its first byte). Returns bytes written.
///
/// Always `MSG_NOSIGNAL` (no SIGPIPE, see house style P5); `nonblocking` adds
/// `MSG_DONTWAIT`.
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fd: Option<RawFd>, nonblocking: bool) -> io::Result<usize> {
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let raw = sock.as_raw_fd();
    let Some(fd) = fd else {
        return retry(|| Ok(nix::sys::socket::send(raw, data, flags)?));
    };
    // nix builds the SCM_RIGHTS header itself (in a 24-byte buffer it allocates per call:
    // noise next to a sendmsg that installs an fd in the peer).
    let fds = [fd];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(data)];
    retry(|| Ok(nix::sys::socket::sendmsg::<UnixAddr>(raw, &iov, &cmsgs, flags, None)?))
}

/// What one `recvmsg` brought.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes read into the buffer; 0 means end of stream.
    pub len: usize,
    /// Fds that arrived (close-on-exec, thanks to `MSG_CMSG_CLOEXEC`).
    pub fds: Vec<OwnedFd>,
    /// The kernel dropped fds or control data (`MSG_CTRUNC`): a protocol error (systemd#15457).
    pub truncated: bool,
}

/// `recvmsg(sock, buf, MSG_CMSG_CLOEXEC)`, retried on EINTR.
///
/// Raw, not nix's `recvmsg`: on `MSG_CTRUNC` nix refuses to walk the control messages
/// (`ENOBUFS`), so the fds the kernel did install would leak instead of being closed here;
/// and it hands fds back as `RawFd` in a `Vec` per message, so taking ownership would need
/// `unsafe` all the same.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], nonblocking: bool) -> io::Result<Received> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is valid; we fill the fields we use below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    let n = retry(|| syscall!(recvmsg(sock.as_raw_fd(), &mut msg, flags)))? as usize;
    let mut out = Received { len: n, fds: Vec::new(), truncated: msg.msg_flags & libc::MSG_CTRUNC != 0 };
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages into
    // `cbuf`; CMSG_FIRSTHDR/NXTHDR stay within that length, and each SCM_RIGHTS payload is an
    // array of fds that are now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    out.fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if out.fds.len() > MAX_FDS {
        out.truncated = true;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// What the decoder relies on (house style P8: fail loudly if this changes): one read
    /// may glue fd-less bytes *before* an fd-carrying segment, but stops right after it.
    #[test]
    fn recv_glues_plain_bytes_before_an_fd_segment_and_stops_after_it() {
        let (a, b) = crate::sys::fd::socketpair().unwrap();
        let devnull: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        send(a.as_fd(), b"plain\n", None, false).unwrap();
        send(a.as_fd(), b"handle\n", Some(devnull.as_raw_fd()), false).unwrap();
        send(a.as_fd(), b"after\n", None, false).unwrap();
        let mut buf = [0u8; 256];
        let r = recv(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!(&buf[..r.len], b"plain\nhandle\n");
        assert_eq!(r.fds.len(), 1);
        assert!(!r.truncated);
        assert!(crate::sys::fd::is_cloexec(r.fds[0].as_raw_fd()).unwrap(), "MSG_CMSG_CLOEXEC");
        let r = recv(b.as_fd(), &mut buf, true).unwrap();
        assert_eq!((&buf[..r.len], r.fds.len()), (&b"after\n"[..], 0));
    }
}
