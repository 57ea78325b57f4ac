//! Listening sockets: bind, listen, accept, getsockname, for TCP and Unix paths.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    AddressFamily, Shutdown, SockFlag, SockType, SockaddrStorage, UnixAddr, getsockname, getsockopt, setsockopt, sockopt,
};

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

/// `bind(2)` to `addr`.
fn bind_to(fd: &OwnedFd, addr: &Addr) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    match addr {
        Addr::Inet(a) => nix::sys::socket::bind(raw, &SockaddrStorage::from(*a))?,
        Addr::Unix(path) => {
            // Checked here, not by nix: an empty path would bind an unnamed (autobound)
            // address, and every refusal keeps the one errno callers know.
            let bytes = path.as_os_str().as_bytes();
            if bytes.is_empty() || bytes.contains(&0) {
                return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
            }
            nix::sys::socket::bind(raw, &UnixAddr::new(path.as_path())?)?
        }
    }
    Ok(())
}

fn from_sockaddr(ss: &SockaddrStorage) -> io::Result<Addr> {
    if let Some(sin) = ss.as_sockaddr_in() {
        let a = std::net::SocketAddrV4::from(*sin);
        return Ok(Addr::Inet(SocketAddr::new(IpAddr::V4(*a.ip()), a.port())));
    }
    if let Some(sin6) = ss.as_sockaddr_in6() {
        // Address and port only, as before: no flow info, no scope id.
        let a = std::net::SocketAddrV6::from(*sin6);
        return Ok(Addr::Inet(SocketAddr::new(IpAddr::V6(*a.ip()), a.port())));
    }
    if let Some(sun) = ss.as_unix_addr() {
        // Unnamed and abstract addresses read as an empty path.
        return Ok(Addr::Unix(sun.path().map(Path::to_path_buf).unwrap_or_default()));
    }
    Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
}

/// `listen(2)`, raw: nix's `Backlog` refuses values above `libc::SOMAXCONN` (4096), where
/// the kernel accepts any `int` and clamps it to `net.core.somaxconn`, which may be higher.
fn listen_raw(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY (the macro's block): listen takes two integers and no pointer.
    syscall!(listen(fd.as_raw_fd(), backlog)).map(drop)
}

/// An `int` socket option, raw: for `SO_DOMAIN`, which nix has no option for, and
/// `SO_TYPE` of a socket a peer passed us, which nix's `SockType` enum cannot hold for
/// every type the kernel reports (`EINVAL` for `SOCK_DCCP`, `SOCK_PACKET`).
fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY (the macro's block): `v` and `len` are live locals; `len` gives `v`'s size, so
    // the kernel writes at most that many bytes into it.
    syscall!(getsockopt(fd.as_raw_fd(), level, name, (&mut v as *mut i32).cast(), &mut len))?;
    Ok(v)
}

/// A new non-blocking, close-on-exec socket of `family` and `ty`.
fn new_socket(family: AddressFamily, ty: SockType) -> io::Result<OwnedFd> {
    Ok(nix::sys::socket::socket(family, ty, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?)
}

fn family_of(addr: &Addr) -> AddressFamily {
    match addr {
        Addr::Inet(SocketAddr::V4(_)) => AddressFamily::Inet,
        Addr::Inet(SocketAddr::V6(_)) => AddressFamily::Inet6,
        Addr::Unix(_) => AddressFamily::Unix,
    }
}

/// Creates a non-blocking, close-on-exec stream socket bound to `addr`, listening when
/// `opts.backlog` is set. TCP sockets get `SO_REUSEADDR`, as libuv gives them.
pub fn bind_stream(addr: &Addr, opts: ListenOpts) -> io::Result<OwnedFd> {
    let family = family_of(addr);
    let fd = new_socket(family, SockType::Stream)?;
    if family != AddressFamily::Unix {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        if opts.reuse_port {
            setsockopt(&fd, sockopt::ReusePort, &true)?;
        }
    }
    if family == AddressFamily::Inet6 {
        setsockopt(&fd, sockopt::Ipv6V6Only, &opts.ipv6_only)?;
    }
    bind_to(&fd, addr)?;
    if let Some(backlog) = opts.backlog {
        listen_raw(fd.as_fd(), backlog)?;
    }
    Ok(fd)
}

/// A non-blocking, close-on-exec UDP socket bound to `addr`.
pub fn bind_datagram(addr: &Addr, ipv6_only: bool, reuse_addr: bool) -> io::Result<OwnedFd> {
    let family = match addr {
        Addr::Unix(_) => return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
        inet => family_of(inet),
    };
    let fd = new_socket(family, SockType::Datagram)?;
    if reuse_addr {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    if family == AddressFamily::Inet6 {
        setsockopt(&fd, sockopt::Ipv6V6Only, &ipv6_only)?;
    }
    bind_to(&fd, addr)?;
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
    Ok(nix::sys::socket::shutdown(fd.as_raw_fd(), Shutdown::Both)?)
}

/// `listen(2)` on an already bound socket.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    listen_raw(fd, backlog)
}

/// `accept4(fd, SOCK_CLOEXEC [| SOCK_NONBLOCK])`, retried on EINTR. `WouldBlock` when none.
pub fn accept(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<OwnedFd> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    retry(|| Ok(nix::sys::socket::accept4(fd, flags)?))
}

/// `getsockname(2)`.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<Addr> {
    from_sockaddr(&getsockname::<SockaddrStorage>(fd.as_raw_fd())?)
}

/// `(SO_DOMAIN, SO_TYPE)` of a socket, to check what a peer passed us.
pub fn kind(fd: BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    Ok((getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?, getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?))
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
    Ok((domain, ty, getsockopt(&fd, sockopt::AcceptConn)?))
}

/// Connections waiting in a TCP listener's accept queue (`TCP_INFO`'s `tcpi_unacked`, which
/// a listening socket reports as its accept-queue length). Raw: nix has no `TCP_INFO` option.
pub fn accept_queue(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: tcp_info is plain integers; all-zero is a valid value for getsockopt to fill.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY (the macro's block): `info` and `len` are live locals and `len` is `info`'s size.
    syscall!(getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len))?;
    Ok(info.tcpi_unacked as usize)
}
