//! systemd's notification protocol (`sd_notify(3)`), without libsystemd: one datagram of
//! `KEY=value` lines to the `AF_UNIX` socket `$NOTIFY_SOCKET` names (a leading `@` is the
//! abstract namespace), optionally carrying fds (`SCM_RIGHTS`) for `FDSTORE=1`. Also the
//! two facts the watchdog rule reads: the monotonic clock (`MONOTONIC_USEC`) and whether a
//! process is stopped (`/proc/<pid>/stat`).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr};

use super::retry;

/// Where `$NOTIFY_SOCKET` points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Path(std::path::PathBuf),
    /// The abstract namespace (`@name`), without the leading `@`.
    Abstract(Vec<u8>),
}

impl Target {
    /// Parses `$NOTIFY_SOCKET`'s value: an absolute path or `@name`. (`vsock:` is not
    /// supported: `EAFNOSUPPORT`.)
    pub fn parse(v: &std::ffi::OsStr) -> io::Result<Target> {
        use std::os::unix::ffi::OsStrExt;
        let b = v.as_bytes();
        match b.first() {
            Some(b'@') if b.len() > 1 => Ok(Target::Abstract(b[1..].to_vec())),
            Some(b'/') => Ok(Target::Path(std::path::PathBuf::from(v))),
            Some(_) if b.starts_with(b"vsock:") => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    /// `$NOTIFY_SOCKET` now: `None` when unset or empty.
    pub fn from_env() -> io::Result<Option<Target>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Target::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    fn addr(&self) -> io::Result<UnixAddr> {
        let r = match self {
            Target::Path(p) => UnixAddr::new(p.as_path()),
            Target::Abstract(name) => UnixAddr::new_abstract(name),
        };
        r.map_err(io::Error::from)
    }
}

/// Sends `state` (newline-separated `KEY=value` lines) to `target` in one datagram, with
/// `fds` attached when there are any. A fresh close-on-exec socket per call (as sd_notify
/// does): nothing stays open between calls. Never blocks (`MSG_DONTWAIT`): a full receiver
/// is `EAGAIN`, not a stalled distributor.
pub fn send(target: &Target, state: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let addr = target.addr()?;
    let sock = nix::sys::socket::socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    let iov = [IoSlice::new(state)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    let n = retry(|| Ok(nix::sys::socket::sendmsg(sock.as_raw_fd(), &iov, cmsgs, flags, Some(&addr))?))?;
    if n != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short notify datagram"));
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in microseconds (what `MONOTONIC_USEC` wants).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let _ = syscall!(clock_gettime(libc::CLOCK_MONOTONIC, &mut ts));
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Whether process `pid` is stopped (`T`, `t`: SIGSTOP, a tracer) or gone (`Z`, `X`, or no
/// such process): it cannot serve. Read from `/proc/<pid>/stat`.
pub fn cannot_run(pid: i32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else { return true };
    // "pid (comm) S ...": comm may hold anything, so the state follows the last ')'.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else { return true };
    matches!(stat.get(close + 2), Some(b'T' | b't' | b'Z' | b'X') | None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_datagram_with_an_fd_reaches_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("lc-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let t = Target::parse(path.as_os_str()).unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        send(&t, b"FDSTORE=1\nFDNAME=x", &[devnull.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let r = crate::sys::scm::recv(rx.as_fd(), &mut buf, true).unwrap();
        assert_eq!(&buf[..r.len], b"FDSTORE=1\nFDNAME=x");
        assert_eq!(r.fds.len(), 1);
        send(&t, b"READY=1", &[]).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), 7);
        let _ = std::fs::remove_dir_all(&dir);

        let name = format!("lc-notify-test-{}", std::process::id());
        let sock = nix::sys::socket::socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).unwrap();
        nix::sys::socket::bind(sock.as_raw_fd(), &UnixAddr::new_abstract(name.as_bytes()).unwrap()).unwrap();
        let t = Target::parse(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        send(&t, b"WATCHDOG=1", &[]).unwrap();
        let n = nix::sys::socket::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn targets_and_process_states() {
        assert!(Target::parse(std::ffi::OsStr::new("relative")).is_err());
        assert!(Target::parse(std::ffi::OsStr::new("@")).is_err());
        assert!(!cannot_run(std::process::id() as i32));
        assert!(cannot_run(i32::MAX));
        assert!(monotonic_usec() > 0);
    }
}
