//! Hot upgrade of the primary (`docs/upgrade.md`), proven on a copy of the demo
//! (`target/examples/hello` in a temp dir, `common::demo`) under real HTTP load
//! (`common::load`, 32 keep-alive clients):
//!
//! * `kill -USR2` of the primary: no request fails; a new primary (started by the old one,
//!   the demo says so) serves through workers that are its children; the old primary and
//!   every old worker are gone within the drain's bound, the workers on their own (exit
//!   code 0: none was killed early by a parent-death signal);
//! * the program file replaced by one that exits at once, then USR2: the upgrade is
//!   reported aborted, no request fails, and the old primary and its workers serve on.
//!
//! Every wait is bounded. Every process is killed by pid at the end, pass or fail: the old
//! primary's group (`Demo`'s drop), which the new primary and its workers share.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::demo::{Demo, hello_bin, pid_alive, worker_line};
use common::load::{self, Load, LoadOptions, LoadReport};
use common::{TIMEOUT, kill_pid};

const UNTIL_STOPPED: Duration = Duration::from_secs(600);
/// The demo's drain clock here: disconnect, SIGTERM after DRAIN_MS, SIGKILL KILL_MS later.
const DRAIN_MS: u64 = 5_000;
const KILL_MS: u64 = 2_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("libcluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of the demo in `dir` (the file an upgrade runs is the one at this path).
fn demo_copy(dir: &TempDir) -> PathBuf {
    let bin = dir.0.join("hello");
    std::fs::copy(hello_bin(), &bin).unwrap();
    bin
}

/// A port free now (the demo binds it; an upgrade hands the bound socket over, so the
/// workers of both primaries must ask for the same number, not 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn keep_alive(port: u16, clients: usize) -> Load {
    load::start(LoadOptions { clients, keep_alive: true, duration: UNTIL_STOPPED, ..LoadOptions::new(port) })
}

fn who_serves(port: u16, clients: usize, d: Duration) -> LoadReport {
    load::start(LoadOptions { clients, keep_alive: false, duration: d, ..LoadOptions::new(port) }).finish(d + TIMEOUT)
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// `upgrade <state>: primary <pid> (other primary <pid>, error <n>)` → (primary, other).
fn upgrade_line(line: &str, state: &str) -> Option<(i32, i32)> {
    let rest = line.strip_prefix(&format!("upgrade {state}: primary "))?;
    let (me, rest) = rest.split_once(" (other primary ")?;
    let (other, _) = rest.split_once(',')?;
    Some((me.parse().ok()?, other.parse().ok()?))
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Kills the new primary (and then its workers, by pid) whatever happens.
struct Kill(Vec<i32>);

impl Drop for Kill {
    fn drop(&mut self) {
        for &p in &self.0 {
            if pid_alive(p) {
                kill_pid(p);
            }
        }
    }
}

fn start(bin: &Path, port: u16) -> Demo {
    let (port, drain, kill) = (port.to_string(), DRAIN_MS.to_string(), KILL_MS.to_string());
    Demo::start(
        bin,
        &[("WORKERS", "4"), ("PORT", &port), ("DRAIN_MS", &drain), ("KILL_MS", &kill), ("LIBCLUSTER_UPGRADE_TIMEOUT_MS", "2000")],
    )
}

/// Replaces the program file (renamed over) by a shell script.
fn replace_program(bin: &Path, script: &str) {
    let tmp = bin.with_extension("tmp");
    std::fs::write(&tmp, script).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, bin).unwrap();
}

#[test]
fn usr2_hands_over_to_a_new_primary_under_load() {
    let dir = TempDir::new("upgrade");
    let bin = demo_copy(&dir);
    let port = free_port();
    let mut d = start(&bin, port);
    let old = d.pid();
    let (before, _) = d.ready(0, 4, TIMEOUT);
    let before: BTreeSet<i32> = before.into_iter().collect();

    let ka = keep_alive(port, 32);
    // And a new connection per request: some are held by the old primary at the handover.
    let cl = load::start(LoadOptions { clients: 8, keep_alive: false, duration: UNTIL_STOPPED, ..LoadOptions::new(port) });
    assert!(ka.wait_completed(2000, TIMEOUT), "load did not start: {} ok, {} failed", ka.completed(), ka.failed());
    assert!(cl.wait_completed(200, TIMEOUT), "close-mode load did not start: {} ok, {} failed", cl.completed(), cl.failed());

    let mark = d.mark();
    let usr2_at = Instant::now();
    d.signal(libc::SIGUSR2);
    let (_, started) = d.expect(mark, TIMEOUT, "upgrade started", |l| upgrade_line(l, "started").is_some());
    let (me, new) = upgrade_line(&started.text, "started").unwrap();
    assert_eq!(me, old, "{}", started.text);
    let mut guard = Kill(vec![new]);
    d.expect(mark, TIMEOUT, "the new primary's start", |l| l == format!("Primary {new} is running (started by a hot upgrade)"));
    // Both say ready: the new one once its 4 workers are, the old one as it hands over.
    let (ready_at, _) = d.expect(mark, Duration::from_secs(60), "the new primary ready", |l| upgrade_line(l, "ready") == Some((new, old)));
    d.expect(mark, TIMEOUT, "the old primary handing over", |l| upgrade_line(l, "ready") == Some((old, new)));
    // The new primary's workers: started after the USR2, children of the new primary.
    let after: BTreeSet<i32> = d
        .lines_from(mark)
        .iter()
        .take(ready_at - mark)
        .filter_map(|l| worker_line(&l.text, "ready"))
        .filter(|p| !before.contains(p))
        .collect();
    guard.0.extend(&after);
    assert_eq!(after.len(), 4, "new workers {after:?}\n{}", d.output());
    for &p in &after {
        assert_eq!(parent_of(p), Some(new), "worker {p} is not the new primary's child");
    }

    // The old primary drains its workers and exits within the drain's bound.
    let bound = Duration::from_millis(DRAIN_MS + KILL_MS) + Duration::from_secs(5);
    let status = d.wait_exit(bound).unwrap_or_else(|| panic!("the old primary did not exit within {bound:?}:\n{}", d.output()));
    assert!(status.success(), "old primary: {status}\n{}", d.output());
    assert!(usr2_at.elapsed() < Duration::from_secs(60) + bound);
    for &p in &before {
        assert!(wait_gone(p, TIMEOUT), "old worker {p} still runs");
        // Exited on its own (code 0) after its drain: not killed by a parent-death signal.
        d.expect(mark, TIMEOUT, &format!("old worker {p} died"), |l| l == format!("worker {p} died (code 0)"));
    }
    d.expect(mark, TIMEOUT, "the new primary told the old one is gone", |l| upgrade_line(l, "done") == Some((new, old)));

    // New connections: the new primary's workers only.
    let now = who_serves(port, 4, Duration::from_secs(1));
    let ka = ka.stop();
    let cl = cl.stop();
    println!("keep-alive through the upgrade: {ka}\nclose mode: {cl}\nafter: {now}");
    // With LIBCLUSTER_DEBUG=1: what the old primary forwarded.
    d.lines_from(0).iter().filter(|l| l.text.contains("upgrade: forwarded")).for_each(|l| println!("{}", l.text));
    assert_eq!(ka.failed(), 0, "failed requests through the upgrade\n{ka}\n{}", d.output());
    assert_eq!(cl.failed(), 0, "failed close-mode requests through the upgrade\n{cl}\n{}", d.output());
    assert_eq!(now.failed(), 0, "failed requests after the upgrade\n{now}");
    assert!(!now.by_pid.is_empty() && now.pids().is_subset(&after), "after the upgrade {:?} served, new workers are {after:?}", now.pids());
    assert!(ka.pids().iter().any(|p| after.contains(p)), "the new workers served none of the load");
    assert!(pid_alive(new), "the new primary died");
    assert_eq!(parent_of(new).map(|p| p != old), Some(true), "the new primary was reparented");

    // The new primary stops gracefully on TERM.
    let mark = d.mark();
    common::demo::send_signal(new, libc::SIGTERM);
    d.expect(mark, bound, "the new primary stopped", |l| l == "primary stopped");
    assert!(wait_gone(new, TIMEOUT), "the new primary still runs");
    for &p in &after {
        assert!(wait_gone(p, TIMEOUT), "new worker {p} still runs");
    }
}

#[test]
fn a_new_program_that_exits_at_once_leaves_the_old_primary_serving() {
    let dir = TempDir::new("upgrade-broken");
    let bin = demo_copy(&dir);
    let port = free_port();
    let d = start(&bin, port);
    let old = d.pid();
    let (before, _) = d.ready(0, 4, TIMEOUT);
    let before: BTreeSet<i32> = before.into_iter().collect();

    let ka = keep_alive(port, 32);
    assert!(ka.wait_completed(2000, TIMEOUT), "load did not start: {} ok, {} failed", ka.completed(), ka.failed());
    // The program file replaced (renamed over) by one that exits at once.
    replace_program(&bin, "#!/bin/sh\nexit 1\n");

    let mark = d.mark();
    d.signal(libc::SIGUSR2);
    // Aborted (with the failed primary's pid), and why: whether it died before or after it
    // was sent the listeners (then STARTED came first) is a race.
    let (_, aborted) = d.expect(mark, TIMEOUT, "upgrade aborted", |l| upgrade_line(l, "aborted").is_some());
    let (me, new) = upgrade_line(&aborted.text, "aborted").unwrap();
    let _guard = Kill(vec![new]);
    assert_eq!(me, old, "{}", aborted.text);
    d.expect(mark, TIMEOUT, "the reason", |l| l.starts_with("stderr: ") && l.contains("upgrade aborted: "));
    assert!(wait_gone(new, TIMEOUT), "the failed new primary still runs");

    // The old primary and its workers serve on, untouched.
    let before_more = ka.completed();
    assert!(ka.wait_completed(before_more + 2000, TIMEOUT), "load stalled after the abort");
    let now = who_serves(port, 4, Duration::from_secs(1));
    let ka = ka.stop();
    println!("keep-alive through the failed upgrade: {ka}\nafter: {now}");
    assert_eq!(ka.failed(), 0, "failed requests\n{ka}\n{}", d.output());
    assert_eq!(now.failed(), 0, "failed requests after the abort\n{now}");
    assert!(now.pids().is_subset(&before) && !now.by_pid.is_empty(), "{:?} served; the old workers are {before:?}", now.pids());
    for &p in &before {
        assert!(pid_alive(p), "old worker {p} died\n{}", d.output());
    }
    assert!(pid_alive(old));
    let lines: Vec<String> = d.lines_from(mark).into_iter().map(|l| l.text).collect();
    assert!(!lines.iter().any(|l| l.starts_with("worker ") && l.contains("draining")), "a worker drained:\n{lines:?}");
}

#[test]
fn a_new_primary_never_ready_is_killed_at_the_timeout_and_nothing_changes() {
    let dir = TempDir::new("upgrade-late");
    let bin = demo_copy(&dir);
    let port = free_port();
    let d = start(&bin, port);
    let old = d.pid();
    let (before, _) = d.ready(0, 4, TIMEOUT);
    let before: BTreeSet<i32> = before.into_iter().collect();
    let ka = keep_alive(port, 32);
    assert!(ka.wait_completed(2000, TIMEOUT), "load did not start: {} ok, {} failed", ka.completed(), ka.failed());
    // A new program that never becomes ready (and never reads its channel).
    replace_program(&bin, "#!/bin/sh\nexec sleep 60\n");

    let mark = d.mark();
    let usr2_at = Instant::now();
    d.signal(libc::SIGUSR2);
    let (_, started) = d.expect(mark, TIMEOUT, "upgrade started", |l| upgrade_line(l, "started").is_some());
    let (_, new) = upgrade_line(&started.text, "started").unwrap();
    let _guard = Kill(vec![new]);
    // A second USR2 meanwhile: one upgrade at a time.
    d.signal(libc::SIGUSR2);
    d.expect(mark, TIMEOUT, "the second upgrade refused", |l| l.starts_with("stderr: ") && l.contains("under way"));
    let (_, aborted) = d.expect(mark, TIMEOUT, "upgrade aborted", |l| upgrade_line(l, "aborted").is_some());
    let took = usr2_at.elapsed();
    assert_eq!(upgrade_line(&aborted.text, "aborted"), Some((old, new)), "{}", aborted.text);
    assert!(aborted.text.ends_with(&format!("error {})", -libc::ETIMEDOUT)), "{}", aborted.text);
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(10), "aborted after {took:?}");
    assert!(wait_gone(new, TIMEOUT), "the late new primary still runs");

    let more = ka.completed() + 2000;
    assert!(ka.wait_completed(more, TIMEOUT), "load stalled after the abort");
    let ka = ka.stop();
    println!("keep-alive through the late upgrade: {ka}");
    assert_eq!(ka.failed(), 0, "failed requests\n{ka}\n{}", d.output());
    assert!(ka.pids().is_subset(&before), "{:?} served; the old workers are {before:?}", ka.pids());
    for &p in &before {
        assert!(pid_alive(p), "old worker {p} died\n{}", d.output());
    }
}

/// Under systemd's notify protocol (a fake `NOTIFY_SOCKET`): the old primary hands the
/// service's main pid to the new one (`MAINPID=<new>` with `READY=1`) once it is ready, and
/// never says `STOPPING=1` (systemd would stop the service, the new primary with it); the
/// new primary's own messages follow (its `STOPPING=1` on TERM).
#[test]
fn under_systemd_the_old_primary_hands_over_the_main_pid() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("upgrade-sd");
    let bin = demo_copy(&dir);
    let sock_path = dir.0.join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let port = free_port().to_string();
    let mut d = Demo::start(&bin, &[("WORKERS", "2"), ("PORT", &port), ("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    d.ready(0, 2, TIMEOUT);
    let mut got: Vec<String> = Vec::new();
    let read_until = |got: &mut Vec<String>, d: &Demo, want: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !got.iter().any(|t| want(t)) {
            assert!(Instant::now() < deadline, "datagrams so far: {got:#?}\n{}", d.output());
            let mut buf = [0u8; 4096];
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    };
    read_until(&mut got, &d, &|t| t.lines().any(|l| l == "READY=1"));
    let mark = d.mark();
    d.signal(libc::SIGUSR2);
    let (_, started) = d.expect(mark, TIMEOUT, "upgrade started", |l| upgrade_line(l, "started").is_some());
    let (_, new) = upgrade_line(&started.text, "started").unwrap();
    let _guard = Kill(vec![new]);
    read_until(&mut got, &d, &|t| t.lines().any(|l| l.starts_with("MAINPID=")));
    let handover = got.iter().find(|t| t.lines().any(|l| l.starts_with("MAINPID="))).unwrap().clone();
    assert!(handover.lines().any(|l| l == format!("MAINPID={new}")), "{handover}");
    assert!(handover.lines().any(|l| l == "READY=1"), "{handover}");
    let status = d.wait_exit(Duration::from_millis(DRAIN_MS + KILL_MS) + Duration::from_secs(10)).expect("the old primary exits");
    assert!(status.success());
    // Then the new primary's TERM: its own STOPPING=1 (the only one).
    common::demo::send_signal(new, libc::SIGTERM);
    read_until(&mut got, &d, &|t| t.lines().any(|l| l == "STOPPING=1"));
    assert!(wait_gone(new, TIMEOUT), "the new primary still runs");
    let stopping = got.iter().position(|t| t.lines().any(|l| l == "STOPPING=1")).unwrap();
    let main_pid = got.iter().position(|t| t.lines().any(|l| l.starts_with("MAINPID="))).unwrap();
    assert!(stopping > main_pid, "STOPPING=1 before the handover: {got:#?}");
    assert_eq!(got.iter().filter(|t| t.lines().any(|l| l == "STOPPING=1")).count(), 1, "{got:#?}");
}

/// One agent-check answer from 127.0.0.1:`port` (None: refused or nothing).
fn agent_answer(port: u16) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.trim_end().to_string())
}

/// The HAProxy agent-check listener goes with the upgrade: the new primary takes the old
/// one's socket (no bind conflict, no abort), the balancer hears `ready up 100%` throughout
/// (never the booting primary's `down`, never the old one's handover `drain`), and the new
/// primary answers after the old one is gone.
#[test]
fn the_agent_check_listener_is_handed_over() {
    let dir = TempDir::new("upgrade-agent");
    let bin = demo_copy(&dir);
    let (port, agent) = (free_port(), free_port());
    let (p, a) = (port.to_string(), agent.to_string());
    let mut d = Demo::start(&bin, &[("WORKERS", "2"), ("PORT", &p), ("AGENT_PORT", &a), ("SYSTEMD", "0")]);
    d.ready(0, 2, TIMEOUT);
    assert_eq!(agent_answer(agent).as_deref(), Some("ready up 100%"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(agent_answer(agent));
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        })
    };
    let mark = d.mark();
    d.signal(libc::SIGUSR2);
    let (_, started) = d.expect(mark, TIMEOUT, "upgrade started", |l| upgrade_line(l, "started").is_some());
    let (old, new) = upgrade_line(&started.text, "started").unwrap();
    let _guard = Kill(vec![new]);
    d.expect(mark, Duration::from_secs(60), "the new primary ready", |l| upgrade_line(l, "ready") == Some((new, old)));
    let status = d.wait_exit(Duration::from_millis(DRAIN_MS + KILL_MS) + Duration::from_secs(10)).expect("the old primary exits");
    assert!(status.success(), "{}", d.output());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = poller.join().unwrap();
    assert!(!d.output().contains("upgrade aborted"), "{}", d.output());
    let other: Vec<&Option<String>> = seen.iter().filter(|s| s.as_deref() != Some("ready up 100%")).collect();
    assert!(other.is_empty(), "{} of {} agent answers were not 'ready up 100%': {other:?}", other.len(), seen.len());
    assert_eq!(agent_answer(agent).as_deref(), Some("ready up 100%"), "the new primary answers");
    common::demo::send_signal(new, libc::SIGTERM);
    assert!(wait_gone(new, Duration::from_secs(30)), "the new primary still runs");
}

/// Connections the old primary accepted and no worker received are handed over: its only
/// worker is stopped (SIGSTOP) with clients waiting on it, then USR2; the new primary's
/// worker answers every one of them (the old primary's trace says it forwarded them).
#[test]
fn connections_no_worker_received_go_to_the_new_primary() {
    let dir = TempDir::new("upgrade-forward");
    let bin = demo_copy(&dir);
    let port = free_port();
    let p = port.to_string();
    let mut d = Demo::start(
        &bin,
        &[("WORKERS", "1"), ("PORT", &p), ("DRAIN_MS", "1000"), ("KILL_MS", "500"), ("SYSTEMD", "0"), ("LIBCLUSTER_DEBUG", "1")],
    );
    let (old_workers, _) = d.ready(0, 1, TIMEOUT);
    common::demo::send_signal(old_workers[0], libc::SIGSTOP);
    // 6 clients, each one request on a new connection, waiting on the stopped worker.
    let clients: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || -> Result<String, String> {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
                let mut out = String::new();
                s.read_to_string(&mut out).map_err(|e| e.to_string())?;
                Ok(out)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mark = d.mark();
    d.signal(libc::SIGUSR2);
    let (_, started) = d.expect(mark, TIMEOUT, "upgrade started", |l| upgrade_line(l, "started").is_some());
    let (_, new) = upgrade_line(&started.text, "started").unwrap();
    let _guard = Kill(vec![new, old_workers[0]]);
    let answers: Vec<Result<String, String>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let forwarded = d.lines_from(mark).iter().filter(|l| l.text.contains("upgrade: forwarded")).map(|l| l.text.clone()).collect::<Vec<_>>();
    println!("{forwarded:?}");
    for a in &answers {
        let text = a.as_ref().unwrap_or_else(|e| panic!("a waiting client failed: {e}\n{}", d.output()));
        assert!(text.starts_with("HTTP/1.1 200") && text.contains("hello from worker"), "{text}");
        assert!(!text.contains(&format!("worker {}", old_workers[0])), "the stopped worker answered: {text}");
    }
    assert!(forwarded.iter().any(|l| !l.contains("forwarded 0 ")), "the old primary forwarded nothing: {forwarded:?}\n{}", d.output());
    d.wait_exit(Duration::from_secs(15)).expect("the old primary exits");
    common::demo::send_signal(new, libc::SIGTERM);
    assert!(wait_gone(new, Duration::from_secs(30)), "the new primary still runs");
}
