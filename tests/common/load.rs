//! A real HTTP/1.1 load generator for the integration tests: `clients` threads send `GET /`
//! to a server that answers like `examples/hello.c` (`hello from worker <pid>\n`, with
//! `Content-Length` and `Connection: keep-alive|close`), over kept-alive connections or one
//! connection per request, for a duration and/or a number of requests. The report says who
//! answered (pids parsed from the bodies) and every request that failed, and why.
//!
//! Keep-alive follows the standard client retry rule (RFC 9110 §9.2.2; Go's net/http, Node's
//! http agent and browsers do the same): a request sent on a connection that already carried
//! a response, which meets EOF, a reset or a broken pipe before any byte of its response, met
//! the server closing that idle connection as the request went out. It is sent again, once,
//! on a new connection and counted in `retried`, not as a failure. Anything else that goes
//! wrong is a failure: a connect error, any error on a new connection, an error after some
//! response bytes, a timeout, a status other than 200, a body that is not
//! `hello from worker <pid>`.
//!
//! Nothing waits unbounded: connect, and each request's whole exchange (send and read), have
//! a timeout (`LoadOptions::io_timeout`); clients check a shared stop flag between requests;
//! `Load::stop` waits for them at most `stop_wait` and reports a client that did not finish
//! as a failure instead of hanging. Client threads never panic on I/O: every error becomes a
//! failure string.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default timeout of a connect, and of one request's whole exchange (send + response).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Failure strings kept in a report (all are counted in `LoadReport::failed`).
pub const MAX_FAILURES: usize = 1000;
/// A client pauses this long after a failure, so a server that is down does not turn the
/// clients into a busy loop of refused connects.
pub const FAILURE_PAUSE: Duration = Duration::from_millis(10);
/// Largest response head (status line + headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 1 << 20;

/// What to run: `clients` threads against `host:port`.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub host: IpAddr,
    pub port: u16,
    /// Client threads, each with one request in flight at a time.
    pub clients: usize,
    /// Reuse connections (`Connection: keep-alive`) until the server says `Connection: close`
    /// or closes; else one connection per request, sent with `Connection: close` and read to EOF.
    pub keep_alive: bool,
    /// Clients start no new request once this has elapsed since `start`.
    pub duration: Duration,
    /// At most this many requests in all clients (retries not counted separately).
    pub max_requests: Option<u64>,
    /// Timeout of a connect, and of one request's whole exchange (send and read the response).
    pub io_timeout: Duration,
}

impl LoadOptions {
    /// 8 keep-alive clients against 127.0.0.1:`port` for 1 s, no request cap, 5 s timeouts.
    pub fn new(port: u16) -> LoadOptions {
        LoadOptions {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            clients: 8,
            keep_alive: true,
            duration: Duration::from_secs(1),
            max_requests: None,
            io_timeout: IO_TIMEOUT,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// How long `Load::stop` waits for the clients: a request on a kept connection, then its
    /// resend on a new one (connect + exchange), with a margin.
    pub fn stop_wait(&self) -> Duration {
        self.io_timeout.saturating_mul(3).saturating_add(Duration::from_secs(2))
    }
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// 200 responses with a full body `hello from worker <pid>`.
    pub ok: u64,
    /// Successful responses per worker pid (parsed from the body).
    pub by_pid: BTreeMap<i32, u64>,
    /// The first `MAX_FAILURES` failures, each with the client, the request number, the
    /// connection (new, reused, resend) and the reason.
    pub failures: Vec<String>,
    /// Every failure, including those past `MAX_FAILURES`.
    pub failures_total: u64,
    /// Requests resent on a new connection after the server closed an idle kept connection
    /// as the request went out (not failures).
    pub retried: u64,
    /// TCP connections opened (successful connects).
    pub connections: u64,
    /// From `start` until the last client finished (or `stop` gave up waiting).
    pub elapsed: Duration,
}

impl LoadReport {
    /// Failed requests, all of them (the `failures` list is capped).
    pub fn failed(&self) -> usize {
        self.failures_total as usize
    }

    /// The pids that answered at least once.
    pub fn pids(&self) -> BTreeSet<i32> {
        self.by_pid.keys().copied().collect()
    }

    /// Successful responses per second of `elapsed`.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A summary line, then up to 20 failures: meant for assertion messages.
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok {} failed {} retried {} connections {} in {:.2?} ({:.0}/s), by pid {:?}",
            self.ok,
            self.failures_total,
            self.retried,
            self.connections,
            self.elapsed,
            self.rate(),
            self.by_pid
        )?;
        for failure in self.failures.iter().take(20) {
            write!(f, "\n  {failure}")?;
        }
        if self.failures_total > 20 {
            write!(f, "\n  ... {} more", self.failures_total - 20)?;
        }
        Ok(())
    }
}

/// A running load: its client threads.
pub struct Load {
    shared: Arc<Shared>,
    handles: Vec<(usize, JoinHandle<()>)>,
}

/// Starts `opts.clients` client threads and returns at once.
pub fn start(opts: LoadOptions) -> Load {
    let shared = Arc::new(Shared::new(opts));
    let mut handles = Vec::new();
    for index in 0..shared.opts.clients {
        shared.running.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        let spawned = std::thread::Builder::new().name(format!("load-client-{index}")).spawn(move || {
            let _done = Finished(&s);
            client(&s, index);
        });
        match spawned {
            Ok(h) => handles.push((index, h)),
            Err(e) => {
                shared.running.fetch_sub(1, Ordering::SeqCst);
                shared.failure(format!("client {index}: could not start its thread: {e}"));
            }
        }
    }
    Load { shared, handles }
}

impl Load {
    /// Successful responses so far.
    pub fn completed(&self) -> u64 {
        self.shared.ok.load(Ordering::SeqCst)
    }

    /// Failed requests so far.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Whether a client is still running (duration, request cap and stop not reached).
    pub fn running(&self) -> bool {
        self.shared.running.load(Ordering::SeqCst) > 0
    }

    /// Waits until `n` responses succeeded (true), at most `timeout` and no longer than the
    /// clients run (false).
    pub fn wait_completed(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.completed() >= n {
                return true;
            }
            if !self.running() || Instant::now() >= deadline {
                return self.completed() >= n;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the clients have finished on their own (duration or request cap), at most
    /// `timeout`; then stops them like `stop`.
    pub fn finish(self, timeout: Duration) -> LoadReport {
        let deadline = Instant::now() + timeout;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.stop()
    }

    /// Asks the clients to stop (a request in flight completes, bounded by its timeout),
    /// waits for them at most `LoadOptions::stop_wait`, and returns the report. A client that
    /// did not finish in time is left running (it stops at its next check) and is reported
    /// as a failure.
    pub fn stop(mut self) -> LoadReport {
        let shared = self.shared.clone();
        shared.stop.store(true, Ordering::SeqCst);
        let wait = shared.opts.stop_wait();
        let deadline = Instant::now() + wait;
        let mut pending = std::mem::take(&mut self.handles);
        loop {
            let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, h)| h.is_finished());
            pending = rest;
            for (index, h) in done {
                if let Err(panic) = h.join() {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    shared.failure(format!("client {index}: thread panicked: {what}"));
                }
            }
            if pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for (index, _) in &pending {
            shared.failure(format!("client {index}: did not finish within {wait:?} of stop (left running)"));
        }
        let end = if pending.is_empty() { lock(&shared.last_end).unwrap_or_else(Instant::now) } else { Instant::now() };
        LoadReport {
            ok: shared.ok.load(Ordering::SeqCst),
            by_pid: lock(&shared.by_pid).clone(),
            failures: lock(&shared.failures).clone(),
            failures_total: shared.failed.load(Ordering::SeqCst),
            retried: shared.retried.load(Ordering::SeqCst),
            connections: shared.connections.load(Ordering::SeqCst),
            elapsed: end.saturating_duration_since(shared.started),
        }
    }
}

/// A `Load` dropped without `stop` (a test failed meanwhile) still tells its clients to stop.
impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// What the clients share: options, counters, results.
struct Shared {
    opts: LoadOptions,
    started: Instant,
    /// None: a duration too long to add to an Instant (no time limit).
    deadline: Option<Instant>,
    stop: AtomicBool,
    /// Requests claimed against `max_requests`.
    issued: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    connections: AtomicU64,
    /// Client threads not finished yet.
    running: AtomicUsize,
    by_pid: Mutex<BTreeMap<i32, u64>>,
    failures: Mutex<Vec<String>>,
    /// When the last client finished.
    last_end: Mutex<Option<Instant>>,
}

impl Shared {
    fn new(opts: LoadOptions) -> Shared {
        let started = Instant::now();
        Shared {
            deadline: started.checked_add(opts.duration),
            opts,
            started,
            stop: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            by_pid: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(Vec::new()),
            last_end: Mutex::new(None),
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Takes one request from the `max_requests` budget.
    fn claim(&self) -> bool {
        self.opts.max_requests.is_none_or(|max| self.issued.fetch_add(1, Ordering::SeqCst) < max)
    }

    fn success(&self, pid: i32) {
        *lock(&self.by_pid).entry(pid).or_insert(0) += 1;
        self.ok.fetch_add(1, Ordering::SeqCst);
    }

    fn failure(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut failures = lock(&self.failures);
        if failures.len() < MAX_FAILURES {
            failures.push(what);
        }
    }
}

/// A mutex guard even if a holder panicked (the data are counters, still meaningful).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Marks a client finished when its thread ends, however it ends.
struct Finished<'a>(&'a Shared);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        *lock(&self.0.last_end) = Some(Instant::now());
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One client: requests one after the other until stop, duration or the request cap.
fn client(shared: &Shared, index: usize) {
    let mut kept: Option<Conn> = None;
    let mut seq = 0u64;
    while !shared.should_stop() && shared.claim() {
        seq += 1;
        let result = if shared.opts.keep_alive { keep_alive_request(shared, &mut kept) } else { close_request(shared) };
        match result {
            Ok(pid) => shared.success(pid),
            Err(failure) => {
                shared.failure(format!("client {index}, request {seq}, {failure}"));
                std::thread::sleep(FAILURE_PAUSE);
            }
        }
    }
}

/// A failed request: on which connection, and what went wrong.
struct Failure {
    conn: String,
    reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.conn, self.reason)
    }
}

fn fail(conn: impl Into<String>, reason: impl fmt::Display) -> Failure {
    Failure { conn: conn.into(), reason: reason.to_string() }
}

const NEW: &str = "new connection";
const RESEND: &str = "new connection (resend after the server closed the idle kept one)";

/// One request in keep-alive mode: on the kept connection if there is one (resent once on a
/// new connection if the server closed it as the request went out), else on a new one. The
/// connection is kept unless the response or an error ends it.
fn keep_alive_request(shared: &Shared, kept: &mut Option<Conn>) -> Result<i32, Failure> {
    let mut label = NEW;
    if let Some(mut conn) = kept.take() {
        match exchange(shared, &mut conn, false) {
            Ok(resp) => {
                if !resp.close {
                    *kept = Some(conn);
                }
                return check(&resp).map_err(|e| fail(format!("reused connection ({} responses before)", resp.seq), e));
            }
            Err(e) if e.idle_close() => {
                shared.retried.fetch_add(1, Ordering::SeqCst);
                label = RESEND;
            }
            Err(e) => return Err(fail(format!("reused connection ({} responses before)", conn.responses), e)),
        }
    }
    let mut conn = Conn::open(shared).map_err(|e| fail(label, e))?;
    let resp = exchange(shared, &mut conn, false).map_err(|e| fail(label, e))?;
    if !resp.close {
        *kept = Some(conn);
    }
    check(&resp).map_err(|e| fail(label, e))
}

/// One request in close mode: a new connection, `Connection: close`, read to EOF.
fn close_request(shared: &Shared) -> Result<i32, Failure> {
    let mut conn = Conn::open(shared).map_err(|e| fail(NEW, e))?;
    let resp = exchange(shared, &mut conn, true).map_err(|e| fail(NEW, e))?;
    check(&resp).map_err(|e| fail(NEW, e))
}

/// Sends `GET /` on `conn` and reads the response (to EOF in close mode).
fn exchange(shared: &Shared, conn: &mut Conn, close: bool) -> Result<Response, ExchangeError> {
    let deadline = Instant::now() + shared.opts.io_timeout;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: libcluster-tests\r\nConnection: {}\r\n\r\n",
        shared.opts.addr(),
        if close { "close" } else { "keep-alive" }
    );
    conn.send(request.as_bytes(), deadline).map_err(ExchangeError::Send)?;
    let resp = conn.read_response(deadline, close).map_err(ExchangeError::Read)?;
    Ok(resp)
}

/// A 200 response whose body is `hello from worker <pid>` (trailing newline optional): the pid.
fn check(resp: &Response) -> Result<i32, String> {
    if resp.status != 200 {
        return Err(format!("status {} {:?}, body {:?}", resp.status, resp.reason, preview(&resp.body)));
    }
    parse_pid(&resp.body).ok_or_else(|| format!("200 with a body that is not \"hello from worker <pid>\": {:?}", preview(&resp.body)))
}

/// The pid in `hello from worker <pid>` (a trailing newline allowed).
pub fn parse_pid(body: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let pid = text.strip_prefix("hello from worker ")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|p| *p > 0)
}

fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if bytes.len() > 200 { format!("{s}... ({} bytes)", bytes.len()) } else { s }
}

/// A request that did not get a complete response.
enum ExchangeError {
    Send(io::Error),
    Read(ReadError),
}

impl ExchangeError {
    /// EOF, reset or broken pipe before any byte of the response: on a reused connection,
    /// the server closed it while idle as the request went out.
    fn idle_close(&self) -> bool {
        match self {
            ExchangeError::Send(e) => closed_by_peer(e.kind()),
            ExchangeError::Read(ReadError::Eof { got: 0 }) => true,
            ExchangeError::Read(ReadError::Io { err, got: 0 }) => closed_by_peer(err.kind()),
            ExchangeError::Read(_) => false,
        }
    }
}

fn closed_by_peer(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof)
}

fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Send(e) if is_timeout(e.kind()) => write!(f, "send timed out"),
            ExchangeError::Send(e) => write!(f, "send: {e}"),
            ExchangeError::Read(e) => e.fmt(f),
        }
    }
}

/// Why a response could not be read; `got` is how many of its bytes had arrived.
enum ReadError {
    Io {
        err: io::Error,
        got: usize,
    },
    Eof {
        got: usize,
    },
    /// The server sent something that is not a well-formed response, or data after it.
    Protocol(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io { err, got } if is_timeout(err.kind()) => write!(f, "timed out reading the response ({got} bytes of it so far)"),
            ReadError::Io { err, got } => write!(f, "read: {err} (after {got} response bytes)"),
            ReadError::Eof { got: 0 } => write!(f, "EOF before any byte of the response"),
            ReadError::Eof { got } => write!(f, "EOF after {got} bytes of an incomplete response"),
            ReadError::Protocol(what) => write!(f, "bad response: {what}"),
        }
    }
}

/// A complete response.
struct Response {
    status: u16,
    reason: String,
    body: Vec<u8>,
    /// The connection ends after it (`Connection: close`, HTTP/1.0, or a body delimited by EOF).
    close: bool,
    /// Responses the connection carried before this one.
    seq: u64,
}

/// A client connection and the bytes read from it that are not consumed yet.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Complete responses read from it.
    responses: u64,
}

impl Conn {
    fn open(shared: &Shared) -> Result<Conn, String> {
        let addr = shared.opts.addr();
        let stream = TcpStream::connect_timeout(&addr, shared.opts.io_timeout)
            .map_err(|e| if is_timeout(e.kind()) { format!("connect to {addr} timed out") } else { format!("connect to {addr}: {e}") })?;
        shared.connections.fetch_add(1, Ordering::SeqCst);
        // Best effort: one write per request, so Nagle would not delay anything anyway.
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, buf: Vec::with_capacity(1024), responses: 0 })
    }

    fn send(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        self.stream.set_write_timeout(Some(remaining(deadline)?))?;
        self.stream.write_all(bytes)
    }

    /// Reads more bytes (bounded by `deadline`); Ok(0) at EOF.
    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        let got = self.buf.len();
        let io = |err| ReadError::Io { err, got };
        self.stream.set_read_timeout(Some(remaining(deadline).map_err(io)?)).map_err(io)?;
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// Reads until `buf` holds at least `n` bytes.
    fn need(&mut self, n: usize, deadline: Instant) -> Result<(), ReadError> {
        while self.buf.len() < n {
            if self.fill(deadline)? == 0 {
                return Err(ReadError::Eof { got: self.buf.len() });
            }
        }
        Ok(())
    }

    /// Reads until `buf[from..]` holds CRLF (a line of at most `MAX_HEAD`); its index.
    fn line_end(&mut self, from: usize, deadline: Instant) -> Result<usize, ReadError> {
        loop {
            if let Some(i) = find(&self.buf[from.min(self.buf.len())..], b"\r\n") {
                return Ok(from + i);
            }
            if self.buf.len().saturating_sub(from) > MAX_HEAD {
                return Err(ReadError::Protocol(format!("a line over {MAX_HEAD} bytes")));
            }
            if self.fill(deadline)? == 0 {
                return Err(ReadError::Eof { got: self.buf.len() });
            }
        }
    }

    /// Reads one response (`buf` holds no earlier bytes: one request in flight). With
    /// `to_eof` (close mode), then reads until the server closes, and any byte after the
    /// response is an error; else such bytes are an error at once.
    fn read_response(&mut self, deadline: Instant, to_eof: bool) -> Result<Response, ReadError> {
        if !self.buf.is_empty() {
            return Err(ReadError::Protocol(format!("{} bytes arrived before the request: {:?}", self.buf.len(), preview(&self.buf))));
        }
        // The head; interim 1xx responses (not 101) are skipped.
        let (head_len, status, reason, version, headers) = loop {
            let end = loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    break i;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(ReadError::Protocol(format!("no end of the head within {MAX_HEAD} bytes")));
                }
                if self.fill(deadline)? == 0 {
                    return Err(ReadError::Eof { got: self.buf.len() });
                }
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            let (status, reason, version, headers) = parse_head(&head).map_err(ReadError::Protocol)?;
            if (100..200).contains(&status) && status != 101 {
                self.buf.drain(..end + 4);
                continue;
            }
            break (end + 4, status, reason, version, headers);
        };
        let header = |name: &str| headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        let has_token = |name: &str, token: &str| header(name).iter().any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)));
        let mut close = if version == "HTTP/1.0" { !has_token("connection", "keep-alive") } else { has_token("connection", "close") };

        let chunked = header("transfer-encoding")
            .last()
            .is_some_and(|v| v.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked")));
        let lengths = header("content-length");
        let (body, consumed) = if status == 204 || status == 304 {
            (Vec::new(), head_len)
        } else if chunked {
            self.read_chunked(head_len, deadline)?
        } else if let Some(first) = lengths.first() {
            if lengths.iter().any(|l| l != first) {
                return Err(ReadError::Protocol(format!("conflicting Content-Length headers {lengths:?}")));
            }
            let n: usize = first.parse().map_err(|_| ReadError::Protocol(format!("bad Content-Length {first:?}")))?;
            if n > MAX_BODY {
                return Err(ReadError::Protocol(format!("Content-Length {n} over {MAX_BODY}")));
            }
            self.need(head_len + n, deadline).map_err(|e| match e {
                ReadError::Eof { got } => ReadError::Protocol(format!("short body: EOF after {} of {n} body bytes", got - head_len)),
                other => other,
            })?;
            (self.buf[head_len..head_len + n].to_vec(), head_len + n)
        } else {
            // Delimited by EOF.
            close = true;
            while self.fill(deadline)? > 0 {
                if self.buf.len() - head_len > MAX_BODY {
                    return Err(ReadError::Protocol(format!("body over {MAX_BODY} bytes")));
                }
            }
            (self.buf[head_len..].to_vec(), self.buf.len())
        };
        if to_eof {
            // Connection: close was asked; the server must close, and send nothing more.
            while self.buf.len() == consumed {
                match self.fill(deadline) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(ReadError::Io { err, .. }) if is_timeout(err.kind()) => {
                        return Err(ReadError::Protocol(
                            "the server did not close the connection after the response (Connection: close)".into(),
                        ));
                    }
                    Err(ReadError::Io { err, .. }) => return Err(ReadError::Protocol(format!("read after the complete response: {err}"))),
                    Err(e) => return Err(e),
                }
            }
            close = true;
        }
        if self.buf.len() > consumed {
            return Err(ReadError::Protocol(format!(
                "{} bytes after the response: {:?}",
                self.buf.len() - consumed,
                preview(&self.buf[consumed..])
            )));
        }
        self.buf.clear();
        let seq = self.responses;
        self.responses += 1;
        Ok(Response { status, reason, body, close, seq })
    }

    /// A chunked body starting at `buf[start]`: (body, bytes consumed up to the end of it).
    fn read_chunked(&mut self, start: usize, deadline: Instant) -> Result<(Vec<u8>, usize), ReadError> {
        let mut pos = start;
        let mut body = Vec::new();
        loop {
            let end = self.line_end(pos, deadline)?;
            let line = String::from_utf8_lossy(&self.buf[pos..end]).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| ReadError::Protocol(format!("bad chunk size line {line:?}")))?;
            pos = end + 2;
            if size == 0 {
                // Trailer lines up to an empty one.
                loop {
                    let end = self.line_end(pos, deadline)?;
                    let empty = end == pos;
                    pos = end + 2;
                    if empty {
                        return Ok((body, pos));
                    }
                }
            }
            if body.len() + size > MAX_BODY {
                return Err(ReadError::Protocol(format!("chunked body over {MAX_BODY} bytes")));
            }
            self.need(pos + size + 2, deadline)?;
            body.extend_from_slice(&self.buf[pos..pos + size]);
            if &self.buf[pos + size..pos + size + 2] != b"\r\n" {
                return Err(ReadError::Protocol("chunk not followed by CRLF".into()));
            }
            pos += size + 2;
        }
    }
}

/// Status line and headers: (status, reason, version, [(lowercase name, value)]).
type Head = (u16, String, String, Vec<(String, String)>);

fn parse_head(head: &str) -> Result<Head, String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let reason = parts.next().unwrap_or("").to_string();
    if !version.starts_with("HTTP/1.") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status = code.parse().map_err(|_| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Err(format!("bad header line {line:?}")) };
        if name.is_empty() || name.trim() != name {
            return Err(format!("bad header name {name:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok((status, reason, version.to_string(), headers))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Time left before `deadline`, or a timeout error once it passed.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() { Err(io::Error::new(ErrorKind::TimedOut, "request deadline passed")) } else { Ok(left) }
}
