//! Layer (c) of the test pyramid (house style 15): the C programs in `tests/c/*.c`, built
//! with the project's strict flags against `include/cluster.h` and the cdylib, each run as a
//! real primary that forks itself as workers.
//!
//! Every program exits 0 on success and prints why otherwise; it also arms `alarm(30)`.
//! Here each one additionally gets a hard 60 s timeout, runs in its own process group (so
//! the primary and every worker it forked can be killed by id, never by name), and its
//! workers must be gone shortly after it exits (they end on channel EOF and
//! `PR_SET_PDEATHSIG`). Output (primary and workers share it) goes to
//! `target/<profile>/ctests/<name>.log` and is printed on failure.
//!
//! `VALGRIND=1 cargo test --test c_api` runs each primary under
//! `valgrind --error-exitcode=99 --leak-check=no --trace-children=no` (workers run natively).

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Forking tests run one at a time (nix's `FORK_MTX`), even without `--test-threads=1`.
static FORK_MTX: Mutex<()> = Mutex::new(());

const HARD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long workers may take to notice that their primary is gone.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

use common::{GroupGuard, group_members};

fn valgrind() -> bool {
    std::env::var("VALGRIND").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Builds `tests/c/<name>.c`, runs it and asserts it exits 0.
fn run_c(name: &str) {
    let _serial = FORK_MTX.lock().unwrap_or_else(|e| e.into_inner());
    let bin = common::build_c(&common::root().join(format!("tests/c/{name}.c")), name);
    let log_path = common::target_dir().join("ctests").join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).expect("create log");

    let mut cmd = if valgrind() {
        let mut c = Command::new("valgrind");
        c.args(["--error-exitcode=99", "--leak-check=no", "--trace-children=no"]).arg(&bin);
        // Valgrind has no pidfd_open, so exits are polled: keep the fork-heavy loop short.
        c.env("LC_CYCLES", "20");
        c
    } else {
        Command::new(&bin)
    };
    // The programs decide their role from NODE_UNIQUE_ID, and round_robin's fairness check
    // needs the default round-robin policy: keep an outer environment out of it.
    for var in ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_CLUSTER_SCHED_POLICY"] {
        cmd.env_remove(var);
    }
    cmd.current_dir(common::root()).stdin(Stdio::null()).stdout(log.try_clone().expect("dup log")).stderr(log).process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let pid = child.id() as i32;
    let guard = GroupGuard(pid);

    let start = Instant::now();
    let status: Option<ExitStatus> = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > HARD_TIMEOUT {
            common::kill_pid(pid);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    // Workers end by themselves once their primary is gone; give them a moment.
    let deadline = Instant::now() + ORPHAN_GRACE;
    let mut orphans = group_members(pid);
    while !orphans.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        orphans = group_members(pid);
    }
    drop(guard);

    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let show = |why: String| -> ! {
        panic!("{name}: {why}\n----- output ({}) -----\n{output}----- end of {name} output -----", log_path.display())
    };
    match status {
        None => show(format!("still running after {HARD_TIMEOUT:?}; killed")),
        Some(s) if !s.success() => show(format!("exited with {s}")),
        Some(_) => {}
    }
    if !orphans.is_empty() {
        show(format!("worker processes {orphans:?} outlived their primary by {ORPHAN_GRACE:?}; killed"));
    }
    println!("{output}");
}

#[test]
fn c_null_sweep() {
    run_c("null_sweep");
}

#[test]
fn c_round_robin() {
    run_c("round_robin");
}

#[test]
fn c_lifecycle() {
    run_c("lifecycle");
}

#[test]
fn c_quick_exit() {
    run_c("quick_exit");
}

#[test]
fn c_supervision() {
    run_c("supervision");
}

#[test]
fn c_bind_error() {
    run_c("bind_error");
}

#[test]
fn c_fd_hygiene() {
    run_c("fd_hygiene");
}

#[test]
fn c_extra_stdio() {
    run_c("extra_stdio");
}

#[test]
fn c_worker_run() {
    run_c("worker_run");
}

#[test]
fn c_supervise_run() {
    run_c("supervise_run");
}

/// `text` without `/* */` and `//` comments (string literals are not special-cased: the
/// header has none that contain comment markers).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                out.push(' ');
                rest = rest[b + 2..].find("*/").map_or("", |e| &rest[b + 2 + e + 2..]);
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |e| &rest[l + e..]);
            }
            (None, None) => {
                out.push_str(rest);
                return out;
            }
            _ => unreachable!(),
        }
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every `cluster_[a-z_]+` followed by optional whitespace and `(` in code (not comments):
/// in the header, the declared functions; in a C file, the functions it calls.
fn called_names(code: &str) -> Vec<String> {
    let code = strip_comments(code);
    let b = code.as_bytes();
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("cluster_").map(|i| i + from) {
        from = i + "cluster_".len();
        if i > 0 && is_ident(b[i - 1]) {
            continue;
        }
        let mut end = from;
        while end < b.len() && (b[end].is_ascii_lowercase() || b[end] == b'_') {
            end += 1;
        }
        if end == from || (end < b.len() && is_ident(b[end])) {
            continue;
        }
        let mut j = end;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < b.len() && b[j] == b'(' {
            let name = code[i..end].to_string();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        from = end;
    }
    names
}

/// A new export without a NULL-sweep entry fails the suite (hyper#4033): every function
/// `include/cluster.h` declares must be called in `tests/c/null_sweep.c`. Also, every
/// `cluster_*` function the cdylib exports must be declared in the header (but
/// `cluster_debug_panic`, a test entry point kept out of it).
#[test]
fn null_sweep_covers_every_declared_function() {
    let root = common::root();
    let header = std::fs::read_to_string(root.join("include/cluster.h")).expect("read include/cluster.h");
    let declared: Vec<String> = strip_comments(&header)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.contains("typedef"))
        .flat_map(called_names)
        .collect();
    assert!(declared.len() >= 20 && declared.iter().any(|n| n == "cluster_fork"), "parsing include/cluster.h found only {declared:?}");
    let sweep = std::fs::read_to_string(root.join("tests/c/null_sweep.c")).expect("read null_sweep.c");
    let swept = called_names(&sweep);
    let missing: Vec<&String> = declared.iter().filter(|n| !swept.contains(n)).collect();
    assert!(missing.is_empty(), "tests/c/null_sweep.c does not call these functions declared in include/cluster.h: {missing:?}");

    let lib = common::target_dir().join("libcluster.so");
    if let Some(exported) = exported_functions(&lib) {
        // The one test entry point, exported on purpose and left out of the header.
        let undeclared: Vec<&String> = exported.iter().filter(|n| !declared.contains(n) && *n != "cluster_debug_panic").collect();
        assert!(undeclared.is_empty(), "{} exports functions include/cluster.h does not declare: {undeclared:?}", lib.display());
    }
}

/// `cluster_*` function symbols the cdylib defines (`nm -D --defined-only`), or None when
/// nm or the library is not available.
fn exported_functions(lib: &Path) -> Option<Vec<String>> {
    if !lib.exists() {
        return None;
    }
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(lib).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && (f[1] == "T" || f[1] == "t") && f[2].starts_with("cluster_")).then(|| f[2].to_string())
            })
            .collect(),
    )
}

#[test]
fn called_names_parser() {
    let h = "/* cluster_in_comment(x) */\nint cluster_a(void);\nconst char *cluster_b_c (int x); // cluster_d(\n\
             typedef void (*cluster_event_cb)(int);\nstruct cluster_event *e; xcluster_e(); cluster_f_(1)";
    assert_eq!(called_names(h), ["cluster_a", "cluster_b_c", "cluster_f_"]);
}

/// Header hygiene: every macro is prefixed `CLUSTER_` (a program's own `INFLIGHT` or
/// `ADDRESS_UDP4` must not collide), and no debug entry point is declared.
#[test]
fn header_macros_are_prefixed_and_no_debug_entry_point_is_declared() {
    let header = std::fs::read_to_string(common::root().join("include/cluster.h")).expect("read include/cluster.h");
    let unprefixed: Vec<&str> = header
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#define "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| !name.starts_with("CLUSTER_") && *name != "LIBCLUSTER_CLUSTER_H")
        .collect();
    assert!(unprefixed.is_empty(), "macros without the CLUSTER_ prefix in include/cluster.h: {unprefixed:?}");
    assert!(!strip_comments(&header).contains("cluster_debug_panic"), "include/cluster.h declares cluster_debug_panic");
}

/// The README's C example compiles as a careful C user builds it: `-O2
/// -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror -pedantic` (fortify adds warn_unused_result).
#[test]
fn readme_c_example_builds_with_fortify() {
    let root = common::root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let start = readme.find("```c\n").expect("a C block in README.md") + 5;
    let code = &readme[start..start + readme[start..].find("```").expect("end of the C block")];
    let dir = common::target_dir().join("ctests");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("readme_example.c");
    std::fs::write(&src, code).unwrap();
    let lib = common::target_dir();
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-O2", "-D_FORTIFY_SOURCE=2", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(format!("-I{}", root.join("include").display()))
        .arg(&src)
        .arg("-o")
        .arg(dir.join("readme_example"))
        .arg(format!("-L{}", lib.display()))
        .arg("-lcluster")
        .output()
        .expect("run cc");
    assert!(out.status.success(), "the README's C example does not build:\n{}", String::from_utf8_lossy(&out.stderr));
}
