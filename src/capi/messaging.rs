//! Messages and the graceful lifecycle: send, disconnect, worker state.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::BorrowedFd;

use super::types::{cluster_event_cb, cluster_worker_state};
use super::{invalid, opt_str, ret};
use crate::api;
use crate::error::Error;
use crate::primary::WorkerState;

/// Sends a message: `worker.send(message[, handle])` in the primary (to `worker_id`), or
/// `process.send(message[, handle])` in a worker (`worker_id` must be 0: the primary).
///
/// `json`: any JSON text, sent as written: the peer receives these bytes with only the
/// whitespace outside strings removed (one line), so key order, number text (integers of
/// any size) and string escapes arrive unchanged. Objects whose `cmd` starts with `NODE_`
/// are reserved. `fd`: -1, or a
/// TCP, Unix-stream or UDP socket to pass along (`SCM_RIGHTS`); the library sends a
/// duplicate, so the caller keeps and still closes `fd`. Messages are delivered in order;
/// after a handle, later messages wait for the peer's ack (Node's rule).
///
/// Returns 0 once queued. Errors: `-EINVAL` (NULL or invalid JSON, reserved `cmd`, an fd
/// that is not such a socket), `-ESRCH` (unknown or dead worker), `CLUSTER_E_CLOSED`
/// (channel closed or disconnecting). Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_send(worker_id: c_int, json: *const c_char, fd: c_int) -> c_int {
    ffi_guard!({
        let r = (|| {
            // SAFETY: `json` is NULL or a C string (contract).
            let json = unsafe { opt_str(json, "json") }?.ok_or_else(|| invalid("json is NULL"))?;
            if fd < -1 {
                return Err(invalid("fd must be -1 or an open socket"));
            }
            if fd >= 0 && !crate::sys::fd::is_open(fd) {
                return Err(Error::errno(libc::EBADF, format!("fd {fd} is not open")));
            }
            // SAFETY: the fd is open and borrowed for this call only (it is duplicated).
            let fd = (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) });
            api::send(worker_id, json, fd).map(|_| 0)
        })();
        ret(r)
    })
}

/// Node's `worker.disconnect()` (primary): the worker leaves `cluster.workers` and every
/// server at once and is told to disconnect; it closes its servers and its channel, and
/// `exited_after_disconnect` is 1 in its DISCONNECT and EXIT events. The worker is not
/// killed: it exits when it has finished (a libcluster worker sees its servers closed).
///
/// Returns 0. Errors: `-ESRCH` (unknown or dead worker), `CLUSTER_E_CLOSED` (already
/// disconnecting or disconnected), `CLUSTER_E_WRONG_ROLE` in a worker.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_disconnect_worker(worker_id: c_int) -> c_int {
    ffi_guard!({ ret(api::disconnect_worker(worker_id).map(|_| 0)) })
}

/// Node's `worker.process.disconnect()` (primary): closes worker `worker_id`'s IPC channel
/// at once, without the disconnect protocol (`exited_after_disconnect` stays 0). The worker
/// sees its primary gone and exits with code 0, as Node's workers do; a DISCONNECT event
/// follows here, then EXIT.
///
/// In a worker, `worker_id` 0 is Node's `process.disconnect()`: this worker closes its
/// channel to the primary without the protocol (its servers stay; the primary sees
/// `exited_after_disconnect` 0); a DISCONNECT event follows and the process is not ended
/// by the library.
///
/// Returns 0. Errors: `-ESRCH` (unknown or dead worker), `CLUSTER_E_CLOSED` (already
/// disconnected), `CLUSTER_E_WRONG_ROLE` in a worker for an id other than 0.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_close_channel(worker_id: c_int) -> c_int {
    ffi_guard!({ ret(api::close_channel(worker_id).map(|_| 0)) })
}

/// Node's `cluster.disconnect([cb])` (primary): disconnects every connected worker. `cb`
/// (may be NULL) runs once, from `cluster_dispatch`, `cluster_run` or `cluster_poll_event`
/// on the calling thread, when `cluster.workers` is empty — also when it already is — with
/// a NULL event and `userdata`.
///
/// Returns how many workers were told to disconnect. Errors: `CLUSTER_E_WRONG_ROLE` in a
/// worker.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_disconnect(cb: cluster_event_cb, userdata: *mut c_void) -> c_int {
    ffi_guard!({ ret(api::disconnect_all(|| super::events::set_disconnect_callback(cb, userdata)).map(|n| n as c_int)) })
}

/// Node's `cluster.worker.disconnect()` (worker): closes every server (connections not
/// yet accepted go back to the primary, which hands them on), tells the primary this exit
/// is voluntary (`exitedAfterDisconnect`) and waits for its ack, then closes the channel.
/// The process keeps running: finish open connections, then exit. A DISCONNECT event
/// follows in this process.
///
/// Returns 0. Errors: `CLUSTER_E_CLOSED` (already disconnecting or disconnected),
/// `CLUSTER_E_WRONG_ROLE` in the primary. Blocks until the primary acks.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_disconnect() -> c_int {
    ffi_guard!({ ret(api::worker_disconnect().map(|_| 0)) })
}

/// Worker: `on` = 1 makes a primary's disconnect behave as in a Node worker: the servers
/// close at once, a `CLUSTER_EVENT_DISCONNECT_REQUESTED` event comes, and the channel stays
/// open until this program calls `cluster_worker_disconnect()` (once its open connections
/// are done). 0 (the default): the servers and the channel close together and
/// `CLUSTER_EVENT_DISCONNECT` comes. Returns 0. Errors: `CLUSTER_E_WRONG_ROLE` in the primary.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_keep_channel(on: c_int) -> c_int {
    ffi_guard!({ ret(api::keep_channel(on != 0).map(|_| 0)) })
}

/// Node's `cluster.worker.kill()` / `destroy()` (worker): if the channel is open, tells
/// the primary the exit is voluntary and waits for its ack, closes the channel, then ends
/// the process with code 0 (`exit`, so `atexit` handlers run). Servers are not closed
/// first, as in Node. Does not return in a worker. Errors: `CLUSTER_E_WRONG_ROLE` in the
/// primary.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_destroy() -> c_int {
    ffi_guard!({
        match api::worker_destroy() {
            Ok(never) => match never {},
            Err(e) => ret(Err(e)),
        }
    })
}

/// Node's `worker.state` of `worker_id` (a `cluster_worker_state` value), also after the
/// worker is gone (DEAD). This is the state now, which may be ahead of the event being
/// dispatched (e.g. DEAD while a DISCONNECT callback runs for a killed worker). Errors: `-ESRCH` (never forked), `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_get_state(worker_id: c_int) -> c_int {
    ffi_guard!({
        ret(api::worker_info(worker_id).map(|w| {
            (match w.state {
                WorkerState::None => cluster_worker_state::CLUSTER_WORKER_NONE,
                WorkerState::Online => cluster_worker_state::CLUSTER_WORKER_ONLINE,
                WorkerState::Listening => cluster_worker_state::CLUSTER_WORKER_LISTENING,
                WorkerState::Disconnected => cluster_worker_state::CLUSTER_WORKER_DISCONNECTED,
                WorkerState::Dead => cluster_worker_state::CLUSTER_WORKER_DEAD,
            }) as c_int
        }))
    })
}

/// Node's `worker.isConnected()`: 1 while the worker's channel is open, else 0.
/// Errors: `-ESRCH` (never forked), `CLUSTER_E_WRONG_ROLE`. In a worker, pass 0 to ask about
/// this process's own channel.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_is_connected(worker_id: c_int) -> c_int {
    ffi_guard!({ ret(api::is_connected(worker_id).map(|c| c as c_int)) })
}

/// Node's `worker.isDead()`: 1 once the worker has exited, else 0.
/// Errors: `-ESRCH` (never forked), `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_is_dead(worker_id: c_int) -> c_int {
    ffi_guard!({ ret(api::worker_info(worker_id).map(|w| w.dead as c_int)) })
}

/// Node's `worker.exitedAfterDisconnect`: 1 if the worker's exit was asked for (a
/// disconnect from either side), else 0. Errors: `-ESRCH`, `CLUSTER_E_WRONG_ROLE`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_worker_exited_after_disconnect(worker_id: c_int) -> c_int {
    ffi_guard!({ ret(api::worker_info(worker_id).map(|w| w.exited_after_disconnect as c_int)) })
}
