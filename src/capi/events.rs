//! Event delivery: an fd to poll, a pull call, callbacks run by `cluster_dispatch`, and a
//! blocking loop. Callbacks run only on the thread that dispatches; no library lock is held
//! while one runs, so a callback may call any cluster function (e.g. fork in `exit`).

use std::cell::RefCell;
use std::ffi::{CString, c_int, c_void};
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::types::{CLUSTER_EVENT_COUNT, cluster_event, cluster_event_cb, cluster_event_type};
use super::{invalid, ret};
use crate::api;
use crate::event::{Event, EventQueue};
use crate::primary::supervisor::{BreakerState, Notice};

#[derive(Clone, Copy)]
struct Callback {
    cb: unsafe extern "C" fn(*const cluster_event, *mut c_void),
    userdata: *mut c_void,
}

// SAFETY: the pointer is only handed back to the user's callback, on the dispatching thread,
// as the registration contract states; we never dereference it.
unsafe impl Send for Callback {}

static CALLBACKS: Mutex<[Option<Callback>; CLUSTER_EVENT_COUNT as usize]> = Mutex::new([None; CLUSTER_EVENT_COUNT as usize]);
static STOP: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Strings of the last event given out on this thread (address, data).
    static EVENT_STRINGS: RefCell<(Option<CString>, Option<CString>)> = const { RefCell::new((None, None)) };
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

fn to_c(ev: Event) -> cluster_event {
    use cluster_event_type::*;
    let mut out = cluster_event {
        kind: CLUSTER_EVENT_NONE,
        worker_id: 0,
        pid: 0,
        exit_code: 0,
        signal: 0,
        exited_after_disconnect: 0,
        port: 0,
        address_type: 0,
        fd: -1,
        error: 0,
        address: std::ptr::null(),
        data: std::ptr::null(),
        listening_fd: -1,
        state: 0,
        reason: 0,
        generation: 0,
        delay_ms: 0,
        count: 0,
        reserved: [0; 2],
    };
    let (mut address, mut data) = (None, None);
    let (id, pid) = match ev {
        Event::Fork { id, pid } => {
            out.kind = CLUSTER_EVENT_FORK;
            (id, pid)
        }
        Event::Online { id, pid } => {
            out.kind = CLUSTER_EVENT_ONLINE;
            (id, pid)
        }
        Event::Listening { id, pid, address: a, port, address_type, fd } => {
            out.kind = CLUSTER_EVENT_LISTENING;
            out.port = port;
            out.address_type = address_type;
            out.listening_fd = fd;
            address = a.as_deref().map(cstring);
            (id, pid)
        }
        Event::Message { id, pid, json, fd } => {
            out.kind = CLUSTER_EVENT_MESSAGE;
            out.fd = fd.map_or(-1, IntoRawFd::into_raw_fd);
            data = Some(cstring(&json));
            (id, pid)
        }
        Event::Disconnect { id, pid, exited_after_disconnect } => {
            out.kind = CLUSTER_EVENT_DISCONNECT;
            out.exited_after_disconnect = exited_after_disconnect as c_int;
            (id, pid)
        }
        Event::DisconnectRequested { id, pid } => {
            out.kind = CLUSTER_EVENT_DISCONNECT_REQUESTED;
            out.exited_after_disconnect = 1;
            (id, pid)
        }
        Event::Exit { id, pid, code, signal, exited_after_disconnect } => {
            out.kind = CLUSTER_EVENT_EXIT;
            out.exit_code = code;
            out.signal = signal;
            out.exited_after_disconnect = exited_after_disconnect as c_int;
            (id, pid)
        }
        Event::Error { id, pid, code, message } => {
            out.kind = CLUSTER_EVENT_ERROR;
            out.error = code;
            data = Some(cstring(&message));
            (id, pid)
        }
        Event::Drained => (0, 0),
        Event::Supervision { id, pid, notice } => {
            supervision_fields(&mut out, notice);
            (id, pid)
        }
    };
    out.worker_id = id as c_int;
    out.pid = pid;
    EVENT_STRINGS.with(|s| {
        let mut s = s.borrow_mut();
        *s = (address, data);
        out.address = s.0.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        out.data = s.1.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    });
    out
}

/// Registers `cb` for events of kind `event_type` (a `cluster_event_type` value), replacing
/// any earlier one; a NULL `cb` removes it. `userdata` is passed back untouched and must
/// stay valid while registered.
///
/// Callbacks run on the thread calling `cluster_dispatch`/`cluster_run`, never on a library
/// thread. Returns 0. Errors: `-EINVAL` (unknown event type). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_on(event_type: c_int, cb: cluster_event_cb, userdata: *mut c_void) -> c_int {
    ffi_guard!({
        if event_type <= 0 || event_type >= CLUSTER_EVENT_COUNT {
            return ret(Err(invalid("unknown event type")));
        }
        CALLBACKS.lock()[event_type as usize] = cb.map(|cb| Callback { cb, userdata });
        0
    })
}

/// `cluster_on(CLUSTER_EVENT_FORK, cb, userdata)`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_on_fork(cb: cluster_event_cb, userdata: *mut c_void) -> c_int {
    ffi_guard!({ cluster_on(cluster_event_type::CLUSTER_EVENT_FORK as c_int, cb, userdata) })
}

/// `cluster_on(CLUSTER_EVENT_ONLINE, cb, userdata)`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_on_online(cb: cluster_event_cb, userdata: *mut c_void) -> c_int {
    ffi_guard!({ cluster_on(cluster_event_type::CLUSTER_EVENT_ONLINE as c_int, cb, userdata) })
}

/// `cluster_on(CLUSTER_EVENT_LISTENING, cb, userdata)`: `address`, `port` (the real bound
/// port), `address_type`, `fd`.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_on_listening(cb: cluster_event_cb, userdata: *mut c_void) -> c_int {
    ffi_guard!({ cluster_on(cluster_event_type::CLUSTER_EVENT_LISTENING as c_int, cb, userdata) })
}

/// `cluster_on(CLUSTER_EVENT_EXIT, cb, userdata)`: Node's `exit` payload (`worker_id`,
/// `pid`, `exit_code` or -1, `signal` or 0, `exited_after_disconnect`).
#[unsafe(no_mangle)]
pub extern "C" fn cluster_on_exit(cb: cluster_event_cb, userdata: *mut c_void) -> c_int {
    ffi_guard!({ cluster_on(cluster_event_type::CLUSTER_EVENT_EXIT as c_int, cb, userdata) })
}

/// An fd (eventfd, close-on-exec, owned by the library: never close it) that is readable
/// while events are pending. Poll it from your own loop (epoll, libuv, asyncio), then call
/// `cluster_dispatch` or `cluster_poll_event`. Errors: start-up errors only.
///
/// Events wait in the library until taken. The user messages among them are bounded:
/// past max(64 MiB, 4 × the message cap) of message text (or `LIBCLUSTER_MAX_PENDING`
/// bytes), a worker stops reading its channel and a primary stops reading its workers'
/// channels until the program takes events, so peers are held back by their sockets instead
/// of this process's memory growing (a primary closes the channel of a worker that does not
/// read past its own bound). Lifecycle events are never held back.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_event_fd() -> c_int {
    ffi_guard!({ ret(api::events().map(|q| q.fd())) })
}

/// Takes the next pending event into `*out`, waiting up to `timeout_ms` (0: don't wait,
/// -1: no limit). Registered callbacks are not called for it.
///
/// Returns 1 with an event, 0 on timeout (then `out->kind` is `CLUSTER_EVENT_NONE`). A
/// pending `cluster_disconnect` callback runs inside this call, which then goes on waiting. `out`'s strings stay valid until the next
/// `cluster_poll_event`/`cluster_dispatch` on this thread. Errors: `-EINVAL` (NULL `out`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_poll_event(out: *mut cluster_event, timeout_ms: c_int) -> c_int {
    ffi_guard!({
        if out.is_null() {
            return ret(Err(invalid("out is NULL")));
        }
        let events = match api::events() {
            Ok(q) => q,
            Err(e) => return ret(Err(e)),
        };
        let deadline = (timeout_ms >= 0).then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms as u64));
        loop {
            while let Some(ev) = events.pop() {
                if let Event::Drained = ev {
                    // Runs a pending cluster_disconnect callback; no event for the caller.
                    run_disconnect_callback();
                    continue;
                }
                // SAFETY: `out` is non-NULL and points to a writable cluster_event (contract).
                unsafe { *out = to_c(ev) };
                return 1;
            }
            let none = || {
                // SAFETY: as above.
                unsafe { *out = to_c(Event::Drained) };
                0
            };
            let wait = match deadline {
                None => -1,
                Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                    Some(left) => left.as_millis().min(i32::MAX as u128) as i32,
                    None => return none(),
                },
            };
            match events.wait(wait) {
                Ok(_) => {}
                Err(e) => return ret(Err(e.into())),
            }
            if wait == 0 && events.is_empty() {
                return none();
            }
        }
    })
}

fn kind_of(ev: &Event) -> cluster_event_type {
    use cluster_event_type::*;
    match ev {
        Event::Fork { .. } => CLUSTER_EVENT_FORK,
        Event::Online { .. } => CLUSTER_EVENT_ONLINE,
        Event::Listening { .. } => CLUSTER_EVENT_LISTENING,
        Event::Message { .. } => CLUSTER_EVENT_MESSAGE,
        Event::Disconnect { .. } => CLUSTER_EVENT_DISCONNECT,
        Event::DisconnectRequested { .. } => CLUSTER_EVENT_DISCONNECT_REQUESTED,
        Event::Exit { .. } => CLUSTER_EVENT_EXIT,
        Event::Error { .. } => CLUSTER_EVENT_ERROR,
        Event::Drained => CLUSTER_EVENT_NONE,
        Event::Supervision { notice, .. } => match notice {
            Notice::Ready { .. } => CLUSTER_EVENT_READY,
            Notice::Draining { .. } => CLUSTER_EVENT_DRAINING,
            Notice::Respawn { .. } => CLUSTER_EVENT_RESPAWN,
            Notice::Breaker { .. } => CLUSTER_EVENT_BREAKER,
            Notice::Rollout { .. } => CLUSTER_EVENT_ROLLOUT,
            Notice::Stuck { .. } => CLUSTER_EVENT_STUCK,
            Notice::Recycle { .. } => CLUSTER_EVENT_RECYCLE,
            Notice::Control { .. } => CLUSTER_EVENT_CONTROL,
            Notice::Upgrade { .. } => CLUSTER_EVENT_UPGRADE,
        },
    }
}

fn clamp(v: u64) -> c_int {
    v.min(c_int::MAX as u64) as c_int
}

/// A supervision notice's payload in the event's fields.
fn supervision_fields(out: &mut cluster_event, n: Notice) {
    out.kind = kind_of(&Event::Supervision { id: 0, pid: 0, notice: n.clone() });
    match n {
        Notice::Ready { .. } => {}
        Notice::Draining { stage, reason, .. } => {
            out.state = stage as c_int;
            out.reason = reason as c_int;
        }
        Notice::Respawn { delay_ms, streak } => {
            out.delay_ms = clamp(delay_ms);
            out.count = clamp(streak as u64);
        }
        Notice::Breaker { state, failures } => {
            out.state = match state {
                BreakerState::Closed => 0,
                BreakerState::Open => 1,
                BreakerState::HalfOpen => 2,
            };
            out.count = clamp(failures as u64);
        }
        Notice::Rollout { state, generation, replaced } => {
            out.state = state as c_int;
            out.generation = clamp(generation as u64);
            out.count = clamp(replaced as u64);
        }
        Notice::Stuck { idle_ms, .. } => out.delay_ms = clamp(idle_ms),
        Notice::Recycle { reason, .. } => out.reason = reason as c_int,
        Notice::Control { action, signal } => {
            out.state = action as c_int;
            out.signal = signal;
        }
        Notice::Upgrade { state, error, .. } => {
            out.state = state as c_int;
            out.error = error;
        }
    }
}

/// The pending `cluster_disconnect` callback, run once when `cluster.workers` is empty.
static DISCONNECT_CB: Mutex<Option<Callback>> = Mutex::new(None);

fn run_disconnect_callback() {
    let cb = DISCONNECT_CB.lock().take();
    if let Some(cb) = cb {
        // SAFETY: registered by cluster_disconnect with this userdata; the event pointer
        // is NULL for this callback, as documented.
        unsafe { (cb.cb)(std::ptr::null(), cb.userdata) };
    }
}

pub(crate) fn set_disconnect_callback(cb: cluster_event_cb, userdata: *mut c_void) {
    *DISCONNECT_CB.lock() = cb.map(|cb| Callback { cb, userdata });
}

/// A worker's channel closed and its DISCONNECT was dispatched: no event can follow.
static WORKER_DONE: AtomicBool = AtomicBool::new(false);

fn dispatch(events: &EventQueue) -> c_int {
    let mut n = 0;
    while let Some(ev) = events.pop() {
        if let Event::Drained = ev {
            run_disconnect_callback();
            continue;
        }
        if api::is_last_event(&ev) {
            WORKER_DONE.store(true, Ordering::Release);
        }
        let cb = CALLBACKS.lock()[kind_of(&ev) as usize];
        // Without a callback the event is dropped, and with it any fd it carried.
        if let Some(cb) = cb {
            let c = to_c(ev);
            // SAFETY: the user registered `cb` for this event kind with this userdata; the
            // event lives on our stack for the duration of the call.
            unsafe { (cb.cb)(&c, cb.userdata) };
        }
        n += 1;
    }
    n
}

/// Runs the registered callbacks for every pending event, on the calling thread, without
/// waiting. Events without a callback are dropped. Returns how many events were handled.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_dispatch() -> c_int {
    ffi_guard!({
        match api::events() {
            Ok(events) => dispatch(events),
            Err(e) => ret(Err(e)),
        }
    })
}

/// The blocking loop for simple programs: waits for events and dispatches them on the
/// calling thread until `cluster_stop` is called, or, in the primary, until no worker is left
/// and no event is pending, or, in a worker, until its channel to the primary has closed and
/// that DISCONNECT event has been dispatched (no event can follow). Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_run() -> c_int {
    ffi_guard!({
        let events = match api::events() {
            Ok(q) => q,
            Err(e) => return ret(Err(e)),
        };
        STOP.store(false, Ordering::Release);
        loop {
            dispatch(events);
            if STOP.swap(false, Ordering::AcqRel) {
                return 0;
            }
            match api::run_finished(WORKER_DONE.load(Ordering::Acquire)) {
                Ok(true) => return 0,
                Ok(false) => {}
                Err(e) => return ret(Err(e)),
            }
            if let Err(e) = events.wait(-1) {
                return ret(Err(e.into()));
            }
        }
    })
}

/// Makes `cluster_run` return after the events it is dispatching. Any thread, including a
/// callback. Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_stop() -> c_int {
    ffi_guard!({
        STOP.store(true, Ordering::Release);
        match api::events() {
            Ok(events) => {
                events.wake();
                0
            }
            Err(e) => ret(Err(e)),
        }
    })
}
