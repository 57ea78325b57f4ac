//! Line framing with fd attribution.
//!
//! A stream `recvmsg` on Linux may glue fd-less segments in front of an fd-carrying one, but
//! stops right after the segment that carries fds (`unix_stream_read_generic`), and Node
//! (like us) writes an fd with the first byte of its `NODE_HANDLE` line (§4.1). So an fd that
//! arrives in a read belongs to a line that *starts* in that read: the first of those that
//! is a `NODE_HANDLE`. The decoder marks such lines as eligible; the consumer, which parses
//! them, takes the fd for the `NODE_HANDLE` one. An fd that no eligible line takes once
//! every line starting in its read is complete arrived with something else: a protocol
//! error (§4.2 rule 2, the robust variant: a stray fd is never handed to a later line).

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
    /// A pending fd and the offsets in `buf` where the read that brought it began and ended:
    /// only a line that starts in that read may take it.
    fd: Option<(usize, usize, OwnedFd)>,
}

/// One complete line (without the `\n`).
pub struct Line<'a> {
    pub text: &'a [u8],
    /// The pending fd may belong to this line: take it with `Decoder::take_fd` if the line
    /// is a `NODE_HANDLE`.
    pub fd_eligible: bool,
}

impl Decoder {
    pub fn new(max_line: usize) -> Decoder {
        Decoder { buf: Vec::with_capacity(4096), start: 0, scanned: 0, max_line: Some(max_line), fd: None }
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

    /// Adds what one read brought, with the fds received with it (Node sends one at most).
    /// Then call `next_line` until `None`, and `finish_read`.
    pub fn feed(&mut self, data: &[u8], mut fds: Vec<OwnedFd>) -> Result<()> {
        if fds.len() > 1 {
            return Err(Error::protocol(format!("{} fds arrived with one message; Node sends one", fds.len())));
        }
        self.compact();
        let base = self.buf.len();
        if let Some(fd) = fds.pop() {
            if self.fd.is_some() {
                return Err(Error::protocol("a second fd arrived before a NODE_HANDLE line took the first"));
            }
            if data.is_empty() {
                return Err(Error::protocol("an fd arrived without data"));
            }
            self.fd = Some((base, base + data.len(), fd));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete line, or `None` (more data needed). A line over the cap or a blank
    /// line is an error.
    pub fn next_line(&mut self) -> Option<Result<Line<'_>>> {
        let tail = &self.buf[self.scanned..];
        let Some(pos) = tail.iter().position(|&b| b == b'\n') else {
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
        let text = &self.buf[s..e];
        if text.iter().all(|b| b.is_ascii_whitespace()) {
            return Some(Err(Error::protocol("a blank line arrived (Node would die of it)")));
        }
        let fd_eligible = self.fd.as_ref().is_some_and(|(at, end, _)| (*at..*end).contains(&s));
        Some(Ok(Line { text, fd_eligible }))
    }

    /// Takes the pending fd (for an eligible `NODE_HANDLE` line).
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take().map(|(_, _, fd)| fd)
    }

    /// After the lines of a read: an fd that no line took, while no line that started in its
    /// read is still incomplete, came with something that is not a `NODE_HANDLE`. It is
    /// closed and reported.
    pub fn finish_read(&mut self) -> Result<()> {
        let Some((at, end, _)) = &self.fd else { return Ok(()) };
        let incomplete_from_its_read = self.buffered() > 0 && (*at..*end).contains(&self.start);
        if !incomplete_from_its_read {
            self.fd = None;
            return Err(Error::protocol("an fd arrived with a message that is not NODE_HANDLE"));
        }
        Ok(())
    }

    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.drain(..self.start);
        self.scanned -= self.start;
        if let Some((at, end, _)) = &mut self.fd {
            *at = at.saturating_sub(self.start);
            *end = end.saturating_sub(self.start);
        }
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains lines, taking the fd for lines that contain "NODE_HANDLE" (the consumer's job).
    fn lines(d: &mut Decoder) -> Result<Vec<(String, bool)>> {
        let mut out = Vec::new();
        loop {
            let (text, eligible) = match d.next_line() {
                None => break,
                Some(l) => {
                    let l = l?;
                    (String::from_utf8(l.text.to_vec()).unwrap(), l.fd_eligible)
                }
            };
            let took = eligible && text.contains("\"NODE_HANDLE\"") && d.take_fd().is_some();
            out.push((text, took));
        }
        d.finish_read()?;
        Ok(out)
    }

    fn devnull() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn splits_many_lines_and_keeps_tail() {
        let mut d = Decoder::new(1024);
        d.feed(b"{\"a\":1}\n{\"b\":2}\n{\"c\"", vec![]).unwrap();
        assert_eq!(lines(&mut d).unwrap(), vec![("{\"a\":1}".into(), false), ("{\"b\":2}".into(), false)]);
        d.feed(b":3}\r\n", vec![]).unwrap();
        assert_eq!(lines(&mut d).unwrap(), vec![("{\"c\":3}\r".into(), false)]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn fd_goes_to_the_handle_line_even_behind_glued_lines() {
        // The kernel may glue fd-less segments before the fd-carrying one in one read.
        let mut d = Decoder::new(1024);
        d.feed(b"{\"x\":", vec![]).unwrap();
        assert!(lines(&mut d).unwrap().is_empty());
        d.feed(b"1}\n{\"y\":2}\n{\"cmd\":\"NODE_HANDLE\"}\n", vec![devnull()]).unwrap();
        assert_eq!(
            lines(&mut d).unwrap(),
            vec![("{\"x\":1}".into(), false), ("{\"y\":2}".into(), false), ("{\"cmd\":\"NODE_HANDLE\"}".into(), true)]
        );
    }

    #[test]
    fn fd_waits_for_its_line_split_over_reads() {
        let mut d = Decoder::new(1024);
        d.feed(b"{\"cmd\":\"NODE_", vec![devnull()]).unwrap();
        assert!(lines(&mut d).unwrap().is_empty());
        d.feed(b"HANDLE\"}\n", vec![]).unwrap();
        assert_eq!(lines(&mut d).unwrap(), vec![("{\"cmd\":\"NODE_HANDLE\"}".into(), true)]);
    }

    #[test]
    fn stray_fd_is_an_error() {
        let mut d = Decoder::new(1024);
        d.feed(b"{\"h\":1}\n", vec![devnull()]).unwrap();
        assert!(lines(&mut d).is_err());
        // A line that started before the fd's read cannot take it.
        let mut d = Decoder::new(1024);
        d.feed(b"{\"cmd\":", vec![]).unwrap();
        lines(&mut d).unwrap();
        d.feed(b"\"NODE_HANDLE\"}\n", vec![devnull()]).unwrap();
        assert!(lines(&mut d).is_err());
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
        let mut d = Decoder::new(64);
        d.feed(b"{\"cmd\":\"NODE_", vec![devnull()]).unwrap();
        assert!(d.feed(b"HANDLE\"}\n", vec![devnull()]).is_err());
    }
}
