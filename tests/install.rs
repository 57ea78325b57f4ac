//! The installed library as a C user meets it (issue 14, point 1): `make install` into a
//! temporary prefix, then
//! - the files: `lib/libcluster.so.<version>` (no debug info), the links `libcluster.so.0`
//!   and `libcluster.so`, `libcluster.a`, `include/cluster.h` (the repository's),
//!   `lib/pkgconfig/libcluster.pc` (Cargo.toml's version);
//! - the ABI: SONAME `libcluster.so.0`; the dynamic symbols the library defines are exactly
//!   the functions `cluster.h` declares (plus `cluster_debug_panic`, the test entry point
//!   kept out of the header), so nothing but `cluster_*` is exported;
//! - a program built with `pkg-config --cflags --libs libcluster` needs `libcluster.so.0`,
//!   loads the installed copy (not `target/`), sees `cluster_version() == CLUSTER_VERSION`
//!   and forks a worker whose exit code reaches the primary; the same program linked against
//!   `libcluster.a` with `pkg-config --static`'s private libraries does the same, with no
//!   libcluster to load;
//! - `make uninstall` leaves no file in the prefix.
//!
//! Needs make, cc, pkg-config, readelf, nm and strip (`make test-deps` installs pkg-config).
//! `make install` builds the release library when it is not up to date (`make test` builds
//! it before the tests run).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <cluster.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The path of the libcluster this process has mapped, or "static". */
static void print_library(void) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[4096];
    const char *found = "static";
    static char path[4096];
    while (maps && fgets(line, sizeof line, maps)) {
        char *p = strchr(line, '/');
        if (p && strstr(p, "/libcluster.so")) {
            p[strcspn(p, "\n")] = '\0';
            snprintf(path, sizeof path, "%s", p);
            found = path;
            break;
        }
    }
    if (maps)
        fclose(maps);
    printf("library %s\n", found);
}

int main(void) {
    alarm(30);
    if (cluster_is_worker())
        return 3;
    printf("version %d header %d\n", cluster_version(), CLUSTER_VERSION);
    print_library();
    if (cluster_fork(NULL) < 0) {
        fprintf(stderr, "fork: %s\n", cluster_last_error());
        return 1;
    }
    for (;;) {
        cluster_event ev;
        int rc = cluster_poll_event(&ev, 15000);
        if (rc <= 0) {
            fprintf(stderr, "poll_event: %d %s\n", rc, rc < 0 ? cluster_last_error() : "timeout");
            return 1;
        }
        if (ev.kind == CLUSTER_EVENT_EXIT) {
            printf("worker %d exited %d\n", ev.worker_id, ev.exit_code);
            return 0;
        }
    }
}
"#;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 output")
}

fn make(target: &str, prefix: &Path) -> Output {
    run(Command::new("make")
        .arg("-C")
        .arg(common::root())
        .arg("--no-print-directory")
        .arg(target)
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("CARGO={}", env!("CARGO"))))
}

/// `cluster_*` names followed by `(` outside comments, `#` lines and typedefs: the functions
/// a header declares.
fn declared_functions(header: &str) -> BTreeSet<String> {
    let mut code = String::new();
    let mut rest = header;
    while let Some(i) = rest.find("/*") {
        code.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    code.push_str(rest);
    let mut names = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with('#') && !l.contains("typedef")) {
        let mut from = 0;
        while let Some(i) = line[from..].find("cluster_").map(|i| from + i) {
            let end = i + line[i..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(line.len() - i);
            let before_ok = i == 0 || !line.as_bytes()[i - 1].is_ascii_alphanumeric() && line.as_bytes()[i - 1] != b'_';
            if before_ok && line[end..].trim_start().starts_with('(') {
                names.insert(line[i..end].to_string());
            }
            from = end;
        }
    }
    names
}

/// Every dynamic symbol `lib` defines (`nm -D --defined-only`), of any kind.
fn defined_dynamic_symbols(lib: &Path) -> BTreeSet<String> {
    stdout(Command::new("nm").args(["-D", "--defined-only"]).arg(lib))
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

fn dynamic_section(file: &Path) -> String {
    stdout(Command::new("readelf").arg("-d").arg(file))
}

fn needed(file: &Path) -> Vec<String> {
    dynamic_section(file)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l[l.find('[')? + 1..l.rfind(']')?].to_string()))
        .collect()
}

/// Runs the test program; returns its stdout after checking the version and the worker's exit.
fn run_program(bin: &Path) -> String {
    let out =
        run(Command::new(bin).current_dir("/").env_remove("NODE_UNIQUE_ID").env_remove("NODE_CHANNEL_FD").env_remove("LD_LIBRARY_PATH"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = env!("CARGO_PKG_VERSION_MAJOR").parse::<i32>().unwrap() * 10000
        + env!("CARGO_PKG_VERSION_MINOR").parse::<i32>().unwrap() * 100
        + env!("CARGO_PKG_VERSION_PATCH").parse::<i32>().unwrap();
    assert!(text.contains(&format!("version {v} header {v}\n")), "{}: {text}", bin.display());
    assert!(text.contains("worker 1 exited 3\n"), "{}: {text}", bin.display());
    text
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn install_link_run_uninstall() {
    for tool in ["make", "pkg-config", "readelf", "nm", "strip"] {
        let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(found, "{tool} is needed (pkg-config: `make test-deps`, or apt-get install pkg-config)");
    }
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let prefix = work.join("prefix");
    std::fs::create_dir_all(&prefix).unwrap();

    make("install", &prefix);

    // The files.
    let lib = prefix.join("lib");
    let version = env!("CARGO_PKG_VERSION");
    let real = lib.join(format!("libcluster.so.{version}"));
    assert!(std::fs::symlink_metadata(&real).unwrap().file_type().is_file(), "{} is not a file", real.display());
    assert_eq!(std::fs::read_link(lib.join("libcluster.so.0")).unwrap(), Path::new(&format!("libcluster.so.{version}")));
    assert_eq!(std::fs::read_link(lib.join("libcluster.so")).unwrap(), Path::new("libcluster.so.0"));
    assert!(lib.join("libcluster.a").is_file());
    let header = std::fs::read_to_string(prefix.join("include/cluster.h")).unwrap();
    assert_eq!(header, std::fs::read_to_string(common::root().join("include/cluster.h")).unwrap(), "installed cluster.h differs");
    let sections = stdout(Command::new("readelf").args(["-S", "-W"]).arg(&real));
    assert!(!sections.contains(".debug_info"), "the installed library keeps its debug info");

    // The ABI: SONAME and exports.
    let dynamic = dynamic_section(&real);
    assert!(dynamic.contains("Library soname: [libcluster.so.0]"), "no SONAME libcluster.so.0:\n{dynamic}");
    let mut expected = declared_functions(&header);
    assert!(expected.len() >= 20 && expected.contains("cluster_fork") && expected.contains("cluster_version"), "{expected:?}");
    expected.insert("cluster_debug_panic".into());
    let exported = defined_dynamic_symbols(&real);
    assert_eq!(
        exported,
        expected,
        "exported but not declared: {:?}; declared but not exported: {:?}",
        exported.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&exported).collect::<Vec<_>>()
    );

    // pkg-config.
    let pc = |args: &[&str]| -> Vec<String> {
        stdout(Command::new("pkg-config").args(args).arg("libcluster").env("PKG_CONFIG_PATH", lib.join("pkgconfig")))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(pc(&["--modversion"]), [version]);
    let cflags = pc(&["--cflags"]);
    let libs = pc(&["--libs"]);
    let private: Vec<String> = pc(&["--static", "--libs"]).into_iter().filter(|f| !libs.contains(f)).collect();
    assert!(private.iter().any(|f| f == "-lpthread"), "Libs.private: {private:?}");

    let src = work.join("app.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let strict = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"];

    // Linked against the shared library.
    let shared = work.join("app");
    run(Command::new(&cc)
        .args(strict)
        .args(&cflags)
        .arg(&src)
        .arg("-o")
        .arg(&shared)
        .args(&libs)
        .arg(format!("-Wl,-rpath,{}", lib.display())));
    let deps = needed(&shared);
    assert!(deps.iter().any(|n| n == "libcluster.so.0"), "the program needs {deps:?}");
    let text = run_program(&shared);
    let loaded = text.lines().find_map(|l| l.strip_prefix("library ")).unwrap_or("");
    assert_eq!(Path::new(loaded), real.as_path(), "the program loaded {loaded}, not the installed copy");

    // Linked against the static library.
    let fixed = work.join("app-static");
    run(Command::new(&cc).args(strict).args(&cflags).arg(&src).arg("-o").arg(&fixed).arg(lib.join("libcluster.a")).args(&private));
    let deps = needed(&fixed);
    assert!(!deps.iter().any(|n| n.starts_with("libcluster")), "the static program needs {deps:?}");
    let text = run_program(&fixed);
    assert!(text.contains("library static\n"), "{text}");

    make("uninstall", &prefix);
    let left = files_under(&prefix);
    assert!(left.is_empty(), "make uninstall left {left:?}");
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn header_parser() {
    let h = "/* cluster_in_comment(x) */\nint cluster_a(void);\nconst char *cluster_b_c (int x);\n\
             typedef void (*cluster_event_cb)(int);\n#define CLUSTER_X(a) a\nstruct cluster_event *e; xcluster_e();";
    let got: Vec<String> = declared_functions(h).into_iter().collect();
    assert_eq!(got, ["cluster_a", "cluster_b_c"]);
}
