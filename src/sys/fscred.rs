//! A thread's filesystem credentials (Linux keeps them per thread: `setfsuid`, `setfsgid`,
//! and the supplementary groups when set by the raw system call), so that the primary does a
//! filesystem operation for a worker — binding or removing a Unix socket path — with the
//! worker's rights, not its own: a symlink or a path the worker could not use fails as it
//! would for the worker.

use std::io;

use nix::unistd::{Gid, Uid, setfsgid, setfsuid};

/// Filesystem credentials: fs uid, fs gid, supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

fn parse_status(text: &str) -> Option<Creds> {
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::split_whitespace);
    // "Uid:\treal\teffective\tsaved\tfs"
    let uid = field("Uid:")?.nth(3)?.parse().ok()?;
    let gid = field("Gid:")?.nth(3)?.parse().ok()?;
    let groups = field("Groups:")?.filter_map(|g| g.parse().ok()).collect();
    Some(Creds { uid, gid, groups })
}

fn read(path: &str) -> io::Result<Creds> {
    let text = std::fs::read_to_string(path)?;
    parse_status(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: no Uid/Gid/Groups")))
}

/// The filesystem credentials of process `pid` (its main thread).
pub fn of_process(pid: i32) -> io::Result<Creds> {
    read(&format!("/proc/{pid}/status"))
}

/// Runs `f` with the calling thread's filesystem credentials set to `creds`, then restores
/// them. Nothing changes (and nothing is asked of the kernel) when they are ours already.
/// Fails with `EPERM` if they could not be taken (an unprivileged process cannot become
/// another user; it has no worker of another user either).
pub fn run_as<T>(creds: &Creds, f: impl FnOnce() -> T) -> io::Result<T> {
    let mine = read("/proc/thread-self/status")?;
    if mine == *creds {
        return Ok(f());
    }
    if let Err(e) = set_groups(&creds.groups) {
        // Same user, other groups, and no right to change ours (an unprivileged primary
        // whose worker dropped some of its groups): the operation runs with the primary's
        // groups, which the worker's user has anyway; refusing would break such a worker.
        if e.raw_os_error() == Some(libc::EPERM) && (mine.uid, mine.gid) == (creds.uid, creds.gid) {
            return Ok(f());
        }
        return Err(e);
    }
    setfsgid(Gid::from_raw(creds.gid));
    setfsuid(Uid::from_raw(creds.uid));
    let now = read("/proc/thread-self/status");
    let ok = now.as_ref().is_ok_and(|c| c.uid == creds.uid && c.gid == creds.gid);
    let r = ok.then(f);
    // Back to ours: uid first (which gives back the capabilities to set the rest).
    setfsuid(Uid::from_raw(mine.uid));
    setfsgid(Gid::from_raw(mine.gid));
    set_groups(&mine.groups)?;
    r.ok_or_else(|| io::Error::from_raw_os_error(libc::EPERM))
}

/// `setgroups` for the calling thread only: the raw system call. Not nix's `setgroups`,
/// which calls glibc's wrapper, and that one sets the groups of every thread of the process
/// (by signalling them all).
fn set_groups(groups: &[u32]) -> io::Result<()> {
    let gids: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY (the macro's block): `gids` is a live array of `gids.len()` gid_t values,
    // which the kernel only reads.
    syscall!(syscall(libc::SYS_setgroups, gids.len() as libc::c_long, gids.as_ptr())).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fs_ids_and_groups() {
        let text = "Name:\tx\nUid:\t0\t0\t0\t65534\nGid:\t0\t0\t0\t65533\nGroups:\t4 27 \n";
        assert_eq!(parse_status(text), Some(Creds { uid: 65534, gid: 65533, groups: vec![4, 27] }));
        let none = "Uid:\t1\t1\t1\t1\nGid:\t1\t1\t1\t1\nGroups:\t\n";
        assert_eq!(parse_status(none).unwrap().groups, Vec::<u32>::new());
        let mine = of_process(std::process::id() as i32).unwrap();
        assert_eq!(run_as(&mine, || 7).unwrap(), 7, "our own credentials: nothing to switch");
    }
}
