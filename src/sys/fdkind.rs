//! What an fd a peer passed us is, checked with one system call where the caller's hot path
//! allows only one.

use std::io;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::sys::socket::{SockType, getsockopt, sockopt};

/// Whether `fd` is a stream socket (a connection, as far as its type can tell): one
/// `getsockopt(SO_TYPE)`, which fails with `ENOTSOCK` for a pipe, a file or anything else
/// that is not a socket. Other errors are returned.
pub fn is_stream_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match getsockopt(&fd, sockopt::SockType) {
        Ok(ty) => Ok(ty == SockType::Stream),
        // ENOTSOCK: not a socket. EINVAL: nix's name for a type its enum lacks (SOCK_DCCP,
        // SOCK_PACKET), which is not a stream either; the system call itself never says
        // EINVAL for SO_TYPE.
        Err(Errno::ENOTSOCK | Errno::EINVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn streams_only() {
        let (a, _b) = crate::sys::fd::socketpair().unwrap();
        assert!(is_stream_socket(a.as_fd()).unwrap());
        let (r, w) = crate::sys::fd::pipe().unwrap();
        assert!(!is_stream_socket(r.as_fd()).unwrap());
        assert!(!is_stream_socket(w.as_fd()).unwrap());
        let (l, _m) = crate::sys::lane::pair().unwrap();
        assert!(!is_stream_socket(l.as_fd()).unwrap());
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(!is_stream_socket(u.as_fd()).unwrap());
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(!is_stream_socket(f.as_fd()).unwrap());
    }
}
