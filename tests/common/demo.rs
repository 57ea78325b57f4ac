//! The demo (`target/examples/hello`) as a supervised primary under test: started with an
//! environment (its supervision knobs), `PORT=0` (the real port is read from its first
//! `listening` line, so no test races another for a port), in its own process group. Its
//! stdout and stderr lines are collected on threads, each with the time it arrived, so a
//! test can wait (bounded) for a line matching a predicate after a mark, send signals by
//! pid, and read the `stats {json}` lines.
//!
//! On drop the guard kills the primary first (SIGKILL: nothing respawns after that), then
//! every process still in its group, by pid: each worker it printed and any it forked but
//! never printed (a broken program file's child). A pid is killed only while it is alive in
//! the demo's process group, so a pid the kernel reused since is never touched.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{group_members, kill_pid, root};

/// target/examples/hello, rebuilt with `make examples` once per test binary (make decides
/// whether it is stale against the library). Call it before starting anything: its `cargo
/// build` re-links target/debug/libcluster.so after a `cargo test` build (the two builds
/// differ), and make then rewrites the demo in place, so a program starting meanwhile could
/// find either missing or half written. For the same reason two test binaries that call it
/// must not run at once.
pub fn hello_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new("make").arg("-C").arg(root()).arg("examples").output().expect("run make");
            assert!(
                out.status.success(),
                "`make examples` failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let hello = root().join("target/examples/hello");
            assert!(hello.exists(), "{} missing after `make examples`", hello.display());
            hello
        })
        .clone()
}

/// One output line and when the test read it.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// A running demo primary (see the module doc).
pub struct Demo {
    child: Child,
    /// The port its workers serve (from the first `listening` line).
    pub port: u16,
    log: Arc<Mutex<Vec<Line>>>,
    status: Option<ExitStatus>,
}

impl Demo {
    /// Runs `bin` (the demo, or a copy of it) with `env` added to a clean environment
    /// (no `NODE_*` cluster variables, no systemd notification variables); waits (at most `TIMEOUT`) for a worker to listen.
    pub fn start(bin: &Path, env: &[(&str, &str)]) -> Demo {
        let mut cmd = Command::new(bin);
        // The manager of whatever runs the tests is not told about the demo.
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            cmd.env_remove(var);
        }
        cmd.env("HOST", "127.0.0.1").env("PORT", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut demo = Demo::spawn(cmd);
        let (_, line) = demo.expect(0, super::TIMEOUT, "a worker listening", |l| l.starts_with("worker ") && l.contains(" listening on "));
        demo.port = line.text.rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("port in the listening line");
        demo
    }

    /// Runs `cmd` (the demo, or a launcher that execs it in place, as
    /// `systemd-socket-activate` does) in its own process group, its output collected, without
    /// waiting for anything (`port` is 0). No `NODE_*` cluster variable reaches it.
    pub fn spawn(mut cmd: Command) -> Demo {
        for var in ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_CLUSTER_SCHED_POLICY"] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        // A file this process just wrote (a copy of the demo) can fail with ETXTBSY while a
        // child another thread is forking still holds the write fd before its exec (see
        // rust-lang/rust#114554): try again for a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut child = loop {
            match cmd.spawn() {
                Ok(c) => break c,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("spawn {}: {e}", cmd.get_program().to_string_lossy()),
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), log.clone(), "");
        collect(child.stderr.take().unwrap(), log.clone(), "stderr: ");
        Demo { child, port: 0, log, status: None }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// How many lines arrived so far: a mark for `wait_for`.
    pub fn mark(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The lines from index `from` on.
    pub fn lines_from(&self, from: usize) -> Vec<Line> {
        self.log.lock().unwrap().get(from..).map(<[Line]>::to_vec).unwrap_or_default()
    }

    /// Every line so far, one per line (for failure messages).
    pub fn output(&self) -> String {
        self.log.lock().unwrap().iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// The first line at index `from` or later that matches `pred`, waiting at most
    /// `timeout` for it: (its index, the line).
    pub fn wait_for(&self, from: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<(usize, Line)> {
        let deadline = Instant::now() + timeout;
        let mut next = from;
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(i) = (next..log.len()).find(|&i| pred(&log[i].text)) {
                    return Some((i, log[i].clone()));
                }
                next = next.max(log.len());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// As `wait_for`, panicking with `what` and the whole output on timeout.
    pub fn expect(&self, from: usize, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) -> (usize, Line) {
        self.wait_for(from, timeout, pred)
            .unwrap_or_else(|| panic!("timed out ({timeout:?}) waiting for {what}; demo output so far:\n{}", self.output()))
    }

    /// Waits until `n` distinct workers said `ready` at index `from` or later; their pids in
    /// that order, and the index of the line that made `n`.
    pub fn ready(&self, from: usize, n: usize, timeout: Duration) -> (Vec<i32>, usize) {
        let mut pids = Vec::new();
        let mut at = from;
        while pids.len() < n {
            let (i, line) = self.expect(at, timeout, &format!("{n} workers ready (have {pids:?})"), |l| worker_line(l, "ready").is_some());
            let pid = worker_line(&line.text, "ready").unwrap();
            if !pids.contains(&pid) {
                pids.push(pid);
            }
            at = i + 1;
        }
        (pids, at - 1)
    }

    /// Sends `sig` to the primary.
    pub fn signal(&self, sig: i32) {
        send_signal(self.pid(), sig);
    }

    /// The `stats {json}` lines from index `from` on, parsed.
    pub fn stats_from(&self, from: usize) -> Vec<Value> {
        self.lines_from(from).iter().filter_map(|l| parse_stats(&l.text)).collect()
    }

    /// The last `stats` line so far.
    pub fn last_stats(&self) -> Option<Value> {
        self.stats_from(0).pop()
    }

    /// Waits (at most `timeout`) for the primary to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status {
                return Some(s);
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every worker pid the demo printed (in `worker <pid> ...`, `Worker <pid> started`, or a
    /// stats line), the primary excluded.
    pub fn worker_pids(&self) -> BTreeSet<i32> {
        let mut out = BTreeSet::new();
        for l in self.log.lock().unwrap().iter() {
            let words: Vec<&str> = l.text.split_whitespace().collect();
            if words.len() > 1 && (words[0] == "worker" || words[0] == "Worker" || words[0] == "stderr:" && words.get(1) == Some(&"worker"))
            {
                let w = if words[0] == "stderr:" { words.get(2) } else { words.get(1) };
                if let Some(pid) = w.and_then(|w| w.trim_end_matches(':').parse().ok()) {
                    out.insert(pid);
                }
            }
            if let Some(stats) = parse_stats(&l.text) {
                out.extend(per_worker(&stats).iter().filter_map(|w| w["pid"].as_i64()).map(|p| p as i32));
            }
        }
        out.remove(&self.pid());
        out
    }

    /// The pids of `pids` still running in the demo's process group (not zombies).
    pub fn alive_of(&self, pids: &BTreeSet<i32>) -> Vec<i32> {
        let group = group_members(self.pid());
        pids.iter().copied().filter(|p| group.contains(p)).collect()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let pgid = self.pid();
        if self.status.is_none() {
            // The primary first: a supervisor would replace the workers killed before it.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut group = group_members(pgid);
        // Workers forked while the primary died: look again until the group is empty (bounded).
        for _ in 0..50 {
            if group.is_empty() {
                break;
            }
            for &pid in &group {
                kill_pid(pid);
            }
            std::thread::sleep(Duration::from_millis(10));
            group = group_members(pgid);
        }
        // Every worker it printed was in that group (workers stay in their primary's group);
        // a printed pid outside it is gone, and may be someone else's now: left alone.
    }
}

/// Reads `from` line by line into `log` (each line prefixed by `prefix`) until EOF.
fn collect(from: impl Read + Send + 'static, log: Arc<Mutex<Vec<Line>>>, prefix: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            log.lock().unwrap().push(Line { at: Instant::now(), text: format!("{prefix}{line}") });
        }
    });
}

/// Sends `sig` to `pid`; panics if it is not a live process of ours.
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

/// `worker <pid> <what>...`: the pid, when the line says `what` about a worker.
pub fn worker_line(line: &str, what: &str) -> Option<i32> {
    let rest = line.strip_prefix("worker ")?;
    let (pid, tail) = rest.split_once(' ')?;
    tail.starts_with(what).then(|| pid.parse().ok()).flatten()
}

/// The JSON of a `stats {json}` line.
pub fn parse_stats(line: &str) -> Option<Value> {
    serde_json::from_str(line.strip_prefix("stats ")?).ok()
}

/// A stats line's `per_worker` array (empty if missing).
pub fn per_worker(stats: &Value) -> Vec<Value> {
    stats["per_worker"].as_array().cloned().unwrap_or_default()
}

/// The stats entry of worker `pid`.
pub fn worker_stats(stats: &Value, pid: i32) -> Option<Value> {
    per_worker(stats).into_iter().find(|w| w["pid"].as_i64() == Some(pid as i64))
}

/// The conservation law of `src/primary/stats.rs` for every worker of a stats line, alive
/// or gone: `handed == received + queued + rerouted + lost`, and `lost == 0`.
pub fn check_conservation(stats: &Value) -> Result<(), String> {
    let workers = per_worker(stats);
    if workers.is_empty() {
        return Err(format!("no per_worker entries in {stats}"));
    }
    for w in &workers {
        let n = |k: &str| w[k].as_u64().ok_or_else(|| format!("{k} missing in {w}"));
        let (handed, received, queued, rerouted, lost) = (n("handed")?, n("received")?, n("queued")?, n("rerouted")?, n("lost")?);
        if handed != received + queued + rerouted + lost {
            return Err(format!(
                "worker {}: handed {handed} != received {received} + queued {queued} + rerouted {rerouted} + lost {lost}",
                w["pid"]
            ));
        }
        if lost != 0 {
            return Err(format!("worker {}: lost {lost} connections", w["pid"]));
        }
    }
    Ok(())
}

/// Σ of field `key` over every worker of a stats line.
pub fn sum(stats: &Value, key: &str) -> u64 {
    per_worker(stats).iter().map(|w| w[key].as_u64().unwrap_or(0)).sum()
}

/// True while `pid` runs (it exists and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}
