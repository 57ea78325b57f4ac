"""The binding itself, in the test process (a primary): errors, servers, events, types."""

import errno
import http.server
import selectors
import socket
import threading

import pytest

import libcluster
from libcluster import _ffi
from conftest import http_get


def test_roles_in_a_primary():
    assert libcluster.is_primary is True and libcluster.is_worker is False
    assert libcluster.worker is None
    assert libcluster.workers == {}
    libcluster.run()  # no worker: returns at once
    assert libcluster.dispatch() >= 0
    assert libcluster.fileno() >= 0


def test_errno_codes_become_oserror_subclasses():
    with pytest.raises(OSError) as info:
        _ffi.raise_code(-errno.EADDRINUSE, "address already in use (test)")
    assert info.value.errno == errno.EADDRINUSE and info.value.strerror == "address already in use (test)"
    with pytest.raises(ProcessLookupError):
        _ffi.raise_code(-errno.ESRCH, "x")


def test_library_codes_become_cluster_errors():
    with pytest.raises(libcluster.ChannelClosedError) as info:
        _ffi.raise_code(-10005, "IPC channel is closed")
    assert isinstance(info.value, libcluster.ClusterError) and isinstance(info.value, OSError)
    assert info.value.code == -10005 and info.value.strerror == "IPC channel is closed"
    with pytest.raises(libcluster.UnsupportedError) as info:
        libcluster.setup_primary(serialization="advanced")
    assert info.value.code == -10006 and "advanced" in str(info.value)
    with pytest.raises(libcluster.ClusterError) as info:
        _ffi.raise_code(-10999, "future code")
    assert type(info.value) is libcluster.ClusterError


def test_unknown_worker_raises_process_lookup_error():
    w = libcluster.Worker(4242)
    with pytest.raises(ProcessLookupError) as info:
        w.send({"x": 1})
    assert info.value.strerror  # libcluster's message
    with pytest.raises(ProcessLookupError):
        w.kill()
    with pytest.raises(ProcessLookupError):
        w.state
    with pytest.raises(ValueError):
        w.send(float("nan"))  # not JSON


def test_setup_primary_validates_before_calling():
    with pytest.raises(ValueError):
        libcluster.setup_primary(stdio=["inherit", "bogus", "inherit"])
    with pytest.raises(ValueError):
        libcluster.setup_primary(scheduling_policy="fifo")
    with pytest.raises(TypeError):
        libcluster.setup_primary("positional")  # keyword-only, like Node's settings object


def test_events_on_once_off_and_decorator():
    calls = []
    e = libcluster.Worker(1)

    @e.on("exit")
    def first(code, sig):
        calls.append(("first", code, sig))

    e.once("exit", lambda code, sig: calls.append(("once", code, sig)))
    assert e.emit("exit", 0, None)
    assert e.emit("exit", 1, None)
    e.off("exit", first)
    assert not e.emit("exit", 2, None)
    assert calls == [("first", 0, None), ("once", 0, None), ("first", 1, None)]
    with pytest.raises(ValueError):
        e.on("exits", print)
    with pytest.raises(ValueError):
        libcluster.on("nonsense", print)


def test_server_in_the_primary_with_selectors():
    # In the primary get_server binds here; nonblocking servers fit a selectors loop.
    with libcluster.get_server("127.0.0.1", 0, nonblocking=True) as srv:
        assert srv.port > 0 and srv.fileno() >= 0
        with pytest.raises(BlockingIOError):
            srv.accept()
        client = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        with selectors.DefaultSelector() as sel:
            sel.register(srv, selectors.EVENT_READ)
            assert sel.select(10)
        conn, addr = srv.accept()
        assert addr == client.getsockname()
        assert conn.getblocking() is False
        conn.setblocking(True)
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()
        client.close()
    assert srv.closed and srv.fileno() == -1
    with pytest.raises(OSError) as info:
        srv.accept()
    assert info.value.errno == errno.EBADF


def test_blocking_accept_times_out():
    with libcluster.get_server("127.0.0.1", 0) as srv:
        with pytest.raises(TimeoutError):
            srv.accept(timeout=0.05)


def test_bind_error_is_oserror_with_the_errno():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError) as info:
            libcluster.get_server("127.0.0.1", taken.getsockname()[1])
        assert info.value.errno == errno.EADDRINUSE
    finally:
        taken.close()


def test_http_server_subclass_serves_standard_handlers():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"standard handler " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with libcluster.ClusterThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        port = httpd.server_address[1]
        assert port > 0 and httpd.server_port == port
        t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        try:
            assert http_get(port, "/a") == (200, "standard handler /a")
            assert http_get(port, "/b") == (200, "standard handler /b")
        finally:
            httpd.shutdown()
            t.join(10)
        assert not t.is_alive()
