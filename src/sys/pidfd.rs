//! Process fds: watch, signal and reap exactly the children we spawned (never `waitpid(-1)`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::unistd::Pid;

/// How a child ended, as Node reports it: an exit code or a signal number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

/// `pidfd_open(pid, 0)`; the new fd is close-on-exec. Raw: nix has no `pidfd_open`.
pub fn open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

/// `pidfd_send_signal(pidfd, sig)`. `ESRCH` once the process has been reaped. Raw: nix has
/// no `pidfd_send_signal`.
pub fn send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed; the other arguments are integers.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Reaps the child behind `pidfd` if it has exited (`waitid(P_PIDFD, WEXITED|WNOHANG)`).
/// `Ok(None)` while it still runs.
///
/// Raw, not nix's `waitid(Id::PIDFd, ..)`: nix converts the status to its `Signal` enum
/// *after* the kernel has reaped the child, so a worker killed by a real-time signal
/// (`SIGRTMIN+n`) would come back as `EINVAL` and its exit be lost for good.
pub fn try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<ExitStatus>> {
    // SAFETY: an all-zero siginfo_t is valid for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    super::retry(|| syscall!(waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG)))?;
    // SAFETY: waitid filled `info` for a SIGCHLD-style report (or left it zeroed).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => ExitStatus::Code(status),
        _ => ExitStatus::Signal(status),
    }))
}

/// Reaps the child `pid` (blocking). Used only for a child whose exec failed.
pub fn reap_pid(pid: i32) {
    // The status is not wanted, so nix's lossy conversion of it does not matter here.
    let _ = super::retry(|| Ok(nix::sys::wait::waitpid(Pid::from_raw(pid), None)?));
}

/// A child we spawned: through its pidfd where the kernel offers `pidfd_open` (Linux 5.3+),
/// else by pid (valgrind, old kernels, seccomp). By pid, exits are found by polling
/// `waitpid(pid, WNOHANG)` on exactly that pid; a signal could reach a recycled pid only
/// in the instant between our reap and the caller's next look, which the pidfd path rules out.
#[derive(Debug)]
pub enum Child {
    PidFd { pid: i32, fd: OwnedFd },
    Pid(i32),
}

impl Child {
    pub fn open(pid: i32) -> io::Result<Child> {
        match open(pid) {
            Ok(fd) => Ok(Child::PidFd { pid, fd }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)) => Ok(Child::Pid(pid)),
            Err(e) => Err(e),
        }
    }

    pub fn pid(&self) -> i32 {
        match self {
            Child::PidFd { pid, .. } | Child::Pid(pid) => *pid,
        }
    }

    /// The fd to watch for the exit, if there is one.
    pub fn pollable(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Child::PidFd { fd, .. } => Some(std::os::fd::AsFd::as_fd(fd)),
            Child::Pid(_) => None,
        }
    }

    /// `sig` is any signal number, real-time ones included: the pid fallback is raw `kill`,
    /// since nix's `kill` takes its `Signal` enum, which has no `SIGRTMIN+n`.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        match self {
            Child::PidFd { fd, pid } => match send_signal(std::os::fd::AsFd::as_fd(fd), sig) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => syscall!(kill(*pid, sig)).map(drop),
                other => other,
            },
            Child::Pid(pid) => syscall!(kill(*pid, sig)).map(drop),
        }
    }

    /// Reaps the child if it has exited; `Ok(None)` while it runs.
    pub fn try_reap(&self) -> io::Result<Option<ExitStatus>> {
        match self {
            Child::PidFd { fd, .. } => try_reap(std::os::fd::AsFd::as_fd(fd)),
            // Raw `waitpid` for the reason given at `try_reap` above.
            Child::Pid(pid) => {
                let mut status = 0;
                let r = super::retry(|| syscall!(waitpid(*pid, &mut status, libc::WNOHANG)))?;
                if r == 0 {
                    return Ok(None);
                }
                Ok(Some(if libc::WIFEXITED(status) {
                    ExitStatus::Code(libc::WEXITSTATUS(status))
                } else {
                    ExitStatus::Signal(libc::WTERMSIG(status))
                }))
            }
        }
    }
}
