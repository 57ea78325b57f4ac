//! systemd integration proven on the demo (`target/examples/hello`) with a fake
//! `NOTIFY_SOCKET`: a Unix datagram socket bound in a temporary directory, read on a thread
//! (each datagram with the time it came and the fds it carried). No systemd runs here:
//! `systemd-socket-activate` stands in for a `.socket` unit, the test for the manager.
//!
//! * socket-activated (`systemd-socket-activate -l 127.0.0.1:PORT`, which execs the demo
//!   only once a first client connects): that first client is served on the inherited
//!   socket; `READY=1` comes once both workers are ready, then on HUP `RELOADING=1` with a
//!   `MONOTONIC_USEC` of this clock, then `READY=1` again, then on TERM `STOPPING=1`, in
//!   that order;
//! * with `WATCHDOG_USEC`, `WATCHDOG=1` comes every half of it, stops within two intervals
//!   once every worker is SIGSTOPped, and comes back once they continue;
//! * each listener the primary binds arrives with `FDSTORE=1` and its `FDNAME`, carrying an
//!   fd bound where the workers serve; a primary killed and started again with that fd
//!   (as systemd passes its store: `LISTEN_FDS`) serves a client that connected while no
//!   primary ran;
//! * a program that does not opt in sends nothing, `NOTIFY_SOCKET` set or not.
//!
//! Every wait is bounded; every process is killed by pid on drop (`Demo`).

mod common;

use std::io::{IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::demo::{Demo, hello_bin, worker_line};
use common::{TIMEOUT, free_port};

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// One datagram the fake manager received.
struct Datagram {
    at: Instant,
    text: String,
    fds: Vec<OwnedFd>,
}

/// A fake `NOTIFY_SOCKET`: the socket, its directory (removed on drop) and what came.
struct Manager {
    dir: PathBuf,
    path: PathBuf,
    got: Arc<Mutex<Vec<Datagram>>>,
    stop: Arc<AtomicBool>,
}

impl Manager {
    fn new(tag: &str) -> Manager {
        let dir = std::env::temp_dir().join(format!("lc-sd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some((text, fds)) = recv(&sock) {
                    g.lock().unwrap().push(Datagram { at: Instant::now(), text, fds });
                }
            }
        });
        Manager { dir, path, got, stop }
    }

    fn texts(&self) -> Vec<String> {
        self.got.lock().unwrap().iter().map(|d| d.text.clone()).collect()
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// The index of the first datagram from `from` on with a line `line`, waiting (bounded).
    fn expect(&self, from: usize, line: &str) -> usize {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            {
                let got = self.got.lock().unwrap();
                if let Some(i) = (from..got.len()).find(|&i| got[i].text.lines().any(|l| l == line)) {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no {line:?} from datagram {from} on; got {:#?}", self.texts());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Times of the `WATCHDOG=1` datagrams.
    fn pings(&self) -> Vec<Instant> {
        self.got.lock().unwrap().iter().filter(|d| d.text.lines().any(|l| l == "WATCHDOG=1")).map(|d| d.at).collect()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One datagram and the fds it carried (`MSG_CMSG_CLOEXEC`), `None` on the read timeout.
fn recv(sock: &UnixDatagram) -> Option<(String, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).ok()?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel installed these fds in this process for us; nothing else owns them.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let n = msg.bytes;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), fds))
}

/// `CLOCK_MONOTONIC` in µs, as `MONOTONIC_USEC` is.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// The demo under `systemd-socket-activate -l 127.0.0.1:PORT`, `env` passed with `-E`. The
/// launcher only execs the demo once a client connects: this connects one, sends a
/// request, and returns its answer with the demo.
fn activated(env: &[(&str, String)]) -> (Demo, u16, String) {
    let hello = hello_bin();
    let port = free_port();
    let mut cmd = Command::new(ACTIVATE);
    cmd.arg("-l").arg(format!("127.0.0.1:{port}"));
    for (k, v) in env {
        cmd.arg("-E").arg(format!("{k}={v}"));
    }
    cmd.arg("-E").arg("HOST=127.0.0.1").arg("-E").arg(format!("PORT={port}"));
    cmd.arg(&hello);
    let demo = Demo::spawn(cmd);
    let deadline = Instant::now() + TIMEOUT;
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "systemd-socket-activate never listened on {port}: {e}\n{}", demo.output());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    (demo, port, answer)
}

/// Pids of the workers that said they are listening.
fn listening_pids(demo: &Demo) -> Vec<i32> {
    let mut pids: Vec<i32> = demo.lines_from(0).iter().filter_map(|l| worker_line(&l.text, "listening")).collect();
    pids.sort();
    pids.dedup();
    pids
}

#[test]
fn ready_reloading_ready_stopping_in_order_under_socket_activation() {
    let mgr = Manager::new("order");
    let (mut demo, port, first) = activated(&[("WORKERS", "2".into()), ("NOTIFY_SOCKET", mgr.path.display().to_string())]);
    assert!(
        first.contains("200 OK") && first.contains("hello from worker"),
        "the first client was not served: {first:?}\n{}",
        demo.output()
    );
    demo.expect(0, TIMEOUT, "the adopted socket", |l| l.starts_with("adopted 1 socket-activated listener"));

    let ready = mgr.expect(0, "READY=1");
    let texts = mgr.texts();
    assert!(texts[ready].contains("STATUS=2/2 workers ready, generation 1, breaker closed"), "READY=1 with its status: {:?}", texts[ready]);
    assert!(!texts[..ready].iter().any(|t| t.contains("RELOADING=1") || t.contains("STOPPING=1")), "{texts:#?}");
    assert!(common::http_get(port).unwrap().starts_with("hello from worker"));

    let mark = demo.mark();
    let before = monotonic_usec();
    demo.signal(libc::SIGHUP);
    let reloading = mgr.expect(ready + 1, "RELOADING=1");
    let after = monotonic_usec();
    let text = mgr.texts()[reloading].clone();
    let usec: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {text:?}"));
    assert!(before <= usec && usec <= after, "MONOTONIC_USEC {usec} not within [{before}, {after}]");
    let ready_again = mgr.expect(reloading + 1, "READY=1");
    demo.expect(mark, TIMEOUT, "the rollout done", |l| l.starts_with("rollout done"));
    assert!(common::http_get(port).unwrap().starts_with("hello from worker"));

    demo.signal(libc::SIGTERM);
    let stopping = mgr.expect(ready_again + 1, "STOPPING=1");
    let status = demo.wait_exit(TIMEOUT + Duration::from_secs(10)).expect("the primary exits after TERM");
    assert!(status.success(), "{status:?}\n{}", demo.output());
    let texts = mgr.texts();
    assert!(ready < reloading && reloading < ready_again && ready_again < stopping);
    assert!(
        !texts[stopping..].iter().any(|t| t.contains("READY=1") || t.contains("RELOADING=1")),
        "nothing but STATUS after STOPPING=1: {texts:#?}"
    );
    assert!(
        texts[reloading..stopping].iter().any(|t| t.contains("STATUS=2/2 workers ready, generation 2, breaker closed")),
        "the new generation in STATUS: {texts:#?}"
    );
    let readies = texts.iter().filter(|t| t.lines().any(|l| l == "READY=1")).count();
    assert_eq!(readies, 2, "READY=1 at start and after the reload only: {texts:#?}");
}

#[test]
fn watchdog_pings_only_while_a_worker_can_serve() {
    let mgr = Manager::new("watchdog");
    // 400 ms: a ping every 200 ms.
    let interval = Duration::from_millis(200);
    let hello = hello_bin();
    let demo = Demo::start(&hello, &[("WORKERS", "2"), ("NOTIFY_SOCKET", mgr.path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")]);
    mgr.expect(0, "READY=1");
    let workers = {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let p = listening_pids(&demo);
            if p.len() >= 2 {
                break p;
            }
            assert!(Instant::now() < deadline, "two workers listening:\n{}", demo.output());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let healthy = mgr.pings().iter().filter(|&&t| t >= t0).count();
    assert!((3..=7).contains(&healthy), "{healthy} pings in 1 s at a 200 ms interval");

    let stopped: Vec<_> = workers.iter().map(|&p| common::stop(p)).collect();
    let all_stopped = Instant::now();
    std::thread::sleep(Duration::from_millis(1200));
    let late: Vec<Duration> = mgr.pings().iter().filter(|&&t| t > all_stopped + 2 * interval).map(|&t| t - all_stopped).collect();
    assert!(late.is_empty(), "pings while every worker is stopped, this long after: {late:?}");

    drop(stopped);
    let resumed = Instant::now();
    let deadline = resumed + TIMEOUT;
    while !mgr.pings().iter().any(|&t| t > resumed) {
        assert!(Instant::now() < deadline, "no ping after the workers continued");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(common::http_get(demo.port).unwrap().starts_with("hello from worker"));
}

#[test]
fn listeners_go_to_the_fd_store_and_come_back_after_a_crash() {
    let mgr = Manager::new("fdstore");
    let hello = hello_bin();
    let demo = Demo::start(&hello, &[("WORKERS", "1"), ("NOTIFY_SOCKET", mgr.path.to_str().unwrap())]);
    let port = demo.port;
    let i = mgr.expect(0, "FDSTORE=1");
    let name = format!("lc-127.0.0.1_{port}");
    let fd = {
        let mut got = mgr.got.lock().unwrap();
        let d = &mut got[i];
        assert!(d.text.lines().any(|l| l == format!("FDNAME={name}")), "{:?}", d.text);
        assert_eq!(d.fds.len(), 1, "FDSTORE=1 carries the listener");
        d.fds.pop().unwrap()
    };
    let bound = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrIn>(fd.as_raw_fd()).unwrap();
    assert_eq!(SocketAddr::from((bound.ip(), bound.port())), SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::AcceptConn).unwrap(), "a listening socket");
    assert_eq!(mgr.texts().iter().filter(|t| t.contains("FDSTORE=1")).count(), 1, "stored once");

    // The primary crashes (SIGKILL, its group with it); the store keeps the socket, so a
    // client connecting now waits in its backlog instead of being refused.
    drop(demo);
    let mut early = TcpStream::connect(("127.0.0.1", port)).expect("the stored socket still listens");
    early.set_read_timeout(Some(TIMEOUT)).unwrap();
    early.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();

    // Started again as systemd would: the store's fd at 3, LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(format!(r#"LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES={name} exec "$0""#)).arg(&hello);
    cmd.env("WORKERS", "1").env("HOST", "127.0.0.1").env("PORT", port.to_string()).env("NOTIFY_SOCKET", &mgr.path);
    let raw = fd.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; `raw` stays open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || if libc::dup2(raw, 3) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mark = mgr.count();
    let demo = Demo::spawn(cmd);
    drop(fd);
    let mut answer = String::new();
    let _ = early.read_to_string(&mut answer);
    assert!(answer.contains("hello from worker"), "the client that connected during the crash: {answer:?}\n{}", demo.output());
    demo.expect(0, TIMEOUT, "the adopted socket", |l| l.starts_with("adopted 1 socket-activated listener"));
    mgr.expect(mark, "READY=1");
    assert!(
        !mgr.texts()[mark..].iter().any(|t| t.contains("FDSTORE=1")),
        "a socket systemd passed back is not stored again: {:#?}",
        mgr.texts()
    );
}

#[test]
fn nothing_is_sent_without_opt_in() {
    let mgr = Manager::new("optout");
    let hello = hello_bin();
    let mut demo = Demo::start(
        &hello,
        &[("WORKERS", "2"), ("SYSTEMD", "0"), ("NOTIFY_SOCKET", mgr.path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")],
    );
    demo.ready(0, 2, TIMEOUT);
    let mark = demo.mark();
    demo.signal(libc::SIGHUP);
    demo.expect(mark, TIMEOUT, "the rollout done", |l| l.starts_with("rollout done"));
    std::thread::sleep(Duration::from_millis(500));
    demo.signal(libc::SIGTERM);
    demo.wait_exit(TIMEOUT + Duration::from_secs(10)).expect("the primary exits after TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(mgr.texts(), Vec::<String>::new(), "datagrams without opt-in");
}
