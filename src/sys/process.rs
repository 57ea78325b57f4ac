//! Process-wide facts and the few process calls the logic needs.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Asks the kernel to send `sig` to this process when its parent (thread) dies.
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    syscall!(prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0)).map(drop)
}

/// Ends the process with `code` (from a library thread or for the program), as Node's `process.exit` does when a
/// worker loses its primary: `exit`, so `atexit` handlers run and stdio is flushed (Node runs
/// its 'exit' handlers; test-cluster-primary-error checks it). They run on this thread while
/// the program's own threads may still be running; a host for which that is unsafe (the
/// Node addon) installs an `atexit` handler that calls `_exit` first.
pub fn exit_from_library_thread(code: i32) -> ! {
    // SAFETY: exit has no preconditions.
    unsafe { libc::exit(code) }
}

/// Removes a variable from the environment. Called once at worker start-up, before the
/// library starts any thread of its own.
pub fn unset_env(key: &str) {
    // SAFETY: the single-threaded start-up window is the caller's contract.
    unsafe { std::env::remove_var(key) }
}

/// The running executable (`/proc/self/exe`) and this process's argv (`/proc/self/cmdline`).
pub fn current_command() -> io::Result<(PathBuf, Vec<OsString>)> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let raw = std::fs::read("/proc/self/cmdline")?;
    let mut args: Vec<OsString> =
        raw.split(|&b| b == 0).map(|s| OsString::from_vec(s.to_vec())).collect();
    if raw.last() == Some(&0) {
        args.pop();
    }
    Ok((exe, args))
}

/// Blocks every signal in the calling thread, so a library thread never runs the host's
/// handlers (house style P5).
pub fn block_signals_in_this_thread() {
    // SAFETY: the sigset is initialized by sigfillset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Number of online CPUs.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
