//! Ports of Node's own cluster tests (`test/parallel/test-cluster-*.js` of nodejs/node) to C,
//! one program per Node test in `tests/c/node_parallel/`, each checking the same behaviour
//! through libcluster's C API. The comment at the top of each C file names the Node test,
//! what it checks and where the port differs.
//!
//! Each program is built with the project's strict flags (`common::build_c`) and run in its
//! own process group with a hard 60 s timeout (it also arms `alarm(30)` itself). The test
//! passes when the program exits 0 and, shortly after, no process of its group is left (its
//! workers end on their own when their primary is gone). Whatever happens, every process of
//! the group is killed by pid at the end. Output is printed on failure.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HARD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long workers may take to notice that their primary is gone.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

use common::{GroupGuard, group_members};

fn drain(mut r: impl Read + Send + 'static, tx: mpsc::Sender<(bool, Vec<u8>)>, is_err: bool) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send((is_err, buf));
    });
}

fn run(name: &str) {
    let src = common::root().join("tests/c/node_parallel").join(format!("{name}.c"));
    let bin = common::build_c(&src, &format!("np-{name}"));
    let mut child = Command::new(&bin)
        .current_dir(common::root())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let pid = child.id() as i32;
    let guard = GroupGuard(pid);
    let (tx, rx) = mpsc::channel();
    drain(child.stdout.take().unwrap(), tx.clone(), false);
    drain(child.stderr.take().unwrap(), tx, true);

    let deadline = Instant::now() + HARD_TIMEOUT;
    let status: Option<ExitStatus> = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                common::kill_pid(pid);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("wait for {name}: {e}"),
        }
    };

    // Workers must go away by themselves once their primary is gone.
    let grace = Instant::now() + ORPHAN_GRACE;
    let mut leftovers = group_members(pid);
    while !leftovers.is_empty() && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(20));
        leftovers = group_members(pid);
    }
    drop(guard);

    let (mut out, mut err) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok((true, b)) => err = b,
            Ok((false, b)) => out = b,
            Err(_) => break,
        }
    }
    let report = || format!("--- stdout ---\n{}\n--- stderr ---\n{}", String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
    match status {
        None => panic!("{name}: still running after {HARD_TIMEOUT:?}, killed\n{}", report()),
        Some(s) if !s.success() => panic!("{name}: {s}\n{}", report()),
        Some(_) => {}
    }
    assert!(
        leftovers.is_empty(),
        "{name}: processes {leftovers:?} of its group were still alive {ORPHAN_GRACE:?} after it exited (killed)\n{}",
        report()
    );
}

macro_rules! node_tests {
    ($($fn_name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $fn_name() {
                run($file);
            }
        )*
    };
}

node_tests! {
    basic => "test-cluster-basic",
    fork_env => "test-cluster-fork-env",
    worker_death => "test-cluster-worker-death",
    worker_exit => "test-cluster-worker-exit",
    worker_no_exit => "test-cluster-worker-no-exit",
    worker_forced_exit => "test-cluster-worker-forced-exit",
    primary_kill => "test-cluster-primary-kill",
    primary_error => "test-cluster-primary-error",
    listening_port => "test-cluster-listening-port",
    child_index_net => "test-cluster-child-index-net",
    net_listen_ipv6only_false => "test-cluster-net-listen-ipv6only-false",
    disconnect => "test-cluster-disconnect",
    worker_wait_server_close => "test-cluster-worker-wait-server-close",
    message => "test-cluster-message",
    shared_handle_bind_error => "test-cluster-shared-handle-bind-error",
    worker_disconnect => "test-cluster-worker-disconnect",
    kill_disconnect => "test-cluster-kill-disconnect",
    worker_kill => "test-cluster-worker-kill",
    worker_kill_signal => "test-cluster-worker-kill-signal",
    disconnect_idle_worker => "test-cluster-disconnect-idle-worker",
    eaddrinuse => "test-cluster-eaddrinuse",
    dgram_1 => "test-cluster-dgram-1",
    setup_primary => "test-cluster-setup-primary",
}
