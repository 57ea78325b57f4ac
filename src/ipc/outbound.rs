//! A user message as either role sends it (`process.send` / `worker.send`, §3.3, §4.1): one
//! JSON line (the caller's text without whitespace outside strings), wrapped in a
//! `NODE_HANDLE` envelope when a handle goes with it.

use std::os::fd::{BorrowedFd, OwnedFd};

use super::{user_json, wire};
use crate::error::Result;

/// Checks `json` and makes it one line (`user_json::user_line`: the text passes through).
/// With `fd`: checks that it is a socket a Node peer can take, duplicates it (close-on-exec;
/// the caller keeps theirs) and wraps the line in the envelope for its type. Returns the line (with `\n`) and the
/// duplicate, to send together.
pub fn user_message(json: &str, fd: Option<BorrowedFd<'_>>) -> Result<(Vec<u8>, Option<OwnedFd>)> {
    let line = user_json::user_line(json)?;
    let Some(fd) = fd else { return Ok((line, None)) };
    let (dup, ty) = crate::handle::prepare(fd)?;
    let mut env = Vec::with_capacity(line.len() + 64);
    wire::handle_envelope(&mut env, ty, &line);
    Ok((env, Some(dup)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn plain_and_with_a_handle() {
        let (line, fd) = user_message("{ \"a\": 1 }", None).unwrap();
        assert_eq!((line.as_slice(), fd.is_none()), (&b"{\"a\":1}\n"[..], true));

        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (line, fd) = user_message("\"hi\"", Some(a.as_fd())).unwrap();
        assert_eq!(line, b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":\"hi\"}\n");
        let dup = fd.unwrap();
        assert_ne!(std::os::fd::AsRawFd::as_raw_fd(&dup), std::os::fd::AsRawFd::as_raw_fd(&a));
    }

    #[test]
    fn refusals() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(user_message("{\"cmd\":\"NODE_CLUSTER\"}", Some(a.as_fd())).unwrap_err().code, -libc::EINVAL);
        assert_eq!(user_message("{", None).unwrap_err().code, -libc::EINVAL);
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(user_message("1", Some(f.as_fd())).unwrap_err().code, -libc::EINVAL);
    }
}
