//! Checking an fd a user wants to send with a message: only sockets Node can wrap (TCP,
//! Unix stream, UDP) may cross the channel; anything else makes a Node peer abort (§4.1).

#![forbid(unsafe_code)]

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::{Error, Result};
use crate::ipc::wire::HandleType;
use crate::sys::{fd, socket};

/// Duplicates `fd` (close-on-exec; the caller keeps theirs) and tells its envelope type.
pub fn prepare(fd: BorrowedFd<'_>) -> Result<(OwnedFd, HandleType)> {
    let (domain, ty, listening) = socket::describe(fd).map_err(|e| {
        Error::errno(
            libc::EINVAL,
            format!("the fd to send is not a socket ({}); Node peers abort on such handles", crate::error::io_text(&e)),
        )
    })?;
    let inet = domain == libc::AF_INET || domain == libc::AF_INET6;
    let kind = match (ty, listening) {
        (libc::SOCK_STREAM, true) if inet || domain == libc::AF_UNIX => HandleType::Server,
        (libc::SOCK_STREAM, false) if inet || domain == libc::AF_UNIX => HandleType::Socket,
        (libc::SOCK_DGRAM, _) if inet => HandleType::Dgram { ipv6: domain == libc::AF_INET6 },
        _ => return Err(Error::errno(libc::EINVAL, "only TCP, Unix stream and UDP sockets can be sent")),
    };
    let dup = fd::dup_cloexec_min(fd, 0).map_err(|e| Error::io("dup", e))?;
    Ok((dup, kind))
}
