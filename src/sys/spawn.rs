//! fork + exec of a worker, safe in a multi-threaded host (house style P2).
//!
//! Everything the child needs is built before `fork()`; between fork and exec the child
//! calls only async-signal-safe functions (`dup2`, `fcntl`, `sigaction`, `sigprocmask`,
//! `prctl`, `chdir`, `setgid`, `setuid`, `execve`, `write`, `_exit`) and runs no destructor.
//! An exec failure travels back as an errno through a close-on-exec pipe, as libuv does.
//!
//! In the child, nix is used only where its wrapper is one system call on what it is given,
//! with no allocation (`sigprocmask`, `getppid`, `chdir` of a `CStr`, `setgroups`, `setgid`,
//! `setuid`). The rest stays libc: `execve` (nix's builds its pointer arrays in a `Vec`: an
//! allocation after fork), `dup2` and `fcntl` on bare fd numbers (nix's take an `OwnedFd` or
//! `BorrowedFd`, whose drop or contract the child must not involve), `sigaction` over every
//! number up to `SIGRTMAX` and `prctl(PR_SET_PDEATHSIG)` of any number (nix's `Signal` has no
//! real-time signals), and `write`/`_exit`/`errno` in the failure path. `fork` itself is
//! `unsafe` in nix as in libc.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::unistd::{self, Gid, Uid};

use super::fd;

/// What a worker's stdin, stdout or stderr is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    Inherit,
    /// A pipe whose other end the primary keeps.
    Pipe,
    /// `/dev/null`.
    Ignore,
    /// This fd of ours (duplicated for the child).
    Fd(RawFd),
    /// The IPC channel's place (Node's `'ipc'`), for fds past 2 only.
    Channel,
}

/// A fully prepared command line, built before forking.
#[derive(Debug, Clone)]
pub struct SpawnPlan {
    pub stdio: [Stdio; 3],
    /// The worker's fds 3, 4, ...: Node's `stdio` entries past the first three, one of them
    /// `Channel` (empty: the channel is fd 3). A `Pipe` here is a socket pair (both ways),
    /// as libuv makes it.
    pub extra: Vec<Stdio>,
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: Option<CString>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Signal the child gets when the forking thread dies (0: none).
    pub parent_death_signal: i32,
}

/// The fd number the channel gets in the child unless `extra` places it (Node's
/// `NODE_CHANNEL_FD`).
pub(crate) const CHANNEL_FD: RawFd = 3;

impl SpawnPlan {
    /// The child's fd for the channel: where `extra` has `Channel`, else 3.
    pub fn channel_fd(&self) -> RawFd {
        self.extra.iter().position(|s| *s == Stdio::Channel).map_or(CHANNEL_FD, |k| CHANNEL_FD + k as RawFd)
    }
}

/// A started child: its pid and the primary's ends of its stdio pipes.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub stdio: [Option<OwnedFd>; 3],
    /// Our ends of the `extra` pipes (fd 3, 4, ... of the child), `None` for the others.
    pub extra: Vec<Option<OwnedFd>>,
}

/// The lowest fd number our prepared fds may take: above the channel and every extra fd
/// the child gets, so no `dup2` in the child overwrites one still to be used.
fn lowest_free(plan: &SpawnPlan) -> RawFd {
    CHANNEL_FD + (plan.extra.len() as RawFd).max(1)
}

/// The child's end (`None`: inherit) and our end of one stdio entry.
fn prepare_one(how: Stdio, i: usize, min: RawFd) -> io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    Ok(match how {
        Stdio::Inherit if i <= 2 => (None, None),
        // Past stdio, 'inherit' means our own fd of that number.
        Stdio::Inherit => {
            if !fd::is_open(i as RawFd) {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            // SAFETY: the fd is open; borrowed only to duplicate it.
            let b = unsafe { BorrowedFd::borrow_raw(i as RawFd) };
            (Some(fd::dup_cloexec_min(b, min)?), None)
        }
        Stdio::Pipe if i > 2 => {
            let (mine, theirs) = fd::socketpair()?;
            (Some(fd::dup_cloexec_min(theirs.as_fd(), min)?), Some(mine))
        }
        Stdio::Pipe => {
            let (r, w) = fd::pipe()?;
            let (mine, theirs) = if i == 0 { (w, r) } else { (r, w) };
            (Some(fd::dup_cloexec_min(theirs.as_fd(), min)?), Some(mine))
        }
        Stdio::Ignore => {
            let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
            (Some(fd::dup_cloexec_min(null.as_fd(), min)?), None)
        }
        Stdio::Fd(f) => {
            if !fd::is_open(f) {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            // SAFETY: the fd is open; borrowed only to duplicate it.
            let b = unsafe { BorrowedFd::borrow_raw(f) };
            (Some(fd::dup_cloexec_min(b, min)?), None)
        }
        // The channel is placed by `spawn` itself.
        Stdio::Channel => (None, None),
    })
}

/// The prepared ends of every stdio entry (0-2, then the extra fds 3, ...).
struct Prepared {
    child: [Option<OwnedFd>; 3],
    parent: [Option<OwnedFd>; 3],
    /// `None` at the channel's place.
    extra_child: Vec<Option<OwnedFd>>,
    extra_parent: Vec<Option<OwnedFd>>,
}

/// Prepares the child's ends of stdio (to dup2; none: inherit) and ours. Every fd is above
/// the channel and the extra fds so no dup2 clobbers another.
fn prepare_stdio(plan: &SpawnPlan) -> io::Result<Prepared> {
    let min = lowest_free(plan);
    let mut p = Prepared { child: [None, None, None], parent: [None, None, None], extra_child: Vec::new(), extra_parent: Vec::new() };
    for (i, how) in plan.stdio.iter().enumerate() {
        (p.child[i], p.parent[i]) = prepare_one(*how, i, min)?;
    }
    for (k, how) in plan.extra.iter().enumerate() {
        let target = CHANNEL_FD as usize + k;
        let (child, parent) = prepare_one(*how, target, min)?;
        // An extra entry other than the channel always gives the child an fd ('inherit'
        // duplicated ours above).
        if child.is_none() && *how != Stdio::Channel {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        p.extra_child.push(child);
        p.extra_parent.push(parent);
    }
    Ok(p)
}

/// Starts `plan` with `channel` as fd `plan.channel_fd()`. Returns the child's pid and our stdio pipe ends.
pub fn spawn(plan: &SpawnPlan, channel: BorrowedFd<'_>) -> io::Result<Spawned> {
    // Keep our own fds clear of the number the child's channel must take.
    let min = lowest_free(plan);
    let chan = fd::dup_cloexec_min(channel, min)?;
    let prepared = prepare_stdio(plan)?;
    let stdio_raw: [RawFd; 3] = std::array::from_fn(|i| prepared.child[i].as_ref().map_or(-1, |f| f.as_raw_fd()));
    let extra_raw: Vec<RawFd> = prepared.extra_child.iter().map(|f| f.as_ref().map_or(-1, |f| f.as_raw_fd())).collect();
    let chan_fd = plan.channel_fd();
    let (err_r, err_w_low) = fd::pipe()?;
    let err_w = fd::dup_cloexec_min(err_w_low.as_fd(), min)?;
    // Only the high copy may stay open, or the read below never sees EOF.
    drop(err_w_low);

    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|s| s.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cwd = plan.cwd.as_deref();
    let parent = super::process::getpid();
    let (chan_raw, err_raw) = (chan.as_raw_fd(), err_w.as_raw_fd());

    // SAFETY: fork has no preconditions; the child branch below only makes
    // async-signal-safe calls on memory prepared before the fork, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see the module docs: async-signal-safe calls only, no allocation, no drop.
        unsafe { child(plan, &argv, &envp, cwd, (chan_raw, chan_fd), err_raw, parent, &stdio_raw, &extra_raw) }
    }
    drop(err_w);
    drop(chan);
    let Prepared { child: child_stdio, parent: parent_stdio, extra_child, extra_parent } = prepared;
    drop(child_stdio);
    drop(extra_child);
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match fd::read(err_r.as_fd(), &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(e),
        }
    }
    if got == 4 {
        super::pidfd::reap_pid(pid);
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(buf)));
    }
    Ok(Spawned { pid, stdio: parent_stdio, extra: extra_parent })
}

/// The child between fork and exec. Never returns.
///
/// # Safety
/// Must run only in a freshly forked child; every pointer must come from memory prepared
/// before the fork.
#[allow(
    clippy::too_many_arguments,
    reason = "the child between fork and exec may not allocate: everything it needs is prepared before the fork and passed as plain arguments"
)]
unsafe fn child(
    plan: &SpawnPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    cwd: Option<&CStr>,
    (chan, chan_fd): (RawFd, RawFd),
    err: RawFd,
    parent: i32,
    stdio: &[RawFd; 3],
    extra: &[RawFd],
) -> ! {
    // SAFETY: the caller's contract; each call is async-signal-safe.
    unsafe {
        let fail = |err_fd: RawFd| -> ! {
            let e = *libc::__errno_location();
            let b = e.to_ne_bytes();
            libc::write(err_fd, b.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        if libc::dup2(chan, chan_fd) < 0 {
            fail(err);
        }
        for (i, &f) in stdio.iter().enumerate() {
            if f >= 0 {
                if libc::dup2(f, i as i32) < 0 {
                    fail(err);
                }
            } else {
                // Inherited stdio must survive the exec even if the host made it
                // close-on-exec (Node does, for its own fds 0-2); libuv clears it too.
                libc::fcntl(i as i32, libc::F_SETFD, 0);
            }
        }
        for (k, &f) in extra.iter().enumerate() {
            if f >= 0 && libc::dup2(f, CHANNEL_FD + k as RawFd) < 0 {
                fail(err);
            }
        }
        // Signals: default dispositions and an empty mask, as libuv gives its children.
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        if plan.parent_death_signal != 0 {
            libc::prctl(libc::PR_SET_PDEATHSIG, plan.parent_death_signal as libc::c_ulong, 0, 0, 0);
            if unistd::getppid().as_raw() != parent {
                libc::_exit(1);
            }
        }
        // nix leaves errno as the failed call set it, which is what `fail` sends.
        if let Some(dir) = cwd
            && unistd::chdir(dir).is_err()
        {
            fail(err);
        }
        if plan.uid.is_some() || plan.gid.is_some() {
            // As libuv: drop supplementary groups; failure (not root) is not fatal.
            let _ = unistd::setgroups(&[]);
        }
        if let Some(gid) = plan.gid
            && unistd::setgid(Gid::from_raw(gid)).is_err()
        {
            fail(err);
        }
        if let Some(uid) = plan.uid
            && unistd::setuid(Uid::from_raw(uid)).is_err()
        {
            fail(err);
        }
        libc::execve(plan.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(err)
    }
}
