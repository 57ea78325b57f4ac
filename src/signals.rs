//! Signals, opt-in only: a host's own handler (C `sigaction`, Python `signal.signal`, Node
//! `process.on`) calls `handle`, which is async-signal-safe: it sets a bit and wakes the
//! distributor, which runs the mapped action (`supervisor::Control`) on its own thread.
//! Repeats before the distributor runs coalesce. Nothing here installs a handler.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

use crate::error::{Error, Result, code};
use crate::primary::supervisor::Control;

static PENDING: AtomicU64 = AtomicU64::new(0);
/// The distributor's wake eventfd, once it runs (-1 before).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// 0: not known yet, 1: primary, 2: worker.
static ROLE: AtomicU8 = AtomicU8::new(0);
/// The action per signal number (1..=63), `Control` as a number; 255: the default.
static MAP: [AtomicU8; 64] = [const { AtomicU8::new(255) }; 64];

/// The default mapping: HUP rolling restart, TTIN/TTOU one worker more/less, TERM graceful
/// stop, INT fast stop, USR2 hot upgrade of the primary.
fn default_action(signo: i32) -> Control {
    match signo {
        libc::SIGHUP => Control::Reload,
        libc::SIGTTIN => Control::ScaleUp,
        libc::SIGTTOU => Control::ScaleDown,
        libc::SIGTERM => Control::StopGraceful,
        libc::SIGINT => Control::StopFast,
        libc::SIGUSR2 => Control::Upgrade,
        _ => Control::None,
    }
}

/// The signals the default mapping acts on (what `cluster_install_signal_handlers` installs).
pub const DEFAULT_SIGNALS: [i32; 6] = [libc::SIGHUP, libc::SIGTTIN, libc::SIGTTOU, libc::SIGTERM, libc::SIGINT, libc::SIGUSR2];

/// Error codes without a message: a signal handler must not allocate.
pub const INVALID: i32 = -libc::EINVAL;

pub fn set_role(primary: bool) {
    ROLE.store(if primary { 1 } else { 2 }, Ordering::Release);
}

/// Called from a signal handler: records `signo` and wakes the distributor. Returns 0,
/// `-EINVAL` (not a signal number) or `CLUSTER_E_WRONG_ROLE` (a worker).
pub fn handle(signo: i32) -> i32 {
    if !(1..64).contains(&signo) {
        return INVALID;
    }
    if ROLE.load(Ordering::Acquire) == 2 {
        return code::WRONG_ROLE;
    }
    PENDING.fetch_or(1 << signo, Ordering::AcqRel);
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        crate::sys::eventfd::signal_raw(fd);
    }
    0
}

/// The distributor runs: it is woken through `fd`.
pub fn set_wake(fd: i32) {
    WAKE_FD.store(fd, Ordering::Release);
}

/// The signals recorded since the last call, with their actions.
pub fn take_pending() -> Vec<(i32, Control)> {
    let bits = PENDING.swap(0, Ordering::AcqRel);
    (1..64).filter(|s| bits & (1 << s) != 0).map(|s| (s, action(s))).collect()
}

pub fn action(signo: i32) -> Control {
    match MAP[signo as usize].load(Ordering::Acquire) {
        255 => default_action(signo),
        v => Control::from_i32(v as i32).unwrap_or(Control::None),
    }
}

/// Maps `signo` to `action` (a `Control` number; -1: back to the default).
pub fn map(signo: i32, action: i32) -> Result<()> {
    if !(1..64).contains(&signo) {
        return Err(Error::errno(libc::EINVAL, format!("{signo} is not a signal number")));
    }
    let v = match action {
        -1 => 255,
        a => Control::from_i32(a).ok_or_else(|| Error::errno(libc::EINVAL, format!("{a} is not a CLUSTER_ACT_* value")))? as u8,
    };
    MAP[signo as usize].store(v, Ordering::Release);
    Ok(())
}
