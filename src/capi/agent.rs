//! Past one host: the load balancer's view of this primary (`docs/deployment.md`).

use std::ffi::{c_char, c_int};

use super::{opt_str, ret};
use crate::api;

/// Answers HAProxy's `agent-check` on `address`:`port` (TCP; `address` NULL or "": every
/// IPv4 interface; an IPv6 literal works too; `port` 0: any free port). Each connection
/// gets one line and is closed: `ready up N%` (N = 100 * ready workers / the supervisor's
/// `workers`, at most 100; without a target: 100 once any worker is ready), `drain` from
/// the first moment of a stop (during `drain_delay_ms` the workers still serve), `down`
/// while no worker is ready. HAProxy: `server h1 10.0.0.1:8000 check agent-check
/// agent-port 8001 agent-inter 1s`. Served from a thread of its own, reading a snapshot
/// the distributor updates when a worker's state changes: never on the connection path.
/// May be called before the first fork; several listeners are allowed.
///
/// Returns the bound port. Errors: `-EINVAL` (`address` not an IP literal, `port` out of
/// 0..65535), a bind error (`-EADDRINUSE`, `-EACCES`, ...), `CLUSTER_E_WRONG_ROLE` in a
/// worker. Any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_agent_listen(address: *const c_char, port: c_int) -> c_int {
    ffi_guard!({
        // SAFETY: NULL or a NUL-terminated string for the call (the contract above).
        let r = unsafe { opt_str(address, "address") }.and_then(|a| api::agent_listen(a, port)).map(c_int::from);
        ret(r)
    })
}
