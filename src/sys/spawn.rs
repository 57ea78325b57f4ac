//! fork + exec of a worker, safe in a multi-threaded host (house style P2).
//!
//! Everything the child needs is built before `fork()`; between fork and exec the child
//! calls only async-signal-safe functions (`dup2`, `fcntl`, `sigaction`, `sigprocmask`,
//! `prctl`, `chdir`, `setgid`, `setuid`, `execve`, `write`, `_exit`) and runs no destructor.
//! An exec failure travels back as an errno through a close-on-exec pipe, as libuv does.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use super::fd;

/// A fully prepared command line, built before forking.
#[derive(Debug, Clone)]
pub struct SpawnPlan {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: Option<CString>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Signal the child gets when the forking thread dies (0: none).
    pub parent_death_signal: i32,
}

/// The fd number the channel gets in the child (Node's `NODE_CHANNEL_FD`).
pub(crate) const CHANNEL_FD: RawFd = 3;

/// Starts `plan` with `channel` as fd 3 and stdio inherited. Returns the child's pid.
pub fn spawn(plan: &SpawnPlan, channel: BorrowedFd<'_>) -> io::Result<i32> {
    // Keep our own fds clear of the number the child's channel must take.
    let chan = fd::dup_cloexec_min(channel, CHANNEL_FD + 1)?;
    let (err_r, err_w_low) = fd::pipe()?;
    let err_w = fd::dup_cloexec_min(err_w_low.as_fd(), CHANNEL_FD + 1)?;
    // Only the high copy may stay open, or the read below never sees EOF.
    drop(err_w_low);

    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|s| s.as_ptr()).collect();
    envp.push(std::ptr::null());
    let cwd = plan.cwd.as_ref().map(|c| c.as_ptr());
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
        unsafe { child(plan, &argv, &envp, cwd, chan_raw, err_raw, parent) }
    }
    drop(err_w);
    drop(chan);
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
    Ok(pid)
}

/// The child between fork and exec. Never returns.
///
/// # Safety
/// Must run only in a freshly forked child; every pointer must come from memory prepared
/// before the fork.
unsafe fn child(
    plan: &SpawnPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    cwd: Option<*const libc::c_char>,
    chan: RawFd,
    err: RawFd,
    parent: i32,
) -> ! {
    // SAFETY: the caller's contract; each call is async-signal-safe.
    unsafe {
        let fail = |err_fd: RawFd| -> ! {
            let e = *libc::__errno_location();
            let b = e.to_ne_bytes();
            libc::write(err_fd, b.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        if libc::dup2(chan, CHANNEL_FD) < 0 {
            fail(err);
        }
        // Signals: default dispositions and an empty mask, as libuv gives its children.
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if plan.parent_death_signal != 0 {
            libc::prctl(libc::PR_SET_PDEATHSIG, plan.parent_death_signal as libc::c_ulong, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
        }
        if let Some(dir) = cwd {
            if libc::chdir(dir) < 0 {
                fail(err);
            }
        }
        if let Some(gid) = plan.gid {
            if libc::setgid(gid) < 0 {
                fail(err);
            }
        }
        if let Some(uid) = plan.uid {
            if libc::setuid(uid) < 0 {
                fail(err);
            }
        }
        libc::execve(plan.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(err)
    }
}
