//! Listening sockets the primary was given instead of making them: systemd's socket
//! activation (`LISTEN_FDS`), its file-descriptor store, or the primary this one replaces
//! (a hot upgrade). A worker's `queryServer` for an address one of them is bound to takes
//! that socket (`take`) instead of binding a new one, so clients already waiting in its
//! backlog are served and none is refused while the socket changes hands.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::address::Target;
use crate::sys::socket::{self, Addr};

#[derive(Debug)]
pub struct InheritedSocket {
    pub fd: OwnedFd,
    pub addr: Addr,
    /// `SOCK_STREAM` (else a datagram socket).
    pub stream: bool,
    /// The name it came with (`LISTEN_FDNAMES`, `FDNAME`), if any.
    pub name: Option<String>,
}

#[derive(Debug, Default)]
pub struct Inherited {
    list: Vec<InheritedSocket>,
}

impl Inherited {
    /// Adds a socket the primary was given: made close-on-exec and non-blocking (an
    /// inherited fd is neither, necessarily); its address and type are read from it.
    /// `ENOTSOCK` for anything that is not a bound socket.
    pub fn add(&mut self, fd: OwnedFd, name: Option<String>) -> io::Result<()> {
        let (_, ty, _) = socket::describe(fd.as_fd())?;
        let addr = socket::local_addr(fd.as_fd())?;
        crate::sys::fd::set_cloexec(fd.as_fd())?;
        crate::sys::fd::set_nonblocking(fd.as_fd(), true)?;
        self.list.push(InheritedSocket { fd, addr, stream: ty == libc::SOCK_STREAM, name });
        Ok(())
    }

    /// Takes the socket bound where `target` asks (a stream socket, or a datagram one for
    /// `udp`). A port 0 never matches (it asks for a new port).
    pub fn take(&mut self, target: &Target, udp: bool) -> Option<InheritedSocket> {
        let i = self.list.iter().position(|s| s.stream != udp && matches(target, &s.addr))?;
        Some(self.list.remove(i))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The sockets held, with their names (a hot upgrade sends them on).
    pub fn raw_fds(&self) -> Vec<(std::os::fd::RawFd, Option<String>)> {
        self.list.iter().map(|s| (std::os::fd::AsRawFd::as_raw_fd(&s.fd), s.name.clone())).collect()
    }

    /// What is held, for the program (`(address, name)`).
    pub fn describe(&self) -> Vec<(Addr, Option<String>)> {
        self.list.iter().map(|s| (s.addr.clone(), s.name.clone())).collect()
    }
}

fn matches(target: &Target, addr: &Addr) -> bool {
    match (target, addr) {
        (Target::Ip(want), Addr::Inet(have)) => want.port() != 0 && want == have,
        (Target::Any { port }, Addr::Inet(have)) => *port != 0 && have.port() == *port && have.ip().is_unspecified(),
        (Target::Pipe(want), Addr::Unix(have)) => same_path(want, have),
        _ => false,
    }
}

/// The same socket path, written absolute or relative to our cwd.
fn same_path(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
    a == b || abs(a) == abs(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, UdpSocket};

    #[test]
    fn a_query_takes_the_socket_bound_where_it_asks() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let uport = udp.local_addr().unwrap().port();
        let mut inh = Inherited::default();
        inh.add(OwnedFd::from(tcp), Some("web".into())).unwrap();
        inh.add(OwnedFd::from(udp), None).unwrap();
        let at = |p: u16| Target::Ip(SocketAddr::from(([127, 0, 0, 1], p)));
        assert!(inh.take(&at(0), false).is_none(), "port 0 asks for a new port");
        assert!(inh.take(&at(port), true).is_none(), "a datagram query does not take a stream socket");
        assert!(inh.take(&Target::Any { port }, false).is_none(), "127.0.0.1 is not every interface");
        let s = inh.take(&at(port), false).expect("the stream socket");
        assert_eq!(s.name.as_deref(), Some("web"));
        assert!(crate::sys::fd::is_cloexec(std::os::fd::AsRawFd::as_raw_fd(&s.fd)).unwrap());
        assert!(inh.take(&at(port), false).is_none(), "taken once");
        assert!(inh.take(&at(uport), true).is_some());
        assert!(inh.is_empty());
    }

    #[test]
    fn only_sockets_are_taken_in() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut inh = Inherited::default();
        assert!(inh.add(OwnedFd::from(f), None).is_err());
        assert!(inh.is_empty());
    }
}
