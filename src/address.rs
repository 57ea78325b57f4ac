//! What a server asks for (Node's `queryServer` fields), its handle key (§6.1), and the bind
//! the primary does for it (§6.3).

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys::socket::{self, Addr, ListenOpts};

/// Node's default backlog.
pub(crate) const DEFAULT_BACKLOG: i32 = 511;
/// `flags & 1`: IPv6 only.
pub(crate) const FLAG_IPV6ONLY: i64 = 1;

/// The address part of a listen request, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `address: null`: every interface (dual-stack `::`, falling back to `0.0.0.0`).
    Any {
        port: u16,
    },
    Ip(SocketAddr),
    /// A Unix socket path (`port: -1`, `addressType: -1`).
    Pipe(PathBuf),
}

impl Target {
    /// Validates a worker's (or user's) request. Host names are resolved here, in the worker,
    /// as Node resolves them before `queryServer`. A path is any address containing `/`.
    /// A path longer than a socket address holds is allowed: the primary binds the shorter
    /// of it and the path relative to its cwd, as Node's does (`bind` fails if neither fits).
    pub fn from_user(address: Option<&str>, port: i32) -> Result<Target> {
        match address {
            Some(a) if a.contains('/') => {
                if a.len() >= libc::PATH_MAX as usize || a.contains('\0') {
                    return Err(Error::errno(libc::EINVAL, "socket path is too long or contains NUL"));
                }
                let p = Path::new(a);
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    std::env::current_dir().map_err(|e| Error::io("current directory", e))?.join(p)
                };
                Ok(Target::Pipe(abs))
            }
            _ if !(0..=65535).contains(&port) => Err(Error::errno(libc::EINVAL, format!("port {port} is out of range (0 to 65535)"))),
            None => Ok(Target::Any { port: port as u16 }),
            Some("") => Ok(Target::Any { port: port as u16 }),
            Some(a) => {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    return Ok(Target::Ip(SocketAddr::new(ip, port as u16)));
                }
                let resolved = (a, port as u16).to_socket_addrs().ok().and_then(|mut it| it.next());
                match resolved {
                    Some(sa) => Ok(Target::Ip(sa)),
                    None => {
                        Err(Error::errno(libc::EINVAL, format!("address {a:?} is not an IP address, a path or a resolvable host name")))
                    }
                }
            }
        }
    }

    /// Node's `addressType`: 4, 6, or -1 for a pipe.
    pub fn address_type(&self) -> i64 {
        match self {
            Target::Any { .. } => 4,
            Target::Ip(SocketAddr::V4(_)) => 4,
            Target::Ip(SocketAddr::V6(_)) => 6,
            Target::Pipe(_) => -1,
        }
    }

    /// Node's `addressType` for a UDP bind: `udp6` for an IPv6 address, else `udp4`.
    pub fn udp_type(&self) -> &'static str {
        match self {
            Target::Ip(SocketAddr::V6(_)) => "udp6",
            _ => "udp4",
        }
    }

    /// Binds a datagram socket as Node's primary does for `dgram` (§6.3): `0.0.0.0` (or
    /// `::` for udp6) when no address is given.
    pub fn bind_datagram(&self, ipv6_only: bool, reuse_addr: bool) -> Result<(OwnedFd, Addr)> {
        let a = match self {
            Target::Any { port } => Addr::Inet(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port)),
            Target::Ip(sa) => Addr::Inet(*sa),
            Target::Pipe(_) => return Err(Error::errno(libc::EINVAL, "UDP needs an IP address, not a path")),
        };
        let fd = socket::bind_datagram(&a, ipv6_only, reuse_addr).map_err(|e| bind_error(&a, e))?;
        let bound = socket::local_addr(std::os::fd::AsFd::as_fd(&fd)).unwrap_or(a);
        Ok((fd, bound))
    }

    /// The `address` field: null, the IP text, or the path.
    pub fn address(&self) -> Option<String> {
        match self {
            Target::Any { .. } => None,
            Target::Ip(sa) => Some(sa.ip().to_string()),
            Target::Pipe(p) => Some(p.to_string_lossy().into_owned()),
        }
    }

    /// The `port` field (-1 for a pipe).
    pub fn port(&self) -> i64 {
        match self {
            Target::Any { port } => *port as i64,
            Target::Ip(sa) => sa.port() as i64,
            Target::Pipe(_) => -1,
        }
    }

    /// Rebuilds the target from a peer's `queryServer` fields.
    pub fn from_query(address: Option<&str>, port: Option<i64>, address_type: &str) -> Result<Target> {
        let bad = |what: &str| Error::protocol(format!("queryServer: {what}"));
        match address_type {
            "-1" => match address {
                Some(a) if !a.is_empty() => Ok(Target::Pipe(PathBuf::from(a))),
                _ => Err(bad("a pipe needs a path")),
            },
            "4" | "6" | "null" | "udp4" | "udp6" => {
                let port = port.unwrap_or(0);
                if !(0..=65535).contains(&port) {
                    return Err(bad("port out of range"));
                }
                match address {
                    None => Ok(Target::Any { port: port as u16 }),
                    Some(a) => a
                        .parse::<IpAddr>()
                        .map(|ip| Target::Ip(SocketAddr::new(ip, port as u16)))
                        .map_err(|_| bad("address is not an IP literal")),
                }
            }
            other => Err(Error::errno(libc::EOPNOTSUPP, format!("queryServer: addressType {other} is not supported"))),
        }
    }

    /// Binds (and listens, when `backlog` is set) as Node's primary does (§6.3). Pipes bind
    /// to the shorter of the absolute path and the path relative to our cwd (§6.2).
    pub fn bind(&self, ipv6_only: bool, backlog: Option<i32>) -> Result<(OwnedFd, Addr)> {
        self.bind_with(ListenOpts { backlog, ipv6_only, reuse_port: false })
    }

    /// As `bind`, with every listen option (`SO_REUSEPORT` for the reuseport policy).
    pub fn bind_with(&self, opts: ListenOpts) -> Result<(OwnedFd, Addr)> {
        let (fd, asked) = match self {
            Target::Any { port } => {
                let any6 = Addr::Inet(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), *port));
                match socket::bind_stream(&any6, opts) {
                    Ok(fd) => (fd, any6),
                    Err(_) => {
                        let any4 = Addr::Inet(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), *port));
                        (socket::bind_stream(&any4, opts).map_err(|e| bind_error(&any4, e))?, any4)
                    }
                }
            }
            Target::Ip(sa) => {
                let a = Addr::Inet(*sa);
                (socket::bind_stream(&a, opts).map_err(|e| bind_error(&a, e))?, a)
            }
            Target::Pipe(path) => {
                let short = shortest_path(path);
                let a = Addr::Unix(short);
                (socket::bind_stream(&a, opts).map_err(|e| bind_error(&a, e))?, a)
            }
        };
        let bound = socket::local_addr(std::os::fd::AsFd::as_fd(&fd)).unwrap_or(asked);
        Ok((fd, bound))
    }
}

/// Node's `readableAll` / `writableAll` on a bound Unix socket (nothing for IP addresses).
pub fn apply_pipe_mode(bound: &Addr, readable_all: bool, writable_all: bool) -> Result<()> {
    match bound {
        Addr::Unix(p) if readable_all || writable_all => {
            socket::add_pipe_permissions(p, readable_all, writable_all).map_err(|e| Error::io(format!("chmod {}", p.display()), e))
        }
        _ => Ok(()),
    }
}

fn shortest_path(abs: &Path) -> PathBuf {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = abs.strip_prefix(&cwd)
        && rel.as_os_str().len() < abs.as_os_str().len()
        && !rel.as_os_str().is_empty()
    {
        return rel.to_path_buf();
    }
    abs.to_path_buf()
}

fn bind_error(a: &Addr, e: std::io::Error) -> Error {
    match a {
        Addr::Inet(sa) => Error::io(format!("bind {sa}"), e),
        Addr::Unix(p) => Error::io(format!("bind {}", p.display()), e),
    }
}

/// Node's handle key: `String(address):String(port):String(addressType):String(fd):String(index)`
/// with `fd` absent (`undefined`) for TCP and pipes.
pub fn handle_key(address: Option<&str>, port: Option<i64>, address_type: &str, fd: Option<i64>, index: i64) -> String {
    let port = port.map_or("undefined".to_string(), |p| p.to_string());
    let fd = fd.map_or("undefined".to_string(), |f| f.to_string());
    format!("{}:{port}:{address_type}:{fd}:{index}", address.unwrap_or("null"))
}

/// `(address, family)` as Node's `sockname` prints them.
pub fn sockname_parts(a: &Addr) -> Option<(String, &'static str, u16)> {
    match a {
        Addr::Inet(SocketAddr::V4(v4)) => Some((v4.ip().to_string(), "IPv4", v4.port())),
        Addr::Inet(SocketAddr::V6(v6)) => Some((v6.ip().to_string(), "IPv6", v6.port())),
        Addr::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_node() {
        assert_eq!(handle_key(None, Some(0), "4", None, 0), "null:0:4:undefined:0");
        assert_eq!(handle_key(Some("::1"), Some(18240), "6", None, 0), "::1:18240:6:undefined:0");
        assert_eq!(handle_key(Some("/srv/app/sock.s"), Some(-1), "-1", None, 0), "/srv/app/sock.s:-1:-1:undefined:0");
        assert_eq!(handle_key(Some("127.0.0.1"), Some(18241), "\"udp4\"".trim_matches('"'), Some(-1), 0), "127.0.0.1:18241:udp4:-1:0");
    }

    #[test]
    fn validates_user_targets() {
        assert_eq!(Target::from_user(Some("127.0.0.1"), 80).unwrap().address_type(), 4);
        assert_eq!(Target::from_user(Some("::1"), 80).unwrap().address_type(), 6);
        assert_eq!(Target::from_user(None, 0).unwrap(), Target::Any { port: 0 });
        assert_eq!(Target::from_user(Some("/tmp/x.sock"), -1).unwrap().port(), -1);
        assert_eq!(Target::from_user(Some("127.0.0.1"), 70000).unwrap_err().code, -libc::EINVAL);
        assert_eq!(Target::from_user(Some("127.0.0.1"), -5).unwrap_err().code, -libc::EINVAL);
        assert_eq!(Target::from_user(Some("not an address!"), 80).unwrap_err().code, -libc::EINVAL);
        assert!(Target::from_query(None, Some(99999), "4").is_err());
        assert!(Target::from_query(Some("x"), Some(1), "4").is_err());
    }
}
