//! Result codes, the per-thread last error message and `cluster_strerror`.
//!
//! The `CLUSTER_E_*` values here are the codes' one source: the header is generated from
//! them and `crate::error::code` names the same constants.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};

use crate::error::{Error, code};

/// Internal panic caught at the ABI boundary; the library state is still usable.
pub const CLUSTER_E_PANIC: c_int = -10001;
/// The call is not valid in this process's role (e.g. `cluster_fork` in a worker).
pub const CLUSTER_E_WRONG_ROLE: c_int = -10002;
/// A peer broke the IPC protocol (malformed JSON, blank line, stray fd, ...).
pub const CLUSTER_E_PROTOCOL: c_int = -10003;
/// The process was forked after libcluster started; use it from the original process.
pub const CLUSTER_E_FORKED: c_int = -10004;
/// The IPC channel is closed.
pub const CLUSTER_E_CLOSED: c_int = -10005;
/// Not supported (e.g. `advanced` serialization).
pub const CLUSTER_E_UNSUPPORTED: c_int = -10006;
/// Supervision: the crash-loop breaker is open (no new workers until it closes).
pub const CLUSTER_E_BREAKER_OPEN: c_int = -10007;
/// Supervision: a rolling restart (or recycle) is under way, or the primary is stopping.
pub const CLUSTER_E_BUSY: c_int = -10008;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `e` as this thread's last error and returns its code.
pub(crate) fn set_error(e: &Error) -> c_int {
    let msg = CString::new(e.message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = msg);
    e.code
}

pub(crate) fn set_panic(payload: &(dyn std::any::Any + Send)) {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown payload".into());
    set_error(&Error::new(code::PANIC, format!("panic: {what}")));
}

/// The message of the last failed call on this thread: one line, never NULL (empty if no
/// call failed yet).
///
/// Meaningful only right after a call on the same thread returned a negative code. The
/// string stays valid until the next failing call on this thread; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_last_error() -> *const c_char {
    ffi_guard!({ LAST_ERROR.with(|l| l.borrow().as_ptr()) })
}

/// A static description of a result code (a negative errno or a `CLUSTER_E_*`), never NULL.
///
/// The string is static: never free it. Unknown codes give "unknown error code".
#[unsafe(no_mangle)]
pub extern "C" fn cluster_strerror(code: c_int) -> *const c_char {
    ffi_guard!({
        let s = crate::error::describe(code);
        // The descriptions are static literals; keep NUL-terminated copies forever.
        static CACHE: once_cell::sync::Lazy<parking_lot::Mutex<std::collections::HashMap<&'static str, &'static std::ffi::CStr>>> =
            once_cell::sync::Lazy::new(Default::default);
        let mut cache = CACHE.lock();
        let c: &'static std::ffi::CStr =
            cache.entry(s).or_insert_with(|| Box::leak(CString::new(s).unwrap_or_default().into_boxed_c_str()));
        c.as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn strerror_and_last_error() {
        // SAFETY: both return valid static/thread-local C strings.
        unsafe {
            assert_eq!(CStr::from_ptr(cluster_strerror(-libc::EADDRINUSE)).to_str().unwrap(), "address already in use");
            assert_eq!(
                CStr::from_ptr(cluster_strerror(CLUSTER_E_WRONG_ROLE)).to_str().unwrap(),
                crate::error::describe(CLUSTER_E_WRONG_ROLE)
            );
            assert_eq!(CStr::from_ptr(cluster_strerror(12345)).to_str().unwrap(), "unknown error code");
            assert_eq!(set_error(&Error::errno(libc::EINVAL, "bad port")), -libc::EINVAL);
            assert_eq!(CStr::from_ptr(cluster_last_error()).to_str().unwrap(), "bad port");
            assert_eq!(crate::capi::cluster_debug_panic(), CLUSTER_E_PANIC);
            assert!(CStr::from_ptr(cluster_last_error()).to_str().unwrap().starts_with("panic:"));
        }
    }
}
