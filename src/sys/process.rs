//! Process-wide facts and the few process calls the logic needs.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

pub fn getpid() -> i32 {
    nix::unistd::getpid().as_raw()
}

/// Asks the kernel to send `sig` to this process when its parent (thread) dies (0: none).
/// `EINVAL` for a number that is no signal (nix's `Signal` has no `SIGRTMIN+n` either).
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    let sig = if sig == 0 { None } else { Some(Signal::try_from(sig)?) };
    Ok(nix::sys::prctl::set_pdeathsig(sig)?)
}

/// Set by a host whose exit handlers must not run off its main thread (`set_quick_exit`).
static QUICK_EXIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// When on, `exit_from_library_thread` called on any thread but the main one ends the
/// process with `_exit` (no `atexit` handlers, no static destructors): a host like Node,
/// whose teardown would race its still-running main thread, asks for it.
pub fn set_quick_exit(on: bool) {
    QUICK_EXIT.store(on, std::sync::atomic::Ordering::Release);
}

/// Ends the process with `code` (from a library thread or for the program), as Node's `process.exit` does when a
/// worker loses its primary: `exit`, so `atexit` handlers run and stdio is flushed (Node runs
/// its 'exit' handlers; test-cluster-primary-error checks it). They run on this thread while
/// the program's own threads may still be running; a host for which that is unsafe (the
/// Node addon) installs an `atexit` handler that calls `_exit` first.
pub fn exit_from_library_thread(code: i32) -> ! {
    if QUICK_EXIT.load(std::sync::atomic::Ordering::Acquire) && nix::unistd::gettid() != nix::unistd::getpid() {
        // SAFETY: `_exit` ends the process at once; nothing after it runs.
        unsafe { libc::_exit(code) }
    }
    // std's exit is libc's `exit` (atexit handlers, stdio flushed), without the `unsafe`.
    std::process::exit(code)
}

/// Removes a variable from the environment. Called once at worker start-up, before the
/// library starts any thread of its own.
pub fn unset_env(key: &str) {
    // SAFETY: the single-threaded start-up window is the caller's contract.
    unsafe { std::env::remove_var(key) }
}

/// The running executable (`/proc/self/exe`) and this process's argv (`/proc/self/cmdline`).
///
/// The executable's path is read once and kept: a worker forked after the file was
/// replaced (a new build, a rolling restart) runs the new file at that path, where
/// `/proc/self/exe` would name the old, deleted one.
pub fn current_command() -> io::Result<(PathBuf, Vec<OsString>)> {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let exe = match EXE.get() {
        Some(p) => p.clone(),
        None => EXE.get_or_init(|| std::fs::read_link("/proc/self/exe").unwrap_or_default()).clone(),
    };
    if exe.as_os_str().is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "/proc/self/exe could not be read"));
    }
    let raw = std::fs::read("/proc/self/cmdline")?;
    let mut args: Vec<OsString> = raw.split(|&b| b == 0).map(|s| OsString::from_vec(s.to_vec())).collect();
    if raw.last() == Some(&0) {
        args.pop();
    }
    Ok((exe, args))
}

/// Blocks every signal in the calling thread, so a library thread never runs the host's
/// handlers (house style P5).
pub fn block_signals_in_this_thread() {
    // pthread_sigmask fails only for a bad `how`; the error, as before, is not reported.
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
}

/// Number of online CPUs.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The resident set size of process `pid` (`/proc/<pid>/statm`), in bytes.
pub fn rss_bytes(pid: i32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 =
        text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok(pages * nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64)
}
