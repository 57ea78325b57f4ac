"""A WSGI server on a clustered socket: ``wsgiref``'s handler over libcluster's servers.

Private: used by ``python -m libcluster`` (``_runner.py``). ``wsgiref.simple_server`` is
the standard library's reference WSGI server; here it takes its connections from the
primary (:class:`libcluster.ClusterServerMixin`) instead of binding, answers HTTP/1.1
with ``Connection: close`` (one request per connection, as gunicorn's sync workers), and
tells the application ``wsgi.multiprocess`` is true.
"""

from __future__ import annotations

import logging
import socket
import socketserver
from typing import IO, Any, Callable, Dict, Optional, Tuple, cast
from wsgiref.headers import Headers
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from ._server import ClusterServerMixin

access_log = logging.getLogger("libcluster.access")
error_log = logging.getLogger("libcluster.runner")

WSGIApp = Callable[..., Any]


class _ServerHandler(ServerHandler):
    # HTTP/1.1 status lines (clients and load generators expect them); the connection is
    # closed after each response, so say so.
    http_version = "1.1"

    def cleanup_headers(self) -> None:
        # wsgiref's Headers edits the list the app passed to start_response in place; an
        # app may reuse one list for every response, so work on a copy.
        current: Headers = getattr(self, "headers")
        fresh = self.headers_class(list(current.items()))
        setattr(self, "headers", fresh)
        super().cleanup_headers()
        fresh["Connection"] = "close"

    def log_exception(self, exc_info: Any) -> None:
        # wsgiref prints the traceback to wsgi.errors; the runner's log gets it instead.
        environ: Dict[str, Any] = getattr(self, "environ", {})
        error_log.error("error in the application (%s %s)", environ.get("REQUEST_METHOD"),
                        environ.get("PATH_INFO"), exc_info=exc_info)


class ClusterWSGIRequestHandler(WSGIRequestHandler):
    """``wsgiref``'s request handler: one request per connection, HTTP/1.1 (so
    ``Expect: 100-continue`` is answered), requests logged to ``libcluster.access`` at
    INFO."""

    protocol_version = "HTTP/1.1"
    server_version = "libcluster-wsgi"

    def handle(self) -> None:
        # As WSGIRequestHandler.handle, with wsgi.multiprocess/multithread set truthfully.
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # an error response has been sent
            return
        handler = _ServerHandler(
            cast(IO[bytes], self.rfile), cast(IO[bytes], self.wfile), self.get_stderr(), self.get_environ(),
            multithread=isinstance(self.server, socketserver.ThreadingMixIn),
            multiprocess=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back-pointer, for logging
        handler.run(self.server.get_app())  # type: ignore[attr-defined]
        self.close_connection = True

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else ""

    def log_message(self, format: str, *args: Any) -> None:
        access_log.info("%s %s", self.address_string(), format % args)


class ClusterWSGIServer(ClusterServerMixin, WSGIServer):
    """``wsgiref.simple_server.WSGIServer`` on libcluster: one request at a time (a sync
    worker). ``server_address`` is ``(host, port)`` or a Unix socket path."""

    def server_bind(self) -> None:
        ClusterServerMixin.server_bind(self)
        if isinstance(self.server_address, (str, bytes)):  # a Unix socket
            self.server_name = "localhost"
            self.server_port = 0
        self.setup_environ()

    def get_request(self) -> Tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        if not isinstance(addr, tuple):  # a Unix socket's peer: '' (REMOTE_ADDR stays '')
            addr = ("", 0)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        error_log.exception("error while serving %s", client_address)


class ClusterThreadingWSGIServer(socketserver.ThreadingMixIn, ClusterWSGIServer):
    """:class:`ClusterWSGIServer` with a thread per connection (the app must be
    thread-safe); ``server_close`` waits for the requests in progress."""

    daemon_threads = False
    block_on_close = True


def make_server(app: WSGIApp, address: Any, threaded: bool = False) -> ClusterWSGIServer:
    """A WSGI server serving ``app`` on ``address`` (``(host, port)`` or a path), its
    connections handed over by the primary; run it with ``serve_forever()``."""
    cls = ClusterThreadingWSGIServer if threaded else ClusterWSGIServer
    server = cls(address, ClusterWSGIRequestHandler)
    server.set_app(app)
    return server


def serve(app: WSGIApp, address: Any, threaded: bool = False,
          ready: Optional[Callable[[ClusterWSGIServer], Any]] = None) -> None:
    """Serves ``app`` until the primary disconnects this worker; requests in progress finish."""
    with make_server(app, address, threaded) as server:
        if ready is not None:
            ready(server)
        server.serve_forever()
