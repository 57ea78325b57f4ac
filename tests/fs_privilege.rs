//! A worker cannot reach through a root primary beyond its own rights (issue 11, defect 1).
//! The primary binds and removes a worker's Unix socket path with that worker's filesystem
//! credentials, so an unprivileged worker (uid 65534, an unmodified-style Node worker,
//! tests/node/fs_attack.js) can make it neither create a socket in a root-only directory
//! through a symlink nor remove a root-owned file by swapping a directory for a symlink
//! before it closes its server; its own paths still work. Only meaningful as root.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use common::{Proc, root};
use serde_json::Value;

const NOBODY: u32 = 65534;

/// A scratch tree: `base` (0755, root), `base/atk` (owned by nobody), `base/root` (0700,
/// root) holding a root-owned `victim.txt`. Removed on drop.
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let base = std::env::temp_dir()
            .join(format!("lc-fspriv-{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("atk")).unwrap();
        std::fs::create_dir_all(base.join("root")).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(base.join("root"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(base.join("atk"), Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::write(base.join("root/victim.txt"), "root's\n").unwrap();
        Tree { base }
    }
    fn atk(&self) -> PathBuf {
        self.base.join("atk")
    }
    fn root_dir(&self) -> PathBuf {
        self.base.join("root")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Whether uid 65534 can run node and read the script (every ancestor searchable).
fn reachable(p: &Path) -> bool {
    p.ancestors().skip(1).all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
        && std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// A root primary whose workers are the attack script, run as nobody; None when this test
/// cannot be meaningful here (not root, or the script out of nobody's reach).
fn primary() -> Option<Proc> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root");
        return None;
    }
    let script = root().join("tests/node/fs_attack.js");
    if !reachable(&script) || !reachable(&common::fixture_bin()) {
        eprintln!("skipped: {} is not reachable by uid {NOBODY}", script.display());
        return None;
    }
    let mut p = Proc::fixture(&[]);
    p.cmd(&format!("setup node {}", script.display()), "setup");
    p.cmd(&format!("ids {NOBODY} {NOBODY}"), "ids");
    Some(p)
}

fn attack(p: &mut Proc, tree: &Tree, mode: &str) -> (u64, Value) {
    let (id, _) = p.fork(&format!("ATTACK={mode} DIR={} TARGET={}", tree.atk().display(), tree.root_dir().display()));
    let m = p.expect(move |v| v["event"] == "message" && v["id"] == id, "the worker's report");
    (id, serde_json::from_str(m["data"].as_str().expect("data")).expect("report JSON"))
}

#[test]
fn a_worker_cannot_have_the_primary_create_a_socket_where_it_may_not() {
    let Some(mut p) = primary() else { return };
    let tree = Tree::new();
    let (_, r) = attack(&mut p, &tree, "create");
    assert_eq!(r["result"], "error", "the primary bound it: {r}");
    assert_eq!(r["code"], "EACCES", "{r}");
    assert!(!tree.root_dir().join("x.sock").exists(), "a socket appeared in the root-only directory");
}

#[test]
fn a_worker_cannot_have_the_primary_remove_a_file_it_may_not() {
    let Some(mut p) = primary() else { return };
    let tree = Tree::new();
    let (_, r) = attack(&mut p, &tree, "unlink");
    // `closed` comes after the worker's `close` on the same channel: the primary has
    // already detached the worker and, as the last one out, removed the path (or not).
    assert_eq!(r["result"], "closed", "{r}");
    assert!(tree.root_dir().join("victim.txt").exists(), "the primary removed a root-owned file for the worker");
}

#[test]
fn a_workers_own_path_still_works() {
    let Some(mut p) = primary() else { return };
    let tree = Tree::new();
    let (id, r) = attack(&mut p, &tree, "legit");
    assert_eq!(r["result"], "listening", "{r}");
    let path = tree.atk().join("ok.sock");
    {
        let mut s = UnixStream::connect(&path).expect("connect to the worker's socket");
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("legit "), "{out:?}");
    }
    p.cmd(&format!("send {id} \"close\""), "sent");
    p.expect(move |v| v["event"] == "message" && v["id"] == id && v["data"].as_str().is_some_and(|d| d.contains("closed")), "closed");
    assert!(!path.exists(), "the primary removes the worker's own path when it closes");
}
