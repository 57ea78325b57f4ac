//! Issue 12: user messages arrive as they were sent, between languages. A primary in one
//! language forks one worker in another, sends it messages, and the worker sends each back
//! as it received it; the primary prints what came back. Checked: key order (never sorted),
//! integers beyond 2^64 (never floats), string escapes, and, between C peers, the text
//! itself byte for byte (only whitespace outside strings is removed).
//!
//! Peers: `tests/c/msg_peer.c` (C: sends and prints the text as is) and
//! `bindings/python/tests/apps/msg_peer.py` (Python: `json.loads` / `json.dumps`, which keep
//! key order and integers). Pairs with Node peers are in
//! `bindings/node/test/roundtrip.test.js` (they need the addon built).
//!
//! Real processes: each primary runs in its own process group with a hard timeout, and the
//! group (primary and worker) is killed by pid when the test ends, pass or fail.

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{GroupGuard, root, target_dir};

const HARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Key order, escapes (`\u00e9`, a surrogate pair, `\"`, `\\`, `\/`), non-ASCII text and
/// spaces inside a string; whitespace outside strings (removed on the way).
const ORDER_SPACED: &str = r#"{ "z" : 1 , "a" : 2 , "m" : { "b" : 1 , "a" : 2 } , "s" : "\u00e9\ud83d\ude00\"\\\/ é  x" }"#;
/// `ORDER_SPACED` as a C peer sends it: the same text without the outside whitespace.
const ORDER: &str = r#"{"z":1,"a":2,"m":{"b":1,"a":2},"s":"\u00e9\ud83d\ude00\"\\\/ é  x"}"#;
/// `ORDER` as Python (and Node) write it back: the same keys in the same order, the string
/// decoded and written with the escapes they need only.
const ORDER_DECODED: &str = r#"{"z":1,"a":2,"m":{"b":1,"a":2},"s":"é😀\"\\/ é  x"}"#;
/// Integers beyond 2^53 and 2^64: 123456789012345678901234567890, 2^63+1, -(2^63+1), 2^64+1.
const BIG: &str =
    r#"{"big":123456789012345678901234567890,"u":9223372036854775809,"neg":-9223372036854775809,"l":[18446744073709551617,1]}"#;
/// An array, strings with inner spaces, null, true, an empty array.
const ARRAY: &str = r#"[{"k":"  two  spaces "},"x y",null,true,[]]"#;
/// Number text only a text-keeping peer keeps (C): -0, 1e400 (beyond f64), 1.0, -1E-400.
const NUMBERS: &str = r#"{"n":-0,"f":1e400,"d":1.0,"e":-1E-400}"#;

fn c_peer() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The cdylib the peer links to (`cargo test` builds the rlib; make sure of the .so).
        let status = Command::new(env!("CARGO")).args(["build", "--quiet", "--lib"]).current_dir(root()).status().expect("cargo build");
        assert!(status.success(), "cargo build --lib failed");
        common::build_c(&root().join("tests/c/msg_peer.c"), "msg_peer")
    })
    .clone()
}

fn python_peer() -> Vec<OsString> {
    let script = root().join("bindings/python/tests/apps/msg_peer.py");
    assert!(script.exists(), "{} missing", script.display());
    vec!["python3".into(), script.into()]
}

fn c_cmd() -> Vec<OsString> {
    vec![c_peer().into()]
}

/// What one run printed: the primary's `GOT` texts and the worker's `RECV` lines.
struct Run {
    got: Vec<String>,
    recv: Vec<String>,
    types: Vec<String>,
}

/// Runs `primary` (argv) with `worker` (argv) as its worker's command and `messages` in its
/// `RT_MESSAGES` file; asserts it exits 0 within the hard timeout.
fn run(name: &str, primary: &[OsString], worker: &[OsString], messages: &[&str]) -> Run {
    let dir = target_dir().join("roundtrip");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.messages"));
    std::fs::write(&file, messages.iter().map(|m| format!("{m}\n")).collect::<String>()).unwrap();

    let mut cmd = Command::new(&primary[0]);
    cmd.args(&primary[1..]).args(worker);
    for var in ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"] {
        cmd.env_remove(var);
    }
    let pythonpath = root().join("bindings/python");
    cmd.env("RT_MESSAGES", &file)
        .env("LIBCLUSTER_LIBRARY", target_dir().join("libcluster.so"))
        .env("PYTHONPATH", pythonpath)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {:?}: {e}", primary[0]));
    let _guard = GroupGuard(child.id() as i32);
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>());

    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > HARD_TIMEOUT {
            common::kill_pid(child.id() as i32);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The worker shares the pipe: it may hold it open until the guard kills it.
    drop(_guard);
    let lines = reader.join().unwrap();
    let output = lines.join("\n");
    assert!(status.is_some_and(|s| s.success()), "{name}: primary {status:?}; output:\n{output}");
    let field = |prefix: &str| lines.iter().filter_map(|l| l.strip_prefix(prefix)).map(str::to_string).collect::<Vec<_>>();
    Run { got: field("GOT "), recv: field("RECV "), types: field("RECV-TYPES ") }
}

#[test]
fn c_primary_c_worker_bytes_unchanged() {
    let r = run("c-c", &c_cmd(), &c_cmd(), &[ORDER_SPACED, BIG, ARRAY, NUMBERS]);
    assert_eq!(r.recv, [ORDER, BIG, ARRAY, NUMBERS], "what the C worker received");
    assert_eq!(r.got, [ORDER, BIG, ARRAY, NUMBERS], "what came back to the C primary");
}

#[test]
fn c_primary_python_worker() {
    let r = run("c-py", &c_cmd(), &python_peer(), &[ORDER_SPACED, BIG, ARRAY]);
    // Python read the keys in order, the integers as ints, the escapes decoded ...
    assert_eq!(r.recv, [ORDER_DECODED, BIG, ARRAY]);
    assert_eq!(r.types[1], r#"{"big":"int","u":"int","neg":"int","l":["int","int"]}"#);
    // ... and its reply reached C exactly as Python wrote it.
    assert_eq!(r.got, [ORDER_DECODED, BIG, ARRAY]);
}

#[test]
fn python_primary_c_worker() {
    let r = run("py-c", &python_peer(), &c_cmd(), &[ORDER_SPACED, BIG, ARRAY]);
    // The C worker got Python's text unchanged (order, integers, escapes as Python wrote them).
    assert_eq!(r.recv, [ORDER_DECODED, BIG, ARRAY]);
    // And Python read the echo back the same.
    assert_eq!(r.got, [ORDER_DECODED, BIG, ARRAY]);
}

#[test]
fn python_primary_python_worker() {
    let r = run("py-py", &python_peer(), &python_peer(), &[ORDER, BIG, ARRAY]);
    assert_eq!(r.recv, [ORDER_DECODED, BIG, ARRAY]);
    assert_eq!(r.types[1], r#"{"big":"int","u":"int","neg":"int","l":["int","int"]}"#);
    assert_eq!(r.got, [ORDER_DECODED, BIG, ARRAY]);
}
