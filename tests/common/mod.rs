//! Shared harness for the integration tests: real processes, hard timeouts, and a guard
//! that kills every process a test started, by pid, even when the test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod clients;
pub mod demo;
pub mod load;

pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>` of the running test binary (`target/debug/deps/x` → `target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The fixture binary, rebuilt once per test process (`cargo test --test x` alone does not
/// build examples).
pub fn fixture_bin() -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", "fixture"]).current_dir(root());
        if target_dir().ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --example fixture");
        assert!(status.success(), "building the fixture failed");
    });
    target_dir().join("examples/fixture")
}

/// Compiles `tests/c/<name>.c` (or any C file) against `include/cluster.h` and the cdylib
/// with the project's strict flags; returns the binary.
pub fn build_c(src: &Path, name: &str) -> PathBuf {
    let out_dir = target_dir().join("ctests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(name);
    let lib = target_dir();
    assert!(lib.join("libcluster.so").exists(), "build the cdylib first (cargo build)");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-D_GNU_SOURCE"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(src)
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib.display()))
        .arg("-lcluster")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("run cc");
    assert!(status.success(), "compiling {} failed", src.display());
    out
}

/// Kills a process by pid (SIGKILL), ignoring one that is gone.
pub fn kill_pid(pid: i32) {
    if pid > 0 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// A process whose stdout carries JSON lines, with every pid it mentions killed on drop.
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    backlog: Vec<Value>,
    pub lines: Arc<Mutex<Vec<String>>>,
    pids: Vec<i32>,
    /// The fixture's first line (`{"ready": pid, "fds": [...]}`), Null for other programs.
    pub ready: Value,
}

impl Proc {
    pub fn spawn(cmd: Command) -> Proc {
        Proc::spawn_with_stderr(cmd, Stdio::inherit())
    }

    /// As `spawn`, with stderr going to `stderr` (e.g. a file to read afterwards).
    pub fn spawn_with_stderr(mut cmd: Command, stderr: Stdio) -> Proc {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr);
        let mut child = cmd.spawn().expect("spawn test process");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let log = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc { child, stdin, rx, backlog: Vec::new(), lines, pids: Vec::new(), ready: Value::Null }
    }

    /// The fixture as primary, with extra environment for itself and its workers.
    pub fn fixture(env: &[(&str, &str)]) -> Proc {
        Proc::fixture_with_stderr(env, Stdio::inherit())
    }

    /// As `fixture`, with the primary's and its workers' stderr going to `stderr`.
    pub fn fixture_with_stderr(env: &[(&str, &str)], stderr: Stdio) -> Proc {
        let mut cmd = Command::new(fixture_bin());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut p = Proc::spawn_with_stderr(cmd, stderr);
        p.ready = p.expect(|v| v.get("ready").is_some(), "fixture ready");
        p
    }

    /// Fds the fixture already had when it started (inherited from whoever ran the tests);
    /// the library is not responsible for those.
    pub fn inherited_fds(&self) -> Vec<i64> {
        self.ready["fds"].as_array().map_or(Vec::new(), |a| a.iter().filter_map(|f| f["fd"].as_i64()).collect())
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Remembers a pid to kill on drop.
    pub fn track(&mut self, pid: i32) {
        if pid > 0 && !self.pids.contains(&pid) {
            self.pids.push(pid);
        }
    }

    fn note(&mut self, v: &Value) {
        for k in ["pid"] {
            if let Some(p) = v.get(k).and_then(Value::as_i64) {
                self.track(p as i32);
            }
        }
    }

    /// Waits (at most `TIMEOUT`) for a line matching `pred`; earlier non-matching lines stay
    /// available to later calls.
    pub fn expect(&mut self, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
        self.try_expect(pred, TIMEOUT)
            .unwrap_or_else(|| panic!("timed out waiting for {what}; output so far:\n{}", self.lines.lock().unwrap().join("\n")))
    }

    pub fn try_expect(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Some(self.backlog.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    self.note(&v);
                    if pred(&v) {
                        return Some(v);
                    }
                    self.backlog.push(v);
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// An event line of kind `event` for worker `id`.
    pub fn event(&mut self, event: &str, id: u64) -> Value {
        self.expect(|v| v["event"] == event && v["id"] == id, &format!("{event} of worker {id}"))
    }

    /// Sends one command line to the fixture and returns its reply (a line with `key`).
    pub fn cmd(&mut self, line: &str, key: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let k = key.to_string();
        self.expect(move |v| v.get(&k).is_some(), &format!("reply to {line:?}"))
    }

    /// `fork` and wait for that worker's online event; returns (id, pid).
    pub fn fork(&mut self, env: &str) -> (u64, i32) {
        let r = self.cmd(&format!("fork {env}"), "forked");
        let id = r["forked"].as_u64().expect("fork failed");
        let fork = self.event("fork", id);
        let pid = fork["pid"].as_i64().unwrap() as i32;
        self.track(pid);
        (id, pid)
    }

    /// Closes stdin (the fixture primary then exits) and waits up to `TIMEOUT`.
    pub fn finish(&mut self) -> Option<std::process::ExitStatus> {
        self.stdin.take();
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        for &pid in &self.pids {
            kill_pid(pid);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to 127.0.0.1:`port`, reads everything the server sends (bounded by a timeout).
pub fn fetch(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A fixture worker's answer: its pid.
pub fn fetch_pid(port: u16) -> i32 {
    fetch(port).expect("connect").trim().parse().expect("worker pid")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 GET with `Connection: close`; returns the body.
pub fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// Live (non-zombie) processes in process group `pgid`, from `/proc/<pid>/stat`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

/// Kills every process of a process group we created, by pid (and the group itself, so a
/// process forked meanwhile goes too), whatever happens to the test.
pub struct GroupGuard(pub i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let members = group_members(self.0);
        for &pid in &members {
            kill_pid(pid);
        }
        if !members.is_empty() {
            // SAFETY: kill has no memory-safety preconditions; a negative pid names the group.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
        }
    }
}

/// Sends SIGCONT to a stopped pid on drop (the `Proc` then kills it by pid).
pub struct Continue(i32);

/// SIGSTOPs `pid` and waits (bounded) until every thread of it is stopped, so the test's
/// connections cannot be received by a thread still on its way to stopping. Returns the
/// guard that continues it.
pub fn stop(pid: i32) -> Continue {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let guard = Continue(pid);
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|st| st.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['T', 't'])))
                .unwrap_or(false)
        })
    };
    let deadline = Instant::now() + TIMEOUT;
    while !all_stopped() {
        assert!(Instant::now() < deadline, "pid {pid} did not stop");
        std::thread::sleep(Duration::from_millis(2));
    }
    guard
}

impl Drop for Continue {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// The lowest fd number `pid` does not use: with `RLIMIT_NOFILE` there, every new fd fails
/// with `EMFILE` (a new fd takes the lowest free number, which must be below the limit).
pub fn lowest_free_fd(pid: i32) -> u64 {
    let used: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    (0..).find(|n| !used.contains(n)).unwrap()
}

/// Sets the soft and hard `RLIMIT_NOFILE` of `pid` (the test runs as the same user, or root).
pub fn set_fd_limit(pid: i32, soft: u64, hard: u64) {
    let new = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: prlimit reads `new` and writes nothing (old is NULL).
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

pub fn fd_limit(pid: i32) -> (u64, u64) {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit writes the current limits into `old` and changes nothing (new is NULL).
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    (old.rlim_cur, old.rlim_max)
}
