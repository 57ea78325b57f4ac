//! Listening sockets: bind, listen, accept, getsockname, for TCP and Unix paths.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::retry;

/// Where a socket is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

/// How to create a listening socket.
#[derive(Clone, Copy, Debug)]
pub struct ListenOpts {
    /// `listen(2)` backlog; `None` binds only (Node's SharedHandle leaves listen to workers).
    pub backlog: Option<i32>,
    /// Set `IPV6_V6ONLY` (Node's `flags & 1`).
    pub ipv6_only: bool,
    /// Join a `SO_REUSEPORT` group (one listener per worker: the reuseport policy).
    pub reuse_port: bool,
}

fn sockaddr(addr: &Addr) -> io::Result<(libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        Addr::Inet(SocketAddr::V4(a)) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        Addr::Inet(SocketAddr::V6(a)) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
        Addr::Unix(path) => {
            // SAFETY: as above.
            let sun = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_un) };
            let bytes = path.as_os_str().as_bytes();
            if bytes.is_empty() || bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
                return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            }
            sun.sun_family = libc::AF_UNIX as _;
            for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
                *d = *s as libc::c_char;
            }
            std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1
        }
    };
    Ok((ss, len as libc::socklen_t))
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> io::Result<Addr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(Addr::Inet(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(Addr::Inet(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sin6.sin6_port))))
        }
        libc::AF_UNIX => {
            // SAFETY: the family says this storage holds a sockaddr_un.
            let sun = unsafe { &*(ss as *const _ as *const libc::sockaddr_un) };
            let bytes: Vec<u8> =
                sun.sun_path.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            Ok(Addr::Unix(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))))
        }
        _ => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    }
}

fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, val: i32) -> io::Result<()> {
    syscall!(setsockopt(
        fd.as_raw_fd(),
        level,
        name,
        (&val as *const i32).cast(),
        std::mem::size_of::<i32>() as libc::socklen_t
    ))
    .map(drop)
}

/// Creates a non-blocking, close-on-exec stream socket bound to `addr`, listening when
/// `opts.backlog` is set. TCP sockets get `SO_REUSEADDR`, as libuv gives them.
pub fn bind_stream(addr: &Addr, opts: ListenOpts) -> io::Result<OwnedFd> {
    let family = match addr {
        Addr::Inet(SocketAddr::V4(_)) => libc::AF_INET,
        Addr::Inet(SocketAddr::V6(_)) => libc::AF_INET6,
        Addr::Unix(_) => libc::AF_UNIX,
    };
    let raw = syscall!(socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0))?;
    // SAFETY: socket returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let b = std::os::fd::AsFd::as_fd(&fd);
    if family != libc::AF_UNIX {
        setsockopt_int(b, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if opts.reuse_port {
            setsockopt_int(b, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
    }
    if family == libc::AF_INET6 {
        setsockopt_int(b, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, opts.ipv6_only as i32)?;
    }
    let (ss, len) = sockaddr(addr)?;
    syscall!(bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len))?;
    if let Some(backlog) = opts.backlog {
        syscall!(listen(raw, backlog))?;
    }
    Ok(fd)
}

/// A non-blocking, close-on-exec UDP socket bound to `addr`.
pub fn bind_datagram(addr: &Addr, ipv6_only: bool, reuse_addr: bool) -> io::Result<OwnedFd> {
    let family = match addr {
        Addr::Inet(SocketAddr::V4(_)) => libc::AF_INET,
        Addr::Inet(SocketAddr::V6(_)) => libc::AF_INET6,
        Addr::Unix(_) => return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
    };
    let raw = syscall!(socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0))?;
    // SAFETY: socket returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let b = std::os::fd::AsFd::as_fd(&fd);
    if reuse_addr {
        setsockopt_int(b, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    if family == libc::AF_INET6 {
        setsockopt_int(b, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, ipv6_only as i32)?;
    }
    let (ss, len) = sockaddr(addr)?;
    syscall!(bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len))?;
    Ok(fd)
}

/// `shutdown(fd, SHUT_RDWR)`: the peer reads EOF, our blocked reads return 0.
/// Node's `readableAll` / `writableAll` for a Unix socket path, as libuv's `uv_pipe_chmod`:
/// adds read (write) permission for user, group and others to what the file has.
pub fn add_pipe_permissions(path: &Path, readable_all: bool, writable_all: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let want = if readable_all { 0o444 } else { 0 } | if writable_all { 0o222 } else { 0 };
    if want == 0 {
        return Ok(());
    }
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & want == want {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode((mode | want) & 0o7777))
}

pub fn shutdown(fd: BorrowedFd<'_>) -> io::Result<()> {
    syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_RDWR)).map(drop)
}

/// `listen(2)` on an already bound socket.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    syscall!(listen(fd.as_raw_fd(), backlog)).map(drop)
}

/// `accept4(fd, SOCK_CLOEXEC [| SOCK_NONBLOCK])`, retried on EINTR. `WouldBlock` when none.
pub fn accept(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::SOCK_CLOEXEC;
    if nonblocking {
        flags |= libc::SOCK_NONBLOCK;
    }
    let raw = retry(|| {
        syscall!(accept4(fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), flags))
    })?;
    // SAFETY: accept4 returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `getsockname(2)`.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<Addr> {
    // SAFETY: an all-zero sockaddr_storage is valid for getsockname to fill.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getsockname(fd.as_raw_fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len))?;
    from_sockaddr(&ss)
}

/// `(SO_DOMAIN, SO_TYPE)` of a socket, to check what a peer passed us.
pub fn kind(fd: BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    let get = |name| -> io::Result<i32> {
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        syscall!(getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, name, (&mut v as *mut i32).cast(), &mut len))?;
        Ok(v)
    };
    Ok((get(libc::SO_DOMAIN)?, get(libc::SO_TYPE)?))
}

/// Removes a Unix socket path, ignoring a missing file.
pub fn unlink(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// What a socket fd is: `(domain, type, listening)`. `ENOTSOCK` for anything else.
pub fn describe(fd: BorrowedFd<'_>) -> io::Result<(i32, i32, bool)> {
    if !super::fd::is_socket(fd)? {
        return Err(io::Error::from_raw_os_error(libc::ENOTSOCK));
    }
    let (domain, ty) = kind(fd)?;
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    syscall!(getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ACCEPTCONN, (&mut v as *mut i32).cast(), &mut len))?;
    Ok((domain, ty, v != 0))
}

/// Connections waiting in a TCP listener's accept queue (`TCP_INFO`'s `tcpi_unacked`, which
/// a listening socket reports as its accept-queue length).
pub fn accept_queue(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: an all-zero tcp_info is valid for getsockopt to fill.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    syscall!(getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len))?;
    Ok(info.tcpi_unacked as usize)
}
