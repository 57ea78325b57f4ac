"""Servers in a worker: ``get_server`` / ``Server``, and socketserver / http.server on top."""

from __future__ import annotations

import ctypes
import http.server
import selectors
import signal
import socket
import socketserver
import threading
import time
from typing import Any, Callable, Dict, Optional, Set, Tuple, Type, Union

from . import _cluster, _dispatch, _ffi, _run, _signals, _this_worker
from ._ffi import lib

Address = Union[Tuple[str, int], str]


class Server:
    """A server from :func:`get_server`: connections the primary accepted and handed to
    this worker (or, in the primary or with ``exclusive=True``, a socket bound here).

    Use :meth:`accept` like ``socket.accept``, poll :meth:`fileno` from selectors or
    asyncio, and close it with :meth:`close` or a ``with`` block.
    """

    def __init__(self, ptr: int, host: Optional[str], nonblocking: bool, udp: bool) -> None:
        self._ptr: Optional[int] = ptr
        self._lock = threading.Lock()
        self._nonblocking = nonblocking
        self._udp = udp
        self._fd: int = lib.cluster_server_fd(ptr)
        #: The address asked for (None: every interface; a path for a Unix socket).
        self.host: Optional[str] = host
        #: The bound port (the real one when 0 was asked for); -1 for a Unix socket.
        self.port: int = lib.cluster_server_port(ptr)

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"fd={self._fd}"
        return f"<libcluster.Server {self.host or '*'}:{self.port} {state}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._ptr is None

    def fileno(self) -> int:
        """The fd to poll: readable while a connection waits, or once a disconnect closed
        the server (then :meth:`accept` raises ``OSError(EBADF)``). Owned by the server:
        never close it. -1 once closed. For ``udp=True``, the bound datagram socket."""
        return -1 if self._ptr is None else self._fd

    def getsockname(self) -> Address:
        """``(host, port)``, or the path of a Unix socket server."""
        if self.port == -1 and self.host:
            return self.host
        return (self.host or "", self.port)

    def setblocking(self, flag: bool) -> None:
        """Blocking (the default) or not: a non-blocking :meth:`accept` raises
        ``BlockingIOError`` when no connection waits and gives non-blocking sockets."""
        self._nonblocking = not flag

    def getblocking(self) -> bool:
        """True unless :meth:`setblocking` made the server non-blocking."""
        return not self._nonblocking

    def _accept_fd(self) -> int:
        with self._lock:
            if self._ptr is None:
                raise OSError(_ffi.EBADF, "server is closed")
            fd: int = lib.cluster_accept(self._ptr)
            if fd < 0 and fd != -_ffi.EAGAIN:
                _ffi.raise_code(fd)  # same thread: the message is still ours
            return fd

    def accept(self, timeout: Optional[float] = None) -> Tuple[socket.socket, Any]:
        """Takes the next connection: ``(socket.socket, address)`` like ``socket.accept``.

        Blocking servers wait (at most ``timeout`` seconds: then ``TimeoutError``);
        non-blocking ones raise ``BlockingIOError`` when none waits. The wait is in Python,
        so Ctrl-C interrupts it. Raises ``OSError(EBADF)`` once a disconnect closed the
        server. Safe to call from several threads.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            fd = self._accept_fd()
            if fd >= 0:
                break
            if self._nonblocking:
                raise BlockingIOError(_ffi.EAGAIN, "no connection is waiting")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("accept timed out")
            with self._lock:
                if self._ptr is None:
                    raise OSError(_ffi.EBADF, "server is closed")
                wait_fd = self._fd
            _run._wait_readable(wait_fd, left)
        sock = socket.socket(fileno=fd)
        sock.setblocking(not self._nonblocking)
        try:
            addr = sock.getpeername()
        except OSError:
            addr = None
        return sock, addr

    def close(self) -> None:
        """Closes the server: connections not yet accepted go to other workers, and the
        primary is told. Idempotent."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.cluster_server_close(ptr)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def get_server(
    host: Optional[str] = None,
    port: int = 0,
    *,
    backlog: int = 0,
    ipv6_only: bool = False,
    exclusive: bool = False,
    nonblocking: bool = False,
    udp: bool = False,
    reuse_addr: bool = False,
) -> Server:
    """A server listening on ``host``:``port``, as Node's ``server.listen`` in a cluster.

    In a worker, asks the primary (``queryServer``): the primary binds once and hands each
    connection to a worker in turn; a ``'listening'`` event follows in the primary. In the
    primary (or with ``exclusive=True``) binds here.

    ``host``: an IP literal or host name; None or '' for every interface; a path (anything
    with '/') for a Unix socket. ``port``: 0 picks a random port, the same for every worker.
    ``nonblocking``: :meth:`Server.accept` raises ``BlockingIOError`` instead of waiting
    and gives non-blocking sockets (for selectors / asyncio). ``backlog`` (0: 511),
    ``ipv6_only``, ``udp`` (a datagram socket: poll :meth:`Server.fileno`), ``reuse_addr``.
    Raises e.g. ``OSError(EADDRINUSE)`` with the primary's bind error. Blocks (without
    the GIL) until the primary replies.
    """
    opts = _ffi.ServerOptions.defaults()
    opts.backlog = int(backlog)
    opts.ipv6_only = int(bool(ipv6_only))
    opts.exclusive = int(bool(exclusive))
    # Always non-blocking underneath: a blocking accept() waits in Python (interruptible).
    opts.nonblocking = 1
    opts.udp = int(bool(udp))
    opts.reuse_addr = int(bool(reuse_addr))
    ptr = ctypes.c_void_p()
    addr = host.encode() if host else None
    _ffi.check(lib.cluster_get_server(ctypes.byref(ptr), addr, int(port), ctypes.byref(opts)))
    assert ptr.value is not None
    return Server(ptr.value, host or None, nonblocking, udp)


# --------------------------------------------------------------------------- socketserver


class ClusterServerMixin:
    """Makes a ``socketserver`` server take its connections from libcluster.

    Put it first: ``class MyServer(ClusterServerMixin, socketserver.TCPServer)``. The
    server asks the primary for ``server_address`` instead of binding, ``server_address``
    gets the real port, and :meth:`serve_forever` also dispatches libcluster's events
    (``worker.on('message', ...)``) unless ``dispatch_cluster_events`` is False. When the
    primary disconnects the worker, ``serve_forever`` returns: idle keep-alive connections
    are closed, requests in progress finish (threading servers join them in
    ``server_close``). Extra keyword arguments are :func:`get_server` options.
    """

    #: Default :func:`get_server` options for this class.
    cluster_options: Dict[str, Any] = {}
    #: Whether :meth:`serve_forever` dispatches libcluster events on its thread.
    dispatch_cluster_events: bool = True
    #: Whether :meth:`serve_forever` (on the main thread) turns SIGINT into a graceful stop
    #: while the program has no SIGINT handler of its own.
    handle_signals: bool = True

    socket: Any
    server_address: Any
    RequestHandlerClass: Any
    server_name: str
    server_port: int

    def __init__(
        self,
        server_address: Address,
        RequestHandlerClass: Callable[..., Any],
        bind_and_activate: bool = True,
        **options: Any,
    ) -> None:
        # BaseServer, not TCPServer: no socket of our own to create.
        socketserver.BaseServer.__init__(self, server_address, RequestHandlerClass)  # type: ignore[type-var]
        self._cluster_opts = {**self.cluster_options, **options}
        self.socket = None
        self._stop_serving = False
        self._cluster_closed = False
        self._not_serving = threading.Event()
        self._not_serving.set()
        self._conns: Set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self) -> None:
        """Gets the server from libcluster (the primary binds it)."""
        if isinstance(self.server_address, (str, bytes)):
            path = self.server_address.decode() if isinstance(self.server_address, bytes) else self.server_address
            self.socket = get_server(path, 0, nonblocking=True, **self._cluster_opts)
            return
        host, port = self.server_address[:2]
        self.socket = get_server(host, port, nonblocking=True, **self._cluster_opts)
        self.server_address = (host, self.socket.port)
        if isinstance(self, http.server.HTTPServer):
            self.server_name = socket.getfqdn(host)
            self.server_port = self.socket.port

    def server_activate(self) -> None:
        """Nothing to do: the primary listens."""

    def fileno(self) -> int:
        """The server's fd (see :meth:`Server.fileno`)."""
        return int(self.socket.fileno())

    def get_request(self) -> Tuple[socket.socket, Any]:
        """The next connection (blocking), tracked so a disconnect can close it if idle."""
        conn, addr = self.socket.accept()
        conn.setblocking(True)
        with self._conns_lock:
            self._conns.add(conn)
        return conn, addr

    def close_request(self, request: Any) -> None:
        """Forgets and closes a connection."""
        with self._conns_lock:
            self._conns.discard(request)
        super().close_request(request)  # type: ignore[misc]

    def _handle_ready(self) -> None:
        try:
            request, client_address = self.get_request()
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == _ffi.EBADF:
                if self.socket.closed:  # closed here (server_close), not by a disconnect
                    self._stop_serving = True
                else:
                    self._on_cluster_closed()
            return
        if self.verify_request(request, client_address):  # type: ignore[attr-defined]
            try:
                self.process_request(request, client_address)  # type: ignore[attr-defined]
            except Exception:
                self.handle_error(request, client_address)  # type: ignore[attr-defined]
                self.shutdown_request(request)  # type: ignore[attr-defined]
            except BaseException:
                self.shutdown_request(request)  # type: ignore[attr-defined]
                raise
        else:
            self.shutdown_request(request)  # type: ignore[attr-defined]

    def _on_cluster_closed(self) -> None:
        # A disconnect closed the server: stop serving; idle keep-alive connections see EOF
        # (SHUT_RD), requests in progress still write their response.
        self._cluster_closed = True
        self._shut_idle_connections()

    @property
    def cluster_closed(self) -> bool:
        """True once a disconnect closed this server."""
        return self._cluster_closed

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Handles requests until :meth:`shutdown` or a disconnect; dispatches libcluster
        events on this thread too (see ``dispatch_cluster_events``).

        Ctrl-C (SIGINT) in a worker leaves the cluster gracefully, as a disconnect from the
        primary does (requests in progress finish), and returns quietly; in the primary it
        just returns. See ``handle_signals``.
        """
        self._not_serving.clear()
        signals = (signal.SIGINT,) if self.handle_signals else ()
        try:
            with _signals.SignalStop(signals) as sigs, selectors.DefaultSelector() as sel:
                sel.register(self.socket.fileno(), selectors.EVENT_READ, "server")
                if self.dispatch_cluster_events:
                    sel.register(_dispatch.fileno(), selectors.EVENT_READ, "cluster")
                if sigs.fileno() >= 0:
                    sel.register(sigs.fileno(), selectors.EVENT_READ, "signal")
                while not self._stop_serving and not self._cluster_closed:
                    for key, _ in sel.select(poll_interval):
                        if key.data == "cluster":
                            _dispatch.dispatch()
                        elif key.data == "signal":
                            if sigs.take() is None:
                                continue
                            if _cluster.is_worker:
                                _this_worker.leave()  # closes this worker's servers
                                self._on_cluster_closed()
                            else:
                                self._stop_serving = True
                            break
                        elif not self._stop_serving and not self._cluster_closed:
                            self._handle_ready()
                    self.service_actions()  # type: ignore[attr-defined]
                if self._cluster_closed and self.dispatch_cluster_events and _cluster.is_worker:
                    self._await_disconnect_event()
        finally:
            self._stop_serving = False
            self._not_serving.set()

    def _await_disconnect_event(self, timeout: float = 5.0) -> None:
        # The server closes a moment before the channel does: dispatch until this worker's
        # 'disconnect' event has run, so worker.on('disconnect') listeners see it (bounded).
        deadline = time.monotonic() + timeout
        while not _dispatch._this_disconnected:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if _run._wait_readable(_dispatch.fileno(), left):
                _dispatch.dispatch()

    def shutdown(self) -> None:
        """Stops :meth:`serve_forever` (from another thread) and waits until it has."""
        self._stop_serving = True
        self._not_serving.wait()

    def server_close(self) -> None:
        """Closes the libcluster server (connections not yet accepted go to other workers),
        then closes idle connections and, for threading servers, waits for handlers."""
        if self.socket is not None:
            self.socket.close()
        self._shut_idle_connections()
        super().server_close()  # type: ignore[misc]  # TCPServer closes self.socket (again: a no-op)

    def _shut_idle_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RD)
            except OSError:
                pass


class ClusterTCPServer(ClusterServerMixin, socketserver.TCPServer):
    """``socketserver.TCPServer`` whose connections come from libcluster."""


class ClusterThreadingTCPServer(ClusterServerMixin, socketserver.ThreadingTCPServer):
    """``socketserver.ThreadingTCPServer`` on libcluster; ``server_close`` waits for the
    handler threads."""

    daemon_threads = False
    block_on_close = True


class ClusterHTTPServer(ClusterServerMixin, http.server.HTTPServer):
    """``http.server.HTTPServer`` on libcluster: any ``BaseHTTPRequestHandler`` subclass
    (``SimpleHTTPRequestHandler`` included) serves unchanged."""


class ClusterThreadingHTTPServer(ClusterServerMixin, http.server.ThreadingHTTPServer):
    """``http.server.ThreadingHTTPServer`` on libcluster (a thread per connection, so
    keep-alive clients do not hold up others); ``server_close`` waits for the handlers."""

    daemon_threads = False
    block_on_close = True


def serve(
    handler: Type[socketserver.BaseRequestHandler],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    server_class: Optional[Type[ClusterServerMixin]] = None,
    ready: Optional[Callable[[Any], Any]] = None,
    **options: Any,
) -> None:
    """Serves ``handler`` (e.g. a ``BaseHTTPRequestHandler`` subclass) on ``host``:``port``
    until the primary disconnects this worker (or ``server.shutdown()``).

    ``server_class``: default :class:`ClusterThreadingHTTPServer`. ``ready(server)`` runs
    once the server is listening. ``options``: :func:`get_server` options.
    """
    cls: Any = server_class or ClusterThreadingHTTPServer
    with cls((host, port), handler, **options) as server:
        if ready is not None:
            ready(server)
        server.serve_forever()
