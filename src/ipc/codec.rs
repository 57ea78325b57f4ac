//! Line framing with fd attribution.
//!
//! On Linux a stream `recvmsg` never returns data from before an fd-carrying segment together
//! with that segment, and Node writes the fd with the first byte of its `NODE_HANDLE` line
//! (§4.1). So an fd that arrives in a read belongs to the first line that *starts* in that
//! read. We bind it to exactly that line; the consumer closes it if that line is not a
//! `NODE_HANDLE` (§4.2 rule 2, the robust variant).

use std::os::fd::OwnedFd;

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    /// How far `buf` has been searched for `\n`.
    scanned: usize,
    /// `None`: the process-wide cap (`ipc::max_line`).
    max_line: Option<usize>,
    /// An fd and the offset (in `buf`) of the line it belongs to.
    fd_at: Option<(usize, OwnedFd)>,
}

/// One complete line (without the `\n`) and the fd bound to it, if any.
pub struct Line<'a> {
    pub text: &'a [u8],
    pub fd: Option<OwnedFd>,
}

impl Decoder {
    pub fn new(max_line: usize) -> Decoder {
        Decoder { buf: Vec::with_capacity(4096), start: 0, scanned: 0, max_line: Some(max_line), fd_at: None }
    }

    /// A decoder that follows the process-wide cap (`cluster_set_max_message`).
    pub fn with_global_cap() -> Decoder {
        Decoder { max_line: None, ..Decoder::new(0) }
    }

    fn cap(&self) -> usize {
        self.max_line.unwrap_or_else(super::max_line)
    }

    /// Bytes held from an incomplete line.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Adds what one read brought. `fds` are the fds received with it (at most one is
    /// allowed). Call `next_line` until it returns `None` afterwards.
    pub fn feed(&mut self, data: &[u8], mut fds: Vec<OwnedFd>) -> Result<()> {
        if fds.len() > 1 {
            return Err(Error::protocol(format!("{} fds arrived with one message; Node sends one", fds.len())));
        }
        self.compact();
        let base = self.buf.len();
        if let Some(fd) = fds.pop() {
            if self.fd_at.is_some() {
                return Err(Error::protocol("a second fd arrived before the first one's line ended"));
            }
            let at = if base == self.start {
                base
            } else {
                match data.iter().position(|&b| b == b'\n') {
                    Some(p) => base + p + 1,
                    None => return Err(Error::protocol("an fd arrived in the middle of a line")),
                }
            };
            if at >= base + data.len() {
                return Err(Error::protocol("an fd arrived without a line"));
            }
            self.fd_at = Some((at, fd));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete line, or `None` (more data needed). A line over the cap or a blank
    /// line is an error.
    pub fn next_line(&mut self) -> Option<Result<Line<'_>>> {
        let tail = &self.buf[self.scanned..];
        let Some(pos) = memchr(tail) else {
            self.scanned = self.buf.len();
            if self.buffered() > self.cap() {
                return Some(Err(Error::protocol(format!("a line longer than {} bytes arrived", self.cap()))));
            }
            return None;
        };
        let (s, e) = (self.start, self.scanned + pos);
        self.start = e + 1;
        self.scanned = self.start;
        if e - s > self.cap() {
            return Some(Err(Error::protocol(format!("a line longer than {} bytes arrived", self.cap()))));
        }
        let fd = match self.fd_at {
            Some((at, _)) if at == s => self.fd_at.take().map(|(_, fd)| fd),
            _ => None,
        };
        let text = &self.buf[s..e];
        if text.iter().all(|b| b.is_ascii_whitespace()) {
            return Some(Err(Error::protocol("a blank line arrived (Node would die of it)")));
        }
        Some(Ok(Line { text, fd }))
    }

    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.drain(..self.start);
        self.scanned -= self.start;
        if let Some((at, _)) = &mut self.fd_at {
            *at -= self.start;
        }
        self.start = 0;
    }
}

fn memchr(hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(d: &mut Decoder) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        while let Some(l) = d.next_line() {
            let l = l.unwrap();
            out.push((String::from_utf8(l.text.to_vec()).unwrap(), l.fd.is_some()));
        }
        out
    }

    fn devnull() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn splits_many_lines_and_keeps_tail() {
        let mut d = Decoder::new(1024);
        d.feed(b"{\"a\":1}\n{\"b\":2}\n{\"c\"", vec![]).unwrap();
        assert_eq!(lines(&mut d), vec![("{\"a\":1}".into(), false), ("{\"b\":2}".into(), false)]);
        d.feed(b":3}\r\n", vec![]).unwrap();
        assert_eq!(lines(&mut d), vec![("{\"c\":3}\r".into(), false)]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn fd_binds_to_first_line_starting_in_its_read() {
        let mut d = Decoder::new(1024);
        d.feed(b"{\"x\":", vec![]).unwrap();
        d.feed(b"1}\n{\"cmd\":\"NODE_HANDLE\"}\n", vec![devnull()]).unwrap();
        assert_eq!(lines(&mut d), vec![("{\"x\":1}".into(), false), ("{\"cmd\":\"NODE_HANDLE\"}".into(), true)]);
        d.feed(b"{\"h\":1}\n", vec![devnull()]).unwrap();
        assert_eq!(lines(&mut d), vec![("{\"h\":1}".into(), true)]);
    }

    #[test]
    fn fd_line_split_over_reads() {
        let mut d = Decoder::new(1024);
        d.feed(b"{\"cmd\":\"NODE_", vec![devnull()]).unwrap();
        assert!(lines(&mut d).is_empty());
        d.feed(b"HANDLE\"}\n", vec![]).unwrap();
        assert_eq!(lines(&mut d), vec![("{\"cmd\":\"NODE_HANDLE\"}".into(), true)]);
    }

    #[test]
    fn rejects_blank_oversized_and_fd_storms() {
        let mut d = Decoder::new(8);
        d.feed(b"\n", vec![]).unwrap();
        assert!(d.next_line().unwrap().is_err());
        let mut d = Decoder::new(8);
        d.feed(b"0123456789", vec![]).unwrap();
        assert!(d.next_line().unwrap().is_err());
        let mut d = Decoder::new(8);
        assert!(d.feed(b"1\n", vec![devnull(), devnull()]).is_err());
        let mut d = Decoder::new(8);
        d.feed(b"{", vec![]).unwrap();
        assert!(d.feed(b"no newline", vec![devnull()]).is_err());
    }
}
