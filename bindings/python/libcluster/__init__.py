"""libcluster: Node.js's ``cluster`` module for Python, over libcluster's C ABI (ctypes).

A primary forks workers; workers ask for a server; the primary binds it once and hands
each connection to a worker in turn, speaking Node v20's IPC protocol (so a Node primary
can run Python workers and a Python primary can run Node workers)::

    import os, libcluster
    from http.server import BaseHTTPRequestHandler

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers()
            self.wfile.write(f"hello from worker {os.getpid()}\\n".encode())

    if libcluster.is_primary:
        libcluster.on("exit", lambda worker, code, signal: libcluster.fork())
        for _ in range(4):
            libcluster.fork()
        libcluster.run()
    else:
        libcluster.serve(Hello, "127.0.0.1", 8000)

Beyond Node, supervision keeps the fleet at size and replaces it without dropping a
connection (``supervise``, ``rolling_restart``, ``scale``, ``drain``, ``stats``; in a
worker ``worker_ready``, ``worker_draining``), steered by signals only if the program says
so (``install_signal_handlers``)::

    if libcluster.is_primary:
        libcluster.install_signal_handlers()   # HUP rolling restart, TTIN/TTOU, TERM, INT, USR2
        libcluster.supervise(workers=4, drain_timeout=10.0)
        libcluster.run()

and replaces the primary itself, the program file included, without a failed request
(``upgrade``, SIGUSR2 with those handlers; ``is_upgrade`` in the new primary).

Names follow Node's API in Python spelling: ``is_primary``, ``is_worker``, ``worker``,
``workers``, ``fork``, ``setup_primary``, ``disconnect``, ``on``; events carry Node's
arguments. Failures raise ``OSError(errno, message)`` (or :class:`ClusterError`).
``LIBCLUSTER_LIBRARY`` overrides which ``libcluster.so`` is loaded, ``LIBCLUSTER_INCLUDE``
the directory of the ``cluster.h`` it is described by.

Data: ``is_primary`` / ``is_worker`` (this process's role), ``worker`` (this worker's
:class:`ThisWorker`, None in the primary), ``workers`` (the primary's live workers by id),
``settings`` (what :func:`setup_primary` was given so far), ``SCHED_RR``, ``SCHED_NONE``,
``SCHED_REUSEPORT`` (scheduling policies, from the header), ``library_path`` (the
``libcluster.so`` loaded) and ``log`` (``logging.getLogger("libcluster")``, where the
library's own messages go: an unhandled ``'error'`` event, a signal-initiated stop).
"""

from . import _fork
from ._asyncio import AsyncServer, add_reader, remove_reader, start_server
from ._cluster import SCHED_NONE, SCHED_REUSEPORT, SCHED_RR, emit, is_primary, is_worker, listener_count, log, off, on, once
from ._disconnect import disconnect
from ._dispatch import dispatch, fileno
from ._emitter import EventEmitter
from ._fork import fork
from ._messages import set_max_message
from ._run import run, stop
from ._setup_primary import allow_bind, settings, setup_primary
from ._this_worker import ThisWorker, leave, worker
from ._types import ClusterStats, ListeningAddress, SupervisionInfo, WorkerStats
from ._worker import Worker
from ._ffi import (
    BreakerOpenError,
    BusyError,
    ChannelClosedError,
    ClusterError,
    ForkedError,
    PanicError,
    ProtocolError,
    UnsupportedError,
    WrongRoleError,
    library_path,
)
from ._supervision import (
    control,
    drain,
    handle_signal,
    install_signal_handlers,
    reset_breaker,
    restore_signal_handlers,
    rolling_restart,
    scale,
    signal_map,
    stats,
    supervise,
    worker_draining,
    worker_ready,
    worker_stats,
)
from ._upgrade import is_upgrade, upgrade
from ._server import (
    ClusterHTTPServer,
    ClusterServerMixin,
    ClusterTCPServer,
    ClusterThreadingHTTPServer,
    ClusterThreadingTCPServer,
    Server,
    get_server,
    serve,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncServer",
    "BreakerOpenError",
    "BusyError",
    "ChannelClosedError",
    "ClusterError",
    "ClusterHTTPServer",
    "ClusterServerMixin",
    "ClusterTCPServer",
    "ClusterThreadingHTTPServer",
    "ClusterThreadingTCPServer",
    "ClusterStats",
    "EventEmitter",
    "ListeningAddress",
    "ForkedError",
    "PanicError",
    "ProtocolError",
    "SCHED_NONE",
    "SCHED_REUSEPORT",
    "SCHED_RR",
    "Server",
    "SupervisionInfo",
    "ThisWorker",
    "UnsupportedError",
    "Worker",
    "WorkerStats",
    "WrongRoleError",
    "add_reader",
    "allow_bind",
    "control",
    "set_max_message",
    "disconnect",
    "dispatch",
    "drain",
    "emit",
    "fileno",
    "fork",
    "get_server",
    "handle_signal",
    "install_signal_handlers",
    "is_primary",
    "is_upgrade",
    "is_worker",
    "leave",
    "library_path",
    "log",
    "listener_count",
    "off",
    "on",
    "once",
    "remove_reader",
    "reset_breaker",
    "restore_signal_handlers",
    "rolling_restart",
    "run",
    "scale",
    "serve",
    "settings",
    "setup_primary",
    "signal_map",
    "start_server",
    "stats",
    "stop",
    "supervise",
    "upgrade",
    "worker",
    "worker_draining",
    "worker_ready",
    "worker_stats",
    "workers",
]

#: Primary: Node's ``cluster.workers``, the live workers by id (a fresh dict on each
#: access); ``{}`` in a worker.
workers: "dict[int, Worker]"


def __getattr__(name: str) -> "dict[int, Worker]":
    # `libcluster.workers` is computed on each access (Node's live `cluster.workers`).
    if name == "workers":
        return _fork._workers()
    raise AttributeError(f"module 'libcluster' has no attribute {name!r}")


def __dir__() -> "list[str]":
    return sorted(set(globals()) | {"workers"})


for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) and _obj.__module__.startswith("libcluster."):
        _obj.__module__ = "libcluster"  # tracebacks say libcluster.ChannelClosedError
del _name, _obj
