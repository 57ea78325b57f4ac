//! The library's error type: a negative code (errno or `CLUSTER_E_*`) and a one-line message.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;

/// Library codes live below -10000 so they never collide with a negative errno. Their one
/// source is `capi::error`'s `CLUSTER_E_*` (what `include/cluster.h` is generated from);
/// these are the same values under the names the library uses.
pub mod code {
    use crate::capi::error as c;
    pub(crate) const PANIC: i32 = c::CLUSTER_E_PANIC;
    pub(crate) const WRONG_ROLE: i32 = c::CLUSTER_E_WRONG_ROLE;
    pub(crate) const PROTOCOL: i32 = c::CLUSTER_E_PROTOCOL;
    pub(crate) const FORKED: i32 = c::CLUSTER_E_FORKED;
    pub(crate) const CLOSED: i32 = c::CLUSTER_E_CLOSED;
    pub(crate) const UNSUPPORTED: i32 = c::CLUSTER_E_UNSUPPORTED;
    pub(crate) const BREAKER_OPEN: i32 = c::CLUSTER_E_BREAKER_OPEN;
    pub(crate) const BUSY: i32 = c::CLUSTER_E_BUSY;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Negative errno or a `code::*` constant.
    pub code: i32,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(code: i32, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }

    /// A negative-errno error, e.g. `Error::errno(libc::EINVAL, "port out of range")`.
    pub fn errno(errno: i32, message: impl Into<String>) -> Error {
        Error::new(-errno, message)
    }

    pub fn protocol(message: impl Into<String>) -> Error {
        Error::new(code::PROTOCOL, message)
    }

    /// Wraps an OS error with what we were doing: `"bind 127.0.0.1:80: Permission denied"`.
    pub fn io(context: impl fmt::Display, e: io::Error) -> Error {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        Error::new(-errno, format!("{context}: {}", io_text(&e)))
    }
}

/// An OS error's text without std's `" (os error N)"` suffix: the code travels as the
/// result code already, and bindings (Python's `OSError`, Node's `err.errno`) show it
/// their own way.
pub fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(n) => text.strip_suffix(&format!(" (os error {n})")).map(str::to_owned).unwrap_or(text),
        None => text,
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        Error::new(-errno, io_text(&e))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The static description of a code, for `cluster_strerror`.
pub fn describe(code: i32) -> &'static str {
    match code {
        0 => "success",
        code::PANIC => "internal panic caught at the library boundary",
        code::WRONG_ROLE => "call not valid in this process's role (primary or worker)",
        code::PROTOCOL => "peer broke the cluster IPC protocol",
        code::FORKED => "process was forked after the library started; call from the original process",
        code::CLOSED => "IPC channel is closed",
        code::UNSUPPORTED => "not supported",
        code::BREAKER_OPEN => "crash-loop breaker open",
        code::BUSY => "operation already under way",
        c if c < 0 && c > -4096 => errno_text(-c),
        _ => "unknown error code",
    }
}

fn errno_text(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "operation not permitted",
        libc::ENOENT => "no such file or directory",
        libc::ESRCH => "no such process",
        libc::EINTR => "interrupted system call",
        libc::EIO => "input/output error",
        libc::EBADF => "bad file descriptor",
        libc::EAGAIN => "resource temporarily unavailable",
        libc::ENOMEM => "cannot allocate memory",
        libc::EACCES => "permission denied",
        libc::EFAULT => "bad address",
        libc::EBUSY => "device or resource busy",
        libc::EEXIST => "file exists",
        libc::ENOTDIR => "not a directory",
        libc::EINVAL => "invalid argument",
        libc::EMFILE => "too many open files",
        libc::ENOSPC => "no space left on device",
        libc::EPIPE => "broken pipe",
        libc::ENAMETOOLONG => "file name too long",
        libc::ENOSYS => "function not implemented",
        libc::ENOTSOCK => "socket operation on non-socket",
        libc::EMSGSIZE => "message too long",
        libc::EAFNOSUPPORT => "address family not supported",
        libc::EADDRINUSE => "address already in use",
        libc::EADDRNOTAVAIL => "cannot assign requested address",
        libc::ECONNRESET => "connection reset by peer",
        libc::ENOTCONN => "socket is not connected",
        libc::ETIMEDOUT => "connection timed out",
        libc::ECONNREFUSED => "connection refused",
        libc::ECHILD => "no child processes",
        libc::EALREADY => "operation already in progress",
        libc::ENOEXEC => "exec format error",
        libc::EOPNOTSUPP => "operation not supported",
        libc::ECANCELED => "operation canceled",
        libc::EPROTO => "protocol error",
        libc::ECONNABORTED => "software caused connection abort",
        libc::ENFILE => "too many open files in system",
        libc::ENOBUFS => "no buffer space available",
        libc::EISCONN => "socket is already connected",
        libc::ENETUNREACH => "network is unreachable",
        libc::EHOSTUNREACH => "no route to host",
        libc::EPROTONOSUPPORT => "protocol not supported",
        libc::ELOOP => "too many levels of symbolic links",
        libc::EROFS => "read-only file system",
        libc::E2BIG => "argument list too long",
        libc::ETXTBSY => "text file busy",
        libc::EISDIR => "is a directory",
        _ => "system error",
    }
}

#[cfg(test)]
mod strerror_tests {
    /// Every errno this library's own code returns has its own text, never "system error":
    /// the `libc::E*` names in `src/` are read at test time.
    #[test]
    fn every_errno_the_library_returns_has_a_text() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut names = std::collections::BTreeSet::new();
        let mut dirs = vec![src];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, _) in text.match_indices("libc::E") {
                        let name: String = text[i + 6..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit()).collect();
                        if name.len() > 1 && !name.starts_with("EPOLL") && name != "EFD" {
                            names.insert(name);
                        }
                    }
                }
            }
        }
        assert!(names.contains("EOPNOTSUPP") && names.len() > 20, "{names:?}");
        let table: std::collections::HashMap<&str, i32> = [
            ("EACCES", libc::EACCES),
            ("EADDRINUSE", libc::EADDRINUSE),
            ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
            ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
            ("EAGAIN", libc::EAGAIN),
            ("EALREADY", libc::EALREADY),
            ("EBADF", libc::EBADF),
            ("EBUSY", libc::EBUSY),
            ("ECHILD", libc::ECHILD),
            ("ECANCELED", libc::ECANCELED),
            ("ECONNABORTED", libc::ECONNABORTED),
            ("ECONNREFUSED", libc::ECONNREFUSED),
            ("ECONNRESET", libc::ECONNRESET),
            ("EEXIST", libc::EEXIST),
            ("EFAULT", libc::EFAULT),
            ("EINTR", libc::EINTR),
            ("EINVAL", libc::EINVAL),
            ("EIO", libc::EIO),
            ("EMFILE", libc::EMFILE),
            ("EMSGSIZE", libc::EMSGSIZE),
            ("ENAMETOOLONG", libc::ENAMETOOLONG),
            ("ENOENT", libc::ENOENT),
            ("ENOEXEC", libc::ENOEXEC),
            ("ENOMEM", libc::ENOMEM),
            ("ENOSPC", libc::ENOSPC),
            ("ENOSYS", libc::ENOSYS),
            ("ENOTCONN", libc::ENOTCONN),
            ("ENOTDIR", libc::ENOTDIR),
            ("ENOTSOCK", libc::ENOTSOCK),
            ("EOPNOTSUPP", libc::EOPNOTSUPP),
            ("EPERM", libc::EPERM),
            ("EPIPE", libc::EPIPE),
            ("EPROTO", libc::EPROTO),
            ("ESRCH", libc::ESRCH),
            ("ETIMEDOUT", libc::ETIMEDOUT),
            ("ENFILE", libc::ENFILE),
            ("ENOBUFS", libc::ENOBUFS),
            ("EISCONN", libc::EISCONN),
            ("ENETUNREACH", libc::ENETUNREACH),
            ("EHOSTUNREACH", libc::EHOSTUNREACH),
            ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
            ("ELOOP", libc::ELOOP),
            ("EROFS", libc::EROFS),
            ("E2BIG", libc::E2BIG),
            ("ETXTBSY", libc::ETXTBSY),
            ("EISDIR", libc::EISDIR),
        ]
        .into_iter()
        .collect();
        for name in &names {
            let errno =
                *table.get(name.as_str()).unwrap_or_else(|| panic!("{name} is used in src/: add it to this table and to errno_text"));
            assert_ne!(super::errno_text(errno), "system error", "{name} has no text of its own");
        }
        // The Node addon returns ECANCELED too.
        assert_ne!(super::errno_text(libc::ECANCELED), "system error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_text_has_no_rust_suffix() {
        let e = Error::io("bind 127.0.0.1:80", io::Error::from_raw_os_error(libc::EADDRINUSE));
        assert_eq!(e.code, -libc::EADDRINUSE);
        assert_eq!(e.message, "bind 127.0.0.1:80: Address in use".replace("in use", "already in use"));
        let e = Error::from(io::Error::from_raw_os_error(libc::ENOENT));
        assert!(!e.message.contains("os error"), "{}", e.message);
        let custom = io::Error::other("custom (os error 1)");
        assert_eq!(io_text(&custom), "custom (os error 1)");
    }
}
