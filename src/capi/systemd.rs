//! systemd integration besides socket activation (`docs/systemd.md`), without libsystemd:
//! the notification protocol (`sd_notify(3)`) and the primary's opt-in use of it (readiness,
//! reloads, stop, status, a watchdog gated on workers that can serve, the fd store).

use std::ffi::{c_char, c_int};

use super::{invalid, opt_str, ret};
use crate::api;

/// `cluster_systemd` flag: `READY=1` once the initial workers are ready (supervision's
/// target, or every forked worker), `RELOADING=1` + `MONOTONIC_USEC=` at a rolling
/// restart's start and `READY=1` at its end, `STOPPING=1` when a stop begins, `STATUS=`.
pub const CLUSTER_SYSTEMD_NOTIFY: c_int = 1;
/// `cluster_systemd` flag: `WATCHDOG=1` every `WATCHDOG_USEC`/2 (when `WATCHDOG_PID` is unset
/// or this process), sent from the distributor thread only while at least one ready worker
/// can serve (not stopped, not stalled).
pub const CLUSTER_SYSTEMD_WATCHDOG: c_int = 2;
/// `cluster_systemd` flag: each listening socket the primary binds for its workers is
/// stored in systemd's fd store (`FDSTORE=1`, `FDNAME=lc-<address>`; needs
/// `FileDescriptorStoreMax=`), so a primary restarted after a crash gets it back through
/// `cluster_listen_fds` and refuses nothing.
pub const CLUSTER_SYSTEMD_FDSTORE: c_int = 4;
/// Every `CLUSTER_SYSTEMD_*` flag.
pub const CLUSTER_SYSTEMD_ALL: c_int = 7;

/// Sends `state` (newline-separated `KEY=value` assignments, as `sd_notify(3)`) to the
/// socket `$NOTIFY_SOCKET` names (an absolute path, or `@name`: the abstract namespace), in
/// one datagram from a fresh close-on-exec socket, without blocking.
///
/// Returns 1 when sent, 0 when `NOTIFY_SOCKET` is unset or empty (nothing to do), or
/// `-EINVAL` (`state` NULL, empty or not UTF-8; `NOTIFY_SOCKET` not a path or `@name`),
/// `-EAFNOSUPPORT` (a `vsock:` address), or the send's errno (`-ENOENT`, `-ECONNREFUSED`,
/// `-EAGAIN` when the receiver is full...). Any thread, either role, also before
/// `cluster_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_notify(state: *const c_char) -> c_int {
    ffi_guard!({
        // SAFETY: the caller passes NULL or a NUL-terminated string (contract).
        let state = match unsafe { opt_str(state, "state") } {
            Ok(Some(s)) if !s.is_empty() => s,
            Ok(_) => return ret(Err(invalid("state is NULL or empty"))),
            Err(e) => return ret(Err(e)),
        };
        ret(api::notify(state).map(c_int::from))
    })
}

/// Turns the primary's systemd notifications on (`flags`: `CLUSTER_SYSTEMD_*` ORed; 0 turns
/// them off). Opt-in: nothing is ever sent to systemd unless this is called. Reads
/// `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` now; call `cluster_listen_fds` first
/// (the sockets systemd passed are not stored again). What is sent, and when, is in
/// `docs/systemd.md`; the unit wants `Type=notify-reload` (or `notify`) and
/// `NotifyAccess=main`. Call it once, before `cluster_run` (a second call starts the
/// notifications over: `READY=1` may be sent again).
///
/// Returns 1 when notifications will be sent, 0 when `NOTIFY_SOCKET` is unset (or `flags`
/// is 0: nothing will be sent), or `-EINVAL` (an unknown flag, `NOTIFY_SOCKET` malformed),
/// `CLUSTER_E_WRONG_ROLE` in a worker.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_systemd(flags: c_int) -> c_int {
    ffi_guard!({
        if flags & !CLUSTER_SYSTEMD_ALL != 0 {
            return ret(Err(invalid("flags must be CLUSTER_SYSTEMD_* values")));
        }
        ret(api::systemd(flags as u32).map(c_int::from))
    })
}
