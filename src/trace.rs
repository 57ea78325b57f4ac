//! `LIBCLUSTER_DEBUG=1`: one line per protocol event on stderr, as Node's
//! `NODE_DEBUG=cluster` does (`LIBCLUSTER <pid>: primary fork worker=1 pid=...`). Off by
//! default; when off, a trace point costs one relaxed load and a branch, and its arguments
//! are not formatted.

#![forbid(unsafe_code)]

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not yet read, 1: off, 2: on.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether tracing is on (`LIBCLUSTER_DEBUG` is `1`, read once).
#[inline]
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => init(),
    }
}

#[cold]
fn init() -> bool {
    let on = std::env::var_os("LIBCLUSTER_DEBUG").is_some_and(|v| v == "1");
    STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
    on
}

/// Writes one line (one `write` of the whole line, so lines of several processes sharing
/// stderr do not interleave).
pub fn emit(role: &str, args: std::fmt::Arguments<'_>) {
    let line = format!("LIBCLUSTER {}: {role} {args}\n", std::process::id());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `trace!(role, "fmt", args...)`: a line when `LIBCLUSTER_DEBUG=1`, nothing otherwise.
macro_rules! trace {
    ($role:expr, $($arg:tt)*) => {
        if $crate::trace::enabled() {
            $crate::trace::emit($role, format_args!($($arg)*));
        }
    };
}
pub(crate) use trace;
