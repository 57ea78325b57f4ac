//! The C ABI: the only module with `extern "C"`, `#[no_mangle]` and raw C pointers.
//!
//! Every export is written as
//! `#[unsafe(no_mangle)] pub unsafe extern "C" fn cluster_x(..) -> T { ffi_guard!({ .. }) }`:
//! `ffi_guard!` catches any panic, records "panic: ..." as the last error and returns
//! `T::panic_value()` (rustls-ffi's `ffi_panic_boundary!`). Spelling it out keeps the
//! signatures visible to cbindgen; `tests/abi_guard.rs` checks that no export skips the guard.

// The crate denies `unsafe` (lib.rs); the C ABI is one of its two homes.
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]
// Every export documents its pointer contract in C terms (what the caller passes, who owns
// it) in its doc comment, which is the header; a Rust `# Safety` heading would only repeat it.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{CStr, c_char, c_int};

/// Runs the body with panics caught at the ABI boundary.
macro_rules! ffi_guard {
    ($body:block) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(payload) => {
                $crate::capi::error::set_panic(payload.as_ref());
                $crate::capi::PanicValue::panic_value()
            }
        }
    }};
}

pub mod agent;
pub mod error;
pub mod events;
pub mod messaging;
pub mod primary;
pub mod supervision;
pub mod systemd;
pub mod types;
pub mod upgrade;
pub mod version;
pub mod worker;

/// What an export returns when a panic was caught.
pub trait PanicValue {
    fn panic_value() -> Self;
}

impl PanicValue for c_int {
    fn panic_value() -> c_int {
        crate::error::code::PANIC
    }
}

impl PanicValue for () {
    fn panic_value() {}
}

impl PanicValue for *const c_char {
    fn panic_value() -> *const c_char {
        c"".as_ptr()
    }
}

/// Converts a library result into the C convention (value or negative code, with the
/// message kept for `cluster_last_error`).
pub(crate) fn ret(r: crate::error::Result<c_int>) -> c_int {
    match r {
        Ok(v) => v,
        Err(e) => error::set_error(&e),
    }
}

/// Fails with `-EINVAL` and a message naming the argument.
pub(crate) fn invalid(what: &str) -> crate::error::Error {
    crate::error::Error::errno(libc::EINVAL, what.to_string())
}

/// Borrows an optional C string as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> crate::error::Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map(Some).map_err(|_| invalid(&format!("{what} is not valid UTF-8")))
}

/// Forces a panic inside the library, for testing that none crosses the ABI.
///
/// Always returns `CLUSTER_E_PANIC`, with `cluster_last_error()` starting with "panic:".
/// Safe to call from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_debug_panic() -> c_int {
    ffi_guard!({
        if std::hint::black_box(true) {
            panic!("cluster_debug_panic was called");
        }
        0
    })
}
