//! Supervision beyond Node (`docs/supervision.md`): respawn with backoff and a crash-loop
//! breaker, readiness, rolling restarts, drains, stats, recycling, stuck workers, and
//! signals a host's own handler passes on. All opt-in: without `cluster_supervise` and the
//! signal calls, the primary behaves as Node's.

use std::ffi::{c_char, c_int};

use super::types::{
    CLUSTER_READY_EXPLICIT, CLUSTER_READY_LISTENING, CLUSTER_READY_ONLINE, cluster_stats, cluster_supervisor, cluster_worker_stats,
};
use super::{invalid, ret};
use crate::api;
use crate::primary::stats::WorkerStats;
use crate::primary::supervisor::Control;
use crate::primary::supervisor::policy::{Policy, ReadyOn};

/// Copies `size` bytes of `ours` into the caller's struct at `out` (at most ours).
///
/// # Safety
/// `out` has `size` writable bytes.
unsafe fn write_sized<T>(ours: &T, out: *mut T, size: usize) {
    // SAFETY: the caller's contract; never more than our own struct.
    unsafe { std::ptr::copy_nonoverlapping((ours as *const T).cast::<u8>(), out.cast::<u8>(), size.min(std::mem::size_of::<T>())) };
}

/// Checks a caller's `size` (its struct's `sizeof`): at least the first version's.
fn check_size(size: usize, v1: usize, what: &str) -> crate::error::Result<()> {
    if size < v1 || size > 1 << 16 {
        return Err(invalid(&format!("{what} is NULL or its size is not set (call its _init)")));
    }
    Ok(())
}

fn recommended() -> cluster_supervisor {
    let p = Policy::recommended();
    let ms = |v: u64| v.min(c_int::MAX as u64) as c_int;
    cluster_supervisor {
        size: std::mem::size_of::<cluster_supervisor>(),
        workers: p.workers as c_int,
        backoff_base_ms: ms(p.backoff_base_ms),
        backoff_max_ms: ms(p.backoff_max_ms),
        stable_ms: ms(p.stable_ms),
        breaker_burst: p.breaker_burst as c_int,
        breaker_window_ms: ms(p.breaker_window_ms),
        breaker_cooldown_ms: ms(p.breaker_cooldown_ms),
        ready_on: CLUSTER_READY_LISTENING,
        boot_timeout_ms: ms(p.boot_timeout_ms),
        drain_timeout_ms: ms(p.drain_timeout_ms),
        kill_after_ms: ms(p.kill_after_ms),
        stuck_timeout_ms: ms(p.stuck_timeout_ms),
        max_connections: p.max_connections,
        max_rss_bytes: p.max_rss_bytes,
        max_age_ms: ms(p.max_age_ms),
        recycle_jitter_pct: p.recycle_jitter_pct as c_int,
        rss_interval_ms: ms(p.rss_interval_ms),
        max_surge: p.max_surge as c_int,
        seed: p.seed,
        drain_delay_ms: ms(p.drain_delay_ms),
    }
}

/// The first version's `sizeof(cluster_supervisor)` (before `drain_delay_ms`).
const SUPERVISOR_V1: usize = std::mem::offset_of!(cluster_supervisor, drain_delay_ms);

/// Fills `*s` with what a production user would pick (see each field), `s->size` with
/// `size`, writing only the first `size` bytes: pass `sizeof *s`. `workers` is 0: set it.
/// Returns 0, or `-EINVAL` (NULL, or `size` smaller than the first version's). Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_supervisor_init(s: *mut cluster_supervisor, size: usize) -> c_int {
    ffi_guard!({
        if s.is_null() {
            return ret(Err(invalid("supervisor is NULL")));
        }
        if let Err(e) = check_size(size, SUPERVISOR_V1, "supervisor") {
            return ret(Err(e));
        }
        let ours = cluster_supervisor { size, ..recommended() };
        // SAFETY: the caller's struct has `size` writable bytes (contract).
        unsafe { write_sized(&ours, s, size) };
        0
    })
}

/// Turns supervision on, or changes it (`workers` 0 turns respawn off again). Workers are
/// forked at once up to `workers`; from then on each dead one is replaced after a jittered
/// exponential delay, and the crash-loop breaker, readiness, drains, stuck detection and
/// recycling follow `*s`. `cluster_run` keeps running while supervision has work (a
/// respawn due, an open breaker), until a stop.
///
/// Returns 0. Errors: `-EINVAL` (NULL, `size` not set, a field out of range; nothing
/// changes), `CLUSTER_E_WRONG_ROLE` in a worker. Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_supervise(s: *const cluster_supervisor) -> c_int {
    ffi_guard!({
        if s.is_null() {
            return ret(Err(invalid("supervisor is NULL")));
        }
        let r = (|| {
            // SAFETY: non-NULL; `size` is the first field.
            let size = unsafe { (*s).size };
            check_size(size, SUPERVISOR_V1, "supervisor")?;
            let mut c = recommended();
            // SAFETY: copy only the `size` bytes the caller's struct has (at most ours).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    s.cast::<u8>(),
                    (&mut c as *mut cluster_supervisor).cast::<u8>(),
                    size.min(std::mem::size_of::<cluster_supervisor>()),
                )
            };
            let non_neg = |v: c_int, what: &str| u64::try_from(v).map_err(|_| invalid(&format!("supervisor: {what} must not be negative")));
            let ready_on = match c.ready_on {
                CLUSTER_READY_LISTENING => ReadyOn::Listening,
                CLUSTER_READY_EXPLICIT => ReadyOn::Explicit,
                CLUSTER_READY_ONLINE => ReadyOn::Online,
                _ => return Err(invalid("supervisor: ready_on must be a CLUSTER_READY_* value")),
            };
            let policy = Policy {
                workers: non_neg(c.workers, "workers")? as usize,
                backoff_base_ms: non_neg(c.backoff_base_ms, "backoff_base_ms")?,
                backoff_max_ms: non_neg(c.backoff_max_ms, "backoff_max_ms")?,
                stable_ms: non_neg(c.stable_ms, "stable_ms")?,
                breaker_burst: non_neg(c.breaker_burst, "breaker_burst")? as usize,
                breaker_window_ms: non_neg(c.breaker_window_ms, "breaker_window_ms")?,
                breaker_cooldown_ms: non_neg(c.breaker_cooldown_ms, "breaker_cooldown_ms")?,
                ready_on,
                boot_timeout_ms: non_neg(c.boot_timeout_ms, "boot_timeout_ms")?,
                drain_timeout_ms: non_neg(c.drain_timeout_ms, "drain_timeout_ms")?,
                kill_after_ms: non_neg(c.kill_after_ms, "kill_after_ms")?,
                stuck_timeout_ms: non_neg(c.stuck_timeout_ms, "stuck_timeout_ms")?,
                max_connections: c.max_connections,
                max_rss_bytes: c.max_rss_bytes,
                max_age_ms: non_neg(c.max_age_ms, "max_age_ms")?,
                recycle_jitter_pct: non_neg(c.recycle_jitter_pct, "recycle_jitter_pct")? as u32,
                rss_interval_ms: non_neg(c.rss_interval_ms, "rss_interval_ms")?,
                max_surge: non_neg(c.max_surge, "max_surge")? as usize,
                seed: c.seed,
                drain_delay_ms: non_neg(c.drain_delay_ms, "drain_delay_ms")?,
            };
            api::supervise(policy).map(|_| 0)
        })();
        ret(r)
    })
}

/// A rolling restart: every serving worker is replaced by a new one running the program
/// file now on disk, `max_surge` at a time (0: the supervisor's, 1 by default). An old
/// worker drains only once a new one is ready; a new one that dies or times out before it
/// is ready aborts the rollout, and the old workers not yet replaced keep serving.
/// `CLUSTER_EVENT_ROLLOUT` reports STARTED, each STEP, then DONE or ABORTED.
///
/// Returns the generation it moves to (2, 3, ...). Errors: `CLUSTER_E_BUSY` (one is under
/// way, or a stop), `CLUSTER_E_BREAKER_OPEN`, `-EINVAL` (negative `max_surge`),
/// `CLUSTER_E_WRONG_ROLE`. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_rolling_restart(max_surge: c_int) -> c_int {
    ffi_guard!({
        let Ok(surge) = usize::try_from(max_surge) else { return ret(Err(invalid("max_surge must not be negative"))) };
        ret(api::rolling_restart(surge).map(|g| g.min(c_int::MAX as u32) as c_int))
    })
}

/// Keeps `workers` workers (1..4096): more are forked at once; the extra ones drain (not
/// yet ready first, then the newest). Turns respawn on if it was off.
///
/// Returns 0. Errors: `-EINVAL`, `CLUSTER_E_BUSY` (stopping), `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_scale(workers: c_int) -> c_int {
    ffi_guard!({
        let Ok(n) = usize::try_from(workers) else { return ret(Err(invalid("workers must be 1..4096"))) };
        ret(api::scale(n).map(|_| 0))
    })
}

/// Drains worker `worker_id`: from this call it gets no new connection, and the
/// connections handed to it but not yet received go to other workers; it is told to
/// disconnect (its servers close, `cluster_worker_draining()` says 1, it finishes its open
/// connections and exits), then gets SIGTERM after `drain_timeout_ms` and SIGKILL
/// `kill_after_ms` later. A supervised primary replaces it at once.
///
/// Returns 0. Errors: `-ESRCH` (no such live worker), `CLUSTER_E_CLOSED` (draining
/// already), `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_drain_worker(worker_id: c_int) -> c_int {
    ffi_guard!({ ret(api::drain_worker(worker_id).map(|_| 0)) })
}

/// Closes an open crash-loop breaker at once (forks resume). Returns 0, or
/// `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_breaker_reset() -> c_int {
    ffi_guard!({ ret(api::reset_breaker().map(|_| 0)) })
}

/// Does what `action` (`CLUSTER_ACT_*`) does when its signal comes, now, from the calling
/// thread (for a control socket, a test, a binding). Returns 0, or `-EINVAL`,
/// `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_control(action: c_int) -> c_int {
    ffi_guard!({
        match Control::from_i32(action) {
            Some(a) => ret(api::control(a).map(|_| 0)),
            None => ret(Err(invalid("action must be a CLUSTER_ACT_* value"))),
        }
    })
}

fn to_c(w: &WorkerStats, size: usize) -> cluster_worker_stats {
    let int = |v: i64| v.clamp(c_int::MIN as i64, c_int::MAX as i64) as c_int;
    cluster_worker_stats {
        size,
        worker_id: int(w.id as i64),
        pid: w.pid,
        generation: int(w.generation as i64),
        alive: w.alive as c_int,
        ready: w.ready as c_int,
        draining: w.draining as c_int,
        exit_kind: w.exit_kind,
        exit_code: w.exit_code,
        exit_signal: w.exit_signal,
        forked_ms: w.forked_ms,
        ready_ms: w.ready_ms,
        handed: w.handed,
        received: w.received,
        queued: w.queued,
        rerouted: w.rerouted,
        lost: w.lost,
        handoff_us_p50: w.handoff_us_p50,
        handoff_us_p99: w.handoff_us_p99,
        handoff_us_max: w.handoff_us_max,
        rss_bytes: w.rss_bytes,
    }
}

/// Fills `*out` (its `size` bytes: pass `sizeof *out`) with worker `worker_id`'s figures:
/// alive, or among the 256 most recently gone. Returns 0. Errors: `-EINVAL` (NULL, bad
/// size), `-ESRCH`, `CLUSTER_E_WRONG_ROLE`. Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_worker_stats_get(worker_id: c_int, out: *mut cluster_worker_stats, size: usize) -> c_int {
    ffi_guard!({
        if out.is_null() {
            return ret(Err(invalid("out is NULL")));
        }
        let r = check_size(size, std::mem::size_of::<cluster_worker_stats>(), "out").and_then(|_| api::worker_stats(worker_id));
        match r {
            Ok(w) => {
                // SAFETY: `out` has `size` writable bytes (contract).
                unsafe { write_sized(&to_c(&w, size), out, size) };
                0
            }
            Err(e) => ret(Err(e)),
        }
    })
}

/// Fills `*out` (its `size` bytes: pass `sizeof *out`) with the cluster's figures.
/// Returns 0. Errors: `-EINVAL`, `CLUSTER_E_WRONG_ROLE`. Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_stats_get(out: *mut cluster_stats, size: usize) -> c_int {
    ffi_guard!({
        if out.is_null() {
            return ret(Err(invalid("out is NULL")));
        }
        let r = check_size(size, std::mem::size_of::<cluster_stats>(), "out").and_then(|_| api::stats());
        match r {
            Ok(s) => {
                let int = |v: u32| v.min(c_int::MAX as u32) as c_int;
                let c = cluster_stats {
                    size,
                    target: int(s.target),
                    workers: int(s.workers),
                    ready: int(s.ready),
                    draining: int(s.draining),
                    generation: int(s.generation),
                    breaker: s.breaker,
                    rollout: int(s.rollout),
                    stopping: s.stopping,
                    respawns: s.respawns,
                };
                // SAFETY: `out` has `size` writable bytes (contract).
                unsafe { write_sized(&c, out, size) };
                0
            }
            Err(e) => ret(Err(e)),
        }
    })
}

/// Writes the cluster's and every worker's figures as one JSON object (with a NUL) into
/// `buf`, as `snprintf` does: returns the length of the whole text (without the NUL) even
/// when `len` is too small (then `buf` holds a NUL-terminated prefix, or nothing when `len`
/// is 0; `buf` may be NULL when `len` is 0). Errors: `-EINVAL` (NULL `buf` with `len`),
/// `CLUSTER_E_WRONG_ROLE`. Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_stats_json(buf: *mut c_char, len: usize) -> c_int {
    ffi_guard!({
        if buf.is_null() && len > 0 {
            return ret(Err(invalid("buf is NULL")));
        }
        match api::stats() {
            Ok(s) => {
                let text = s.to_json().to_string();
                if len > 0 {
                    let n = text.len().min(len - 1);
                    // SAFETY: `buf` has `len` writable bytes (contract); we write n + 1 <= len.
                    unsafe {
                        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
                        *buf.add(n) = 0;
                    }
                }
                text.len().min(c_int::MAX as usize) as c_int
            }
            Err(e) => ret(Err(e)),
        }
    })
}

/// Worker: tells a supervising primary this worker is ready, for `ready_on =
/// CLUSTER_READY_EXPLICIT` (pm2's `wait_ready`): call it once the program can serve
/// (after warming caches, say). A Node primary ignores it. Returns 0. Errors:
/// `CLUSTER_E_CLOSED`, `CLUSTER_E_WRONG_ROLE` in the primary.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_ready() -> c_int {
    ffi_guard!({ ret(api::worker_ready().map(|_| 0)) })
}

/// Worker: 1 once it is draining (its primary asked it to disconnect, it disconnected
/// itself, or the channel is gone): answer `Connection: close` and finish. 0 otherwise.
/// Errors: `CLUSTER_E_WRONG_ROLE` in the primary.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_draining() -> c_int {
    ffi_guard!({ ret(api::worker_draining().map(|d| d as c_int)) })
}

/// Records signal `signo` for the primary to act on (`cluster_signal_map`; by default HUP
/// rolling restart, TTIN/TTOU one worker more/less, TERM graceful stop, INT fast stop);
/// the action runs on the library's thread, and repeats before it runs count once.
/// Async-signal-safe: call it from the program's own signal handler (C `sigaction`,
/// Python `signal.signal`, Node `process.on`). libcluster installs no handler unless asked
/// (`cluster_install_signal_handlers`).
///
/// Returns 0, `-EINVAL` (not a signal number), or `CLUSTER_E_WRONG_ROLE` (a worker).
/// Sets no last error (it may run in a handler).
#[unsafe(no_mangle)]
pub extern "C" fn cluster_handle_signal(signo: c_int) -> c_int {
    ffi_guard!({ crate::signals::handle(signo) })
}

/// Maps signal `signo` to `action` (`CLUSTER_ACT_*`, or -1 for the default mapping) for
/// `cluster_handle_signal`. Returns 0. Errors: `-EINVAL`, `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_signal_map(signo: c_int, action: c_int) -> c_int {
    ffi_guard!({ ret(api::signal_map(signo, action).map(|_| 0)) })
}

extern "C" fn on_signal(signo: c_int) {
    let _ = crate::signals::handle(signo);
}

/// For C programs: installs a handler calling `cluster_handle_signal` for HUP, TTIN, TTOU,
/// TERM and INT (`SA_RESTART`), keeping the previous ones for
/// `cluster_restore_signal_handlers`. The only call that installs a handler.
/// Returns 0. Errors: `CLUSTER_E_WRONG_ROLE` in a worker, or `sigaction`'s errno.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_install_signal_handlers() -> c_int {
    ffi_guard!({
        let r = api::install_signal_handlers(|signals| crate::sys::signal::install(signals, on_signal));
        ret(r.map(|_| 0))
    })
}

/// Puts back the handlers `cluster_install_signal_handlers` replaced. Returns 0, or
/// `sigaction`'s errno.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_restore_signal_handlers() -> c_int {
    ffi_guard!({ ret(crate::sys::signal::restore().map(|_| 0).map_err(|e| crate::error::Error::io("sigaction", e))) })
}
