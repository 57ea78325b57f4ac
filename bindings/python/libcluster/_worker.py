"""A worker as the primary sees it (Node's ``Worker``, ``lib/internal/cluster/worker.js``)."""

from __future__ import annotations

import signal as _signal
from typing import Any, Dict, Optional, Union

from . import _ffi, _signals
from ._emitter import EventEmitter
from ._ffi import check, lib
from ._messages import SocketLike, _dumps, _fd_of
from ._types import WorkerStats

# Supervision's events that concern one worker: emitted on it, then on the cluster.
_WORKER_NOTICES = ("ready", "draining", "stuck", "recycle")


def _state_name(code: int) -> str:
    return _ffi.WORKER_STATES.get(code, str(code))


class Worker(EventEmitter):
    """A worker, as the primary sees it (Node's ``Worker``).

    Events: ``'online'`` (), ``'listening'`` (address), ``'message'`` (message, handle),
    ``'disconnect'`` (), ``'exit'`` (code, signal), ``'error'`` (exc); with supervision
    (:func:`libcluster.supervise`), ``'ready'`` (), ``'draining'``, ``'stuck'`` and
    ``'recycle'`` (info: a :class:`SupervisionInfo`). Each is emitted on the worker first,
    then on the cluster with the worker prepended.
    """

    EVENTS = ("online", "listening", "message", "disconnect", "exit", "error",
              *(n for n in _WORKER_NOTICES if n in _ffi.SUPERVISION_EVENTS.values()))

    def __init__(self, id: int, pid: int = 0) -> None:
        super().__init__()
        #: The worker's id (1, 2, ...; never reused).
        self.id: int = id
        #: The worker's process id.
        self.pid: int = pid
        self._stdio: Dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"<libcluster.Worker id={self.id} pid={self.pid}>"

    def send(self, message: Any, sock: Optional[SocketLike] = None) -> None:
        """Sends ``message`` (any JSON-serialisable object) to the worker (``worker.send``).

        ``sock``: a TCP, Unix-stream or UDP socket (or its fd) to pass along with it; the
        worker gets its own copy, so the caller still owns and closes ``sock``.
        Raises ``ProcessLookupError`` (unknown or dead worker) or ``ChannelClosedError``.
        """
        check(lib.cluster_send(self.id, _dumps(message), _fd_of(sock)))

    def kill(self, sig: Union[int, str, _signal.Signals] = _signal.SIGTERM) -> None:
        """Sends ``sig`` (default SIGTERM) to the worker at once, as Node v20's ``worker.kill``."""
        check(lib.cluster_kill(self.id, _signals.number(sig)))

    destroy = kill

    def disconnect(self) -> "Worker":
        """Node's ``worker.disconnect()``: the worker closes its servers and its channel,
        then exits when it has finished; ``exited_after_disconnect`` becomes True."""
        check(lib.cluster_disconnect_worker(self.id))
        return self

    @property
    def state(self) -> str:
        """Node's ``worker.state``: 'none', 'online', 'listening', 'disconnected' or 'dead'."""
        return _state_name(check(lib.cluster_worker_get_state(self.id)))

    def is_dead(self) -> bool:
        """True once the worker's process has exited."""
        return bool(check(lib.cluster_worker_is_dead(self.id)))

    def is_connected(self) -> bool:
        """True while the worker's IPC channel is open."""
        return bool(check(lib.cluster_worker_is_connected(self.id)))

    @property
    def exited_after_disconnect(self) -> bool:
        """True if the worker's exit was asked for (a disconnect from either side)."""
        return bool(check(lib.cluster_worker_exited_after_disconnect(self.id)))

    def _stdio_file(self, n: int) -> Any:
        if n not in self._stdio:
            rc = lib.cluster_worker_stdio(self.id, n)
            if rc < 0:
                if rc in (-_ffi.ENOENT, -_ffi.ESRCH):  # not a pipe, or gone
                    return None
                check(rc)
            self._stdio[n] = open(rc, "wb" if n == 0 else "rb", buffering=0)
        return self._stdio[n]

    def drain(self) -> None:
        """Supervision: drains this worker (see :func:`libcluster.drain`)."""
        from . import _supervision

        _supervision.drain(self)

    def stats(self) -> "WorkerStats":
        """This worker's figures (see :func:`libcluster.worker_stats`)."""
        from . import _supervision

        return _supervision.worker_stats(self)

    @property
    def stdin(self) -> Any:
        """With ``silent`` or ``stdio=['pipe', ...]``: a binary file writing to the worker's
        stdin; otherwise None. Open the pipes before the worker is gone (e.g. in a 'fork'
        listener); once open, they read to EOF even after the exit. Close them when done."""
        return self._stdio_file(0)

    @property
    def stdout(self) -> Any:
        """With ``silent``/``'pipe'``: a binary file reading the worker's stdout; else None."""
        return self._stdio_file(1)

    @property
    def stderr(self) -> Any:
        """With ``silent``/``'pipe'``: a binary file reading the worker's stderr; else None."""
        return self._stdio_file(2)
