//! Hot upgrade of the primary (`docs/upgrade.md`).

use std::ffi::c_int;

use super::types::cluster_upgrade_options;
use super::{invalid, ret};
use crate::api;

fn defaults() -> cluster_upgrade_options {
    cluster_upgrade_options {
        size: std::mem::size_of::<cluster_upgrade_options>(),
        ready_timeout_ms: crate::primary::UPGRADE_TIMEOUT_MS as c_int,
    }
}

/// Fills `*o` with the defaults, `o->size` with `size`, writing only the first `size`
/// bytes: pass `sizeof *o`. Returns 0, or `-EINVAL` (NULL, or `size` smaller than the
/// first version's). Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_upgrade_options_init(o: *mut cluster_upgrade_options, size: usize) -> c_int {
    ffi_guard!({
        if o.is_null() || size < std::mem::size_of::<cluster_upgrade_options>() || size > 1 << 16 {
            return ret(Err(invalid("upgrade options are NULL or their size is too small")));
        }
        let ours = cluster_upgrade_options { size, ..defaults() };
        // SAFETY: the caller's struct has `size` writable bytes (contract), at least ours.
        unsafe { std::ptr::write_unaligned(o, ours) };
        0
    })
}

/// Hot upgrade of the primary (the handover model): starts the program file now on disk
/// (same arguments) as a new primary and hands it this primary's listening sockets over
/// `SCM_RIGHTS` (its workers take them: both primaries accept on them meanwhile, nothing is
/// refused). Once the new primary's workers are ready, this one stops accepting, forwards
/// the connections it accepted that no worker received, drains its workers on the
/// supervision drain clock, and `cluster_run` returns once they are gone. If the new
/// primary dies or is not ready within `o->ready_timeout_ms`, it is killed and this primary
/// carries on unchanged. Progress comes as `CLUSTER_EVENT_UPGRADE` events (STARTED, READY,
/// ABORTED here; READY and DONE in the new primary). `o` may be NULL (the defaults).
///
/// Returns the new primary's pid. Errors: `CLUSTER_E_BUSY` (an upgrade, a rolling restart
/// or a stop is under way), `-EINVAL` (options not initialised, a negative timeout), the
/// spawn's errno, `CLUSTER_E_WRONG_ROLE` in a worker. Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_upgrade(o: *const cluster_upgrade_options) -> c_int {
    ffi_guard!({
        let mut opts = defaults();
        if !o.is_null() {
            // SAFETY: non-NULL; `size` is the first field.
            let size = unsafe { (*o).size };
            if size < std::mem::size_of::<cluster_upgrade_options>() || size > 1 << 16 {
                return ret(Err(invalid("upgrade options: size is not set (call cluster_upgrade_options_init)")));
            }
            // SAFETY: the caller's struct has at least our size (checked).
            opts = unsafe { std::ptr::read_unaligned(o) };
        }
        let Ok(timeout) = u64::try_from(opts.ready_timeout_ms) else {
            return ret(Err(invalid("upgrade options: ready_timeout_ms must not be negative")));
        };
        ret(api::upgrade(timeout))
    })
}

/// 1 when this primary was started by a hot upgrade (`cluster_upgrade` of the old one),
/// else 0. Errors: `CLUSTER_E_WRONG_ROLE` in a worker. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_is_upgrade() -> c_int {
    ffi_guard!({ ret(api::is_upgrade().map(c_int::from)) })
}
