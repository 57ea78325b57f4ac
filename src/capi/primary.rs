//! Roles and the primary's calls: fork, kill, the worker table.

use std::ffi::{CStr, OsString, c_char, c_int};
use std::os::unix::ffi::OsStringExt;

use super::types::{
    CLUSTER_SCHED_NONE, CLUSTER_SCHED_REUSEPORT, CLUSTER_SCHED_RR, CLUSTER_STDIO_IGNORE, CLUSTER_STDIO_INHERIT, CLUSTER_STDIO_IPC,
    CLUSTER_STDIO_PIPE, cluster_settings,
};
use super::{invalid, ret};
use crate::api;
use crate::error::Error;
use crate::primary::SchedPolicy;
use crate::primary::settings::Settings;
use crate::primary::settings::Stdio;

/// 1 if this process is the primary (no `NODE_UNIQUE_ID` in its environment), else 0.
/// Any thread; never fails.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_is_primary() -> c_int {
    ffi_guard!({ api::is_primary() as c_int })
}

/// 1 if this process is a worker (`NODE_UNIQUE_ID` was set when libcluster started), else 0.
///
/// The first call of any cluster function in a worker starts it: it takes the channel
/// (`NODE_CHANNEL_FD`), removes the `NODE_*` variables from the environment and sends
/// `online`. Any thread; never fails.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_is_worker() -> c_int {
    ffi_guard!({
        let w = api::is_worker();
        if w {
            // Start the worker (online) even if this is the only call the program makes.
            let _ = api::start();
        }
        w as c_int
    })
}

/// This worker's id (`NODE_UNIQUE_ID`: 1, 2, ...).
///
/// Errors: `CLUSTER_E_WRONG_ROLE` in the primary; the start-up error if the worker could not
/// take its channel. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_id() -> c_int {
    ffi_guard!({ ret(api::worker_self_id().map(|id| id as c_int)) })
}

/// Forks a worker: a new process running this program again (the same executable and
/// argv), with this process's environment plus `env`, then `NODE_UNIQUE_ID=<id>`,
/// `NODE_CHANNEL_FD=3` and `NODE_CHANNEL_SERIALIZATION_MODE=json`, and the IPC channel on
/// fd 3, as Node's `cluster.fork(env)` does. stdio is inherited.
///
/// `env`: NULL, or a NULL-terminated array of `"KEY=VALUE"` strings, borrowed for the call.
/// An entry `"KEY"` (no `=`) leaves KEY out of the worker's environment, as Node's
/// `fork({ KEY: undefined })` does.
///
/// Returns the worker id (1, 2, ..., never reused) once the program has been exec'd; a
/// `CLUSTER_EVENT_FORK` event follows. Errors: `-EINVAL` (an empty entry or key), `CLUSTER_E_WRONG_ROLE` in a worker, or the errno of a failed spawn or exec
/// (e.g. `-ENOENT`, `-EAGAIN`). Any thread, including inside an event callback.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_fork(env: *const *const c_char) -> c_int {
    ffi_guard!({
        let mut extra = Vec::new();
        let mut unset = Vec::new();
        if !env.is_null() {
            for i in 0.. {
                // SAFETY: the caller passes a NULL-terminated array of C strings.
                let p = unsafe { *env.add(i) };
                if p.is_null() {
                    break;
                }
                if i >= 65536 {
                    return ret(Err(invalid("env has more than 65536 entries (missing NULL terminator?)")));
                }
                // SAFETY: each entry is a NUL-terminated string, per the contract.
                let entry = unsafe { CStr::from_ptr(p) }.to_bytes();
                if !entry.is_empty() && !entry.contains(&b'=') {
                    unset.push(OsString::from_vec(entry.to_vec()));
                    continue;
                }
                match split_env(entry) {
                    Ok(kv) => extra.push(kv),
                    Err(e) => return ret(Err(e)),
                }
            }
        }
        ret(api::fork(&extra, &unset).map(|id| id as c_int))
    })
}

/// Sends signal `signal` to worker `worker_id` (through its pidfd, never to a recycled
/// pid), as Node v20's `worker.kill(signal)` does: at once, without disconnecting first.
/// Signal 0 only checks that the worker is alive.
///
/// Returns 0. Errors: `-ESRCH` (unknown or dead worker), `-EINVAL` (bad signal),
/// `CLUSTER_E_WRONG_ROLE` in a worker. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_kill(worker_id: c_int, signal: c_int) -> c_int {
    ffi_guard!({ ret(api::kill(worker_id, signal).map(|_| 0)) })
}

/// The number of workers in the table (Node's `Object.keys(cluster.workers).length`): a
/// worker leaves it once it is both disconnected and exited.
///
/// Errors: `CLUSTER_E_WRONG_ROLE` in a worker. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_count() -> c_int {
    ffi_guard!({ ret(api::worker_count().map(|n| n as c_int)) })
}

/// Writes up to `len` worker ids (ascending) to `out_ids` and returns how many workers there
/// are (which may exceed `len`, as with snprintf). `out_ids` may be NULL only when `len` is 0.
///
/// Errors: `-EINVAL` (NULL `out_ids` with `len` > 0), `CLUSTER_E_WRONG_ROLE` in a worker.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_workers(out_ids: *mut c_int, len: usize) -> c_int {
    ffi_guard!({
        if out_ids.is_null() && len > 0 {
            return ret(Err(invalid("out_ids is NULL")));
        }
        ret(api::worker_ids().map(|ids| {
            for (i, id) in ids.iter().take(len).enumerate() {
                // SAFETY: the caller provides room for `len` ints at `out_ids`.
                unsafe { *out_ids.add(i) = *id as c_int };
            }
            ids.len() as c_int
        }))
    })
}

/// The pid of worker `worker_id`. Errors: `-ESRCH` (not in the table),
/// `CLUSTER_E_WRONG_ROLE` in a worker.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_pid(worker_id: c_int) -> c_int {
    ffi_guard!({ ret(api::worker_pid(worker_id)) })
}

/// Sets every field of `*settings` to "unchanged" and `settings->size` to `size`, writing
/// only the first `size` bytes: pass `sizeof *settings` as the caller was compiled, so a
/// program built against an older (shorter) struct is never written past its end.
/// Returns 0, or `-EINVAL` for NULL or a `size` smaller than the first version's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_settings_init(settings: *mut cluster_settings, size: usize) -> c_int {
    ffi_guard!({
        if settings.is_null() || size < std::mem::offset_of!(cluster_settings, env) {
            return ret(Err(invalid("settings is NULL or size is too small")));
        }
        let ours = cluster_settings { size, ..unchanged_settings() };
        // SAFETY: the caller's struct has `size` writable bytes (contract); we write at most
        // that many, and no more than our own struct has.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&ours as *const cluster_settings).cast::<u8>(),
                settings.cast::<u8>(),
                size.min(std::mem::size_of::<cluster_settings>()),
            )
        };
        0
    })
}

/// Settings that change nothing (what `cluster_settings_init` gives).
fn unchanged_settings() -> cluster_settings {
    cluster_settings {
        size: std::mem::size_of::<cluster_settings>(),
        exec: std::ptr::null(),
        args: std::ptr::null(),
        cwd: std::ptr::null(),
        env: std::ptr::null(),
        silent: -1,
        stdio: std::ptr::null(),
        uid: -1,
        gid: -1,
        serialization: std::ptr::null(),
        sched_policy: 0,
        max_in_flight: 0,
        least_loaded: -1,
        max_servers: 0,
        stdio_count: 0,
    }
}

/// -1: unchanged, 0: off, 1: on.
fn tristate(v: c_int, what: &str) -> crate::error::Result<Option<bool>> {
    match v {
        -1 => Ok(None),
        0 | 1 => Ok(Some(v == 1)),
        _ => Err(invalid(&format!("{what} must be -1, 0 or 1"))),
    }
}

fn split_env(entry: &[u8]) -> crate::error::Result<(OsString, OsString)> {
    match entry.iter().position(|&b| b == b'=') {
        Some(eq) if eq > 0 => Ok((OsString::from_vec(entry[..eq].to_vec()), OsString::from_vec(entry[eq + 1..].to_vec()))),
        _ => Err(invalid("env entries must look like KEY=VALUE")),
    }
}

/// The primary's end of worker `worker_id`'s stdin (`n` = 0, write to it), stdout (1) or
/// stderr (2), or its fd `n` past those (a socket pair, both ways), when settings made it a
/// pipe (`silent` or `CLUSTER_STDIO_PIPE`). Returns a new close-on-exec duplicate that the
/// caller owns and closes. Also works after the worker is gone, for the 16 most recently
/// gone workers with pipes, so its last output can be read.
///
/// Errors: `-EINVAL` (`n` negative or past 63), `-ENOENT` (that fd is not a pipe — the
/// channel's never is — or no longer kept), `-ESRCH` (never forked), `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_stdio(worker_id: c_int, n: c_int) -> c_int {
    ffi_guard!({
        let r = (|| {
            if !(0..64).contains(&n) {
                return Err(invalid("n must be 0 (stdin), 1 (stdout), 2 (stderr) or a further fd (3 to 63)"));
            }
            let dup = api::worker_stdio(worker_id, n as usize)?;
            Ok(std::os::fd::IntoRawFd::into_raw_fd(dup))
        })();
        ret(r)
    })
}

/// Reads a NULL-terminated array of C strings.
///
/// # Safety
/// `p` is NULL or a NULL-terminated array of NUL-terminated strings.
unsafe fn string_array(p: *const *const c_char, what: &str) -> crate::error::Result<Option<Vec<OsString>>> {
    if p.is_null() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for i in 0.. {
        // SAFETY: the caller's contract.
        let s = unsafe { *p.add(i) };
        if s.is_null() {
            return Ok(Some(out));
        }
        if i >= 65536 {
            return Err(invalid(&format!("{what} has more than 65536 entries (missing NULL terminator?)")));
        }
        // SAFETY: each entry is a NUL-terminated string (contract).
        out.push(OsString::from_vec(unsafe { CStr::from_ptr(s) }.to_bytes().to_vec()));
    }
    unreachable!()
}

/// Node's `cluster.setupPrimary(settings)`: changes what later `cluster_fork` calls run.
/// Fields left NULL keep their current value. Everything is copied; `settings` is borrowed
/// for the call.
///
/// All or nothing: every field is checked before any is applied, so a call that fails
/// changes nothing.
///
/// Returns 0. Errors: `-EINVAL` (NULL, `size` not set, empty `exec`, a value out of range),
/// `-EBADF` (a `stdio` fd that is not open), `-EBUSY` (a different `sched_policy` once a
/// worker was forked), `CLUSTER_E_WRONG_ROLE` in a worker.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_setup_primary(settings: *const cluster_settings) -> c_int {
    ffi_guard!({
        if settings.is_null() {
            return ret(Err(invalid("settings is NULL")));
        }
        let r = (|| {
            // SAFETY: non-NULL; `size` is the first field.
            let size = unsafe { (*settings).size };
            let v1 = std::mem::offset_of!(cluster_settings, env);
            if size < v1 || size > 1 << 16 {
                return Err(invalid("settings->size is not set (call cluster_settings_init)"));
            }
            // Fields the caller's (possibly older) struct does not have keep their default.
            let mut s = cluster_settings { size, ..unchanged_settings() };
            // SAFETY: copy only the `size` bytes the caller's struct has (at most ours).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    settings.cast::<u8>(),
                    (&mut s as *mut cluster_settings).cast::<u8>(),
                    size.min(std::mem::size_of::<cluster_settings>()),
                )
            };
            // Translation only: C values to a `Settings` update. Whether the update is valid
            // is `Settings::validate`'s call, and `setup` applies it all or nothing.
            // SAFETY: the pointers are NULL or valid C strings/arrays (contract).
            let exec = unsafe { super::opt_str(s.exec, "exec") }?.map(OsString::from);
            // SAFETY: as above.
            let args = unsafe { string_array(s.args, "args") }?;
            // SAFETY: as above.
            let cwd = unsafe { super::opt_str(s.cwd, "cwd") }?.map(std::path::PathBuf::from);
            // SAFETY: as above.
            let env = unsafe { string_array(s.env, "env") }?
                .map(|entries| entries.into_iter().map(|e| split_env(e.as_encoded_bytes())).collect::<crate::error::Result<Vec<_>>>())
                .transpose()?;
            let silent = tristate(s.silent, "silent")?;
            let count = match s.stdio_count {
                0 => 3,
                n if (3..=64).contains(&n) => n as usize,
                _ => return Err(invalid("stdio_count must be 0 or 3 to 64")),
            };
            let (stdio, extra_stdio) = if s.stdio.is_null() {
                (None, None)
            } else {
                let entry = |i: usize| -> crate::error::Result<Stdio> {
                    // SAFETY: `stdio` points to `count` ints (contract).
                    Ok(match unsafe { *s.stdio.add(i) } {
                        CLUSTER_STDIO_INHERIT => Stdio::Inherit,
                        CLUSTER_STDIO_PIPE => Stdio::Pipe,
                        CLUSTER_STDIO_IGNORE => Stdio::Ignore,
                        CLUSTER_STDIO_IPC => Stdio::Channel,
                        fd if fd >= 0 => Stdio::Fd(fd),
                        _ => return Err(invalid("stdio entries must be CLUSTER_STDIO_* or an open fd")),
                    })
                };
                let mut out = [Stdio::Inherit; 3];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = entry(i)?;
                }
                (Some(out), Some((3..count).map(entry).collect::<crate::error::Result<Vec<_>>>()?))
            };
            let id = |v: c_int, what: &str| -> crate::error::Result<Option<u32>> {
                match v {
                    -1 => Ok(None),
                    v if v >= 0 => Ok(Some(v as u32)),
                    _ => Err(invalid(&format!("{what} must be -1 or an id >= 0"))),
                }
            };
            let (uid, gid) = (id(s.uid, "uid")?, id(s.gid, "gid")?);
            // SAFETY: as above.
            match unsafe { super::opt_str(s.serialization, "serialization") }? {
                None | Some("json") => {}
                Some("advanced") => {
                    return Err(Error::new(crate::error::code::UNSUPPORTED, "serialization \"advanced\" is not supported; use \"json\""));
                }
                Some(other) => return Err(invalid(&format!("serialization must be \"json\" or \"advanced\", not {other:?}"))),
            }
            let sched_policy = match s.sched_policy {
                0 => None,
                CLUSTER_SCHED_RR => Some(SchedPolicy::RoundRobin),
                CLUSTER_SCHED_NONE => Some(SchedPolicy::None),
                CLUSTER_SCHED_REUSEPORT => Some(SchedPolicy::ReusePort),
                _ => return Err(invalid("sched_policy must be 0, CLUSTER_SCHED_RR, CLUSTER_SCHED_NONE or CLUSTER_SCHED_REUSEPORT")),
            };
            // 0: unchanged; a negative count is no count at all (the range is validate's).
            let count = |v: c_int, msg: &str| -> crate::error::Result<Option<usize>> {
                usize::try_from(v).map(|n| (n > 0).then_some(n)).map_err(|_| invalid(msg))
            };
            let max_in_flight = count(s.max_in_flight, "max_in_flight must be 0 (unchanged) or 1 to 1024")?;
            let max_servers = count(s.max_servers, "max_servers must be 0 (unchanged) or 1 to 65536")?;
            let least_loaded = tristate(s.least_loaded, "least_loaded")?;
            let update = Settings {
                exec,
                args,
                cwd,
                env,
                silent,
                stdio,
                extra_stdio,
                uid,
                gid,
                sched_policy,
                max_in_flight,
                least_loaded,
                max_servers,
                fast_lane: None,
                lane_window: None,
            };
            api::setup(update)?;
            Ok(0)
        })();
        ret(r)
    })
}

/// Caps the size of one IPC message (a JSON line) on every channel of this process; a peer
/// sending a longer one has its channel closed with a `CLUSTER_E_PROTOCOL` error. Default
/// 16 MiB. `bytes`: 1 KiB to 1 GiB. Any role, any time (existing channels from their next
/// message on). Returns 0, or `-EINVAL` out of range.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_set_max_message(bytes: usize) -> c_int {
    ffi_guard!({
        if !(1024..=1 << 30).contains(&bytes) {
            return ret(Err(invalid("max message size must be between 1 KiB and 1 GiB")));
        }
        crate::ipc::set_max_line(bytes);
        0
    })
}

/// Adds an entry to the primary's bind allowlist. With no entry (the default) workers may
/// ask for any server; once there is one, a worker's request for an address and port no
/// entry matches is refused: its `cluster_get_server` fails with `-EACCES`.
///
/// `address`: NULL matches any address; otherwise it must equal what the worker asks for
/// (an IP literal, `"null"` for every interface, or a socket path). `port`: -2 matches any
/// port, otherwise exact (-1 is a pipe's port). Returns 0. Errors: `-EINVAL` (port out of
/// range), `CLUSTER_E_WRONG_ROLE` in a worker.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_allow_bind(address: *const c_char, port: c_int) -> c_int {
    ffi_guard!({
        let r = (|| {
            if !(-2..=65535).contains(&port) {
                return Err(invalid("port must be -2 (any), -1 (pipe) or 0 to 65535"));
            }
            // SAFETY: NULL or a C string (contract).
            let address = unsafe { super::opt_str(address, "address") }?.map(str::to_string);
            api::allow_bind(crate::primary::AllowRule { address, port: (port != -2).then_some(port as i64) })?;
            Ok(0)
        })();
        ret(r)
    })
}

/// systemd socket activation, without libsystemd: adopts the sockets systemd passed this
/// process (fds 3, 4, ... when `LISTEN_PID` is this process; `LISTEN_FDS` of them, named
/// by `LISTEN_FDNAMES`), made close-on-exec. A worker's server on the address one of them
/// is bound to then takes that socket instead of a new bind: clients that connected before
/// the primary started are served. The variables are never passed to workers.
///
/// Returns how many sockets were adopted (0 when the process was not socket-activated).
/// Errors: `-EINVAL` (`LISTEN_FDS` malformed), `-EBADF`/`-ENOTSOCK` (a passed fd that is
/// not an open socket; the others are adopted), `CLUSTER_E_WRONG_ROLE` in a worker. Call it
/// once, before the first fork.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_listen_fds() -> c_int {
    ffi_guard!({ ret(api::listen_fds().map(|n| n as c_int)) })
}
