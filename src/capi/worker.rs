//! Servers: `cluster_get_server`, `cluster_accept` and friends.

use std::ffi::{c_char, c_int};
use std::os::fd::IntoRawFd;

use super::types::{cluster_server, cluster_server_options};
use super::{invalid, opt_str, ret};
use crate::address::Target;
use crate::api;
use crate::worker::server::ServerOptions;

/// Fills `*opts` with the defaults (backlog 0 = 511, dual-stack, not exclusive, blocking,
/// TCP) and sets `opts->size` to `size`, writing only the first `size` bytes: pass
/// `sizeof *opts` as the caller was compiled, so an older (shorter) struct is never written
/// past its end. Returns 0, or `-EINVAL` for NULL or a `size` too small for `size` itself.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_server_options_init(opts: *mut cluster_server_options, size: usize) -> c_int {
    ffi_guard!({
        if opts.is_null() || size < std::mem::size_of::<usize>() {
            return ret(Err(invalid("opts is NULL or size is too small")));
        }
        let d = ServerOptions::default();
        let ours = cluster_server_options {
            size,
            backlog: d.backlog,
            ipv6_only: d.ipv6_only as c_int,
            exclusive: d.exclusive as c_int,
            nonblocking: d.nonblocking as c_int,
            udp: d.udp as c_int,
            reuse_addr: d.reuse_addr as c_int,
            readable_all: d.readable_all as c_int,
            writable_all: d.writable_all as c_int,
        };
        // SAFETY: the caller's struct has `size` writable bytes (contract); we write at most
        // that many, and no more than our own struct has.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&ours as *const cluster_server_options).cast::<u8>(),
                opts.cast::<u8>(),
                size.min(std::mem::size_of::<cluster_server_options>()),
            )
        };
        0
    })
}

/// Reads the fields the caller's struct has (by its `size`), defaults for the rest.
///
/// # Safety
/// `opts` is NULL or points to a struct of at least `opts->size` bytes.
unsafe fn read_options(opts: *const cluster_server_options) -> crate::error::Result<ServerOptions> {
    let mut o = ServerOptions::default();
    if opts.is_null() {
        return Ok(o);
    }
    // SAFETY: `size` is the first field and always present.
    let size = unsafe { (*opts).size };
    if size < std::mem::size_of::<usize>() || size > 1 << 16 {
        return Err(invalid("opts->size is not set (call cluster_server_options_init)"));
    }
    let has = |end: usize| size >= end;
    // SAFETY: each field is read only if the caller's struct is large enough to hold it.
    unsafe {
        use std::mem::offset_of;
        if has(offset_of!(cluster_server_options, backlog) + 4) {
            o.backlog = (*opts).backlog;
        }
        if has(offset_of!(cluster_server_options, ipv6_only) + 4) {
            o.ipv6_only = (*opts).ipv6_only != 0;
        }
        if has(offset_of!(cluster_server_options, exclusive) + 4) {
            o.exclusive = (*opts).exclusive != 0;
        }
        if has(offset_of!(cluster_server_options, nonblocking) + 4) {
            o.nonblocking = (*opts).nonblocking != 0;
        }
        if has(offset_of!(cluster_server_options, udp) + 4) {
            o.udp = (*opts).udp != 0;
        }
        if has(offset_of!(cluster_server_options, reuse_addr) + 4) {
            o.reuse_addr = (*opts).reuse_addr != 0;
        }
        if has(offset_of!(cluster_server_options, readable_all) + 4) {
            o.readable_all = (*opts).readable_all != 0;
        }
        if has(offset_of!(cluster_server_options, writable_all) + 4) {
            o.writable_all = (*opts).writable_all != 0;
        }
    }
    if o.backlog < 0 {
        return Err(invalid("backlog must be >= 0"));
    }
    Ok(o)
}

/// Gets a server listening on `address`:`port`, as Node's `server.listen` does in a cluster.
///
/// - In a worker: sends `queryServer` to the primary and waits for the reply; the primary
///   binds once per (address, port, listen index) and hands connections round-robin. A
///   `listening` message with the real port follows.
/// - In the primary (or with `opts->exclusive`): binds and listens in this process.
///
/// `address`: an IPv4/IPv6 literal or host name, NULL or "" for every interface (dual-stack
/// `::` falling back to `0.0.0.0`), or a Unix socket path (anything containing '/'; then
/// `port` is ignored). `port`: 0 to 65535; 0 picks a random port, the same one for every
/// worker's first listen(0) (Node's index rule). `opts`: NULL for defaults.
/// All pointers are borrowed for the call.
///
/// On success stores a new handle in `*out` (free it with `cluster_server_close`) and
/// returns 0. Errors: `-EINVAL` (NULL `out`, bad address or port, bad options), the
/// primary's bind error as a negative errno (`-EADDRINUSE`, `-EACCES`, ...),
/// `CLUSTER_E_CLOSED` if the channel closed. On failure `*out` is set to NULL.
/// Blocks the calling thread until the primary replies.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_get_server(
    out: *mut *mut cluster_server,
    address: *const c_char,
    port: c_int,
    opts: *const cluster_server_options,
) -> c_int {
    ffi_guard!({
        if out.is_null() {
            return ret(Err(invalid("out is NULL")));
        }
        // SAFETY: `out` is non-NULL and writable (contract).
        unsafe { *out = std::ptr::null_mut() };
        let r = (|| {
            // SAFETY: `address` is NULL or a C string, `opts` NULL or a sized struct.
            let address = unsafe { opt_str(address, "address") }?;
            // SAFETY: as above.
            let opts = unsafe { read_options(opts) }?;
            let port = if address.is_some_and(|a| a.contains('/')) && !opts.udp { -1 } else { port };
            let target = Target::from_user(address, port)?;
            api::get_server(&target, opts)
        })();
        ret(r.map(|server| {
            let handle = Box::new(cluster_server { inner: server });
            // SAFETY: as above.
            unsafe { *out = Box::into_raw(handle) };
            0
        }))
    })
}

/// The fd to poll for incoming connections (readable while one waits). Owned by the server:
/// never close it. Returns the fd, or `-EINVAL` for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_server_fd(server: *const cluster_server) -> c_int {
    ffi_guard!({
        // SAFETY: `server` is NULL or a live handle from cluster_get_server.
        match unsafe { server.as_ref() } {
            Some(s) => s.inner.fd(),
            None => ret(Err(invalid("server is NULL"))),
        }
    })
}

/// The port the server is bound to (the real one when 0 was asked for), -1 for a Unix
/// socket. Errors: `-EINVAL` for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_server_port(server: *const cluster_server) -> c_int {
    ffi_guard!({
        // SAFETY: `server` is NULL or a live handle from cluster_get_server.
        match unsafe { server.as_ref() } {
            Some(s) => s.inner.port(),
            None => ret(Err(invalid("server is NULL"))),
        }
    })
}

/// Accepts the next connection. Returns its fd: close-on-exec, owned by the caller (close
/// it), blocking unless the server's options say `nonblocking`.
///
/// Waits for a connection unless the server is non-blocking, in which case `-EAGAIN` means
/// none waits. In a worker, the primary keeps its copy of each connection until this call
/// takes it, so a worker that dies before accepting loses no client.
/// Errors: `-EINVAL` (NULL), `-EBADF` (server closed by a disconnect), `-EAGAIN`, accept's
/// errno. One thread at a time per server.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_accept(server: *mut cluster_server) -> c_int {
    ffi_guard!({
        // SAFETY: `server` is NULL or a live handle from cluster_get_server.
        match unsafe { server.as_ref() } {
            Some(s) => ret(s.inner.accept().map(|fd| fd.into_raw_fd())),
            None => ret(Err(invalid("server is NULL"))),
        }
    })
}

/// Gives the next connection waiting for this server back to the primary instead of
/// accepting it, as a Node v20 worker does at its server's `maxConnections`: the primary
/// hands it to another worker, so it is not lost. Returns 1 (one was given back) or 0 (none
/// waits). Errors: `-EINVAL` (NULL), `-EBADF` (closed), `-EOPNOTSUPP` when connections do
/// not come one by one (the fast lane between libcluster peers, a shared or reuseport
/// listener, a server bound here): then stop calling `cluster_accept` while full — the
/// primary takes back a fast lane's waiting connections after about a second, and a
/// listener's backlog is served by the other workers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_server_refuse(server: *mut cluster_server) -> c_int {
    ffi_guard!({
        // SAFETY: `server` is NULL or a live handle from cluster_get_server.
        match unsafe { server.as_ref() } {
            Some(s) => ret(s.inner.refuse().map(|given| given as c_int)),
            None => ret(Err(invalid("server is NULL"))),
        }
    })
}

/// Closes the server and frees the handle: connections not yet accepted are refused (the
/// primary hands them to another worker), the primary is told (`close`), and the last
/// holder's close releases the port. NULL does nothing. Returns 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cluster_server_close(server: *mut cluster_server) -> c_int {
    ffi_guard!({
        if !server.is_null() {
            // SAFETY: `server` came from Box::into_raw in cluster_get_server and is freed once.
            drop(unsafe { Box::from_raw(server) });
        }
        0
    })
}

/// For hosts whose exit handlers must not run while their main thread still runs (Node):
/// with `on` non-zero, when libcluster ends a worker from its own channel-reader thread
/// (its primary went away, or broke the protocol), it calls `_exit` with the same status
/// instead of `exit`, so no `atexit` handler or static destructor runs concurrently with the
/// program's main thread. An exit on the main thread is unchanged. Off by default (C
/// programs' `atexit` handlers run). Returns 0. Any thread, either role.
#[unsafe(no_mangle)]
pub extern "C" fn cluster_set_quick_exit(on: c_int) -> c_int {
    ffi_guard!({
        api::set_quick_exit(on != 0);
        0
    })
}
