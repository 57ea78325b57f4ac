"""``libcluster.worker`` in a worker process (Node's ``cluster.worker``, what
``lib/internal/cluster/child.js`` sets up), and :func:`leave`."""

from __future__ import annotations

import os
from typing import Any, Optional

from . import _ffi
from ._cluster import is_worker
from ._emitter import EventEmitter
from ._ffi import check, lib
from ._messages import SocketLike, _dumps, _fd_of


class ThisWorker(EventEmitter):
    """``libcluster.worker`` in a worker process (Node's ``cluster.worker``).

    Events: ``'message'`` (message, handle) from the primary, ``'disconnect'`` () once the
    channel is closed, ``'error'`` (exc).
    """

    EVENTS = ("message", "disconnect", "error")

    def __init__(self, id: int) -> None:
        super().__init__()
        #: This worker's id (``NODE_UNIQUE_ID``).
        self.id: int = id
        #: This process's id.
        self.pid: int = os.getpid()

    def __repr__(self) -> str:
        return f"<libcluster.worker id={self.id} pid={self.pid}>"

    def send(self, message: Any, sock: Optional[SocketLike] = None) -> None:
        """Sends ``message`` (JSON-serialisable) to the primary (``process.send``), with an
        optional socket to pass along (the caller keeps and closes its own)."""
        check(lib.cluster_send(0, _dumps(message), _fd_of(sock)))

    def disconnect(self) -> None:
        """Node's ``cluster.worker.disconnect()``: closes every server (connections not yet
        accepted go to other workers), tells the primary the exit is voluntary, waits for its
        ack, and closes the channel. Finish open connections, then exit."""
        check(lib.cluster_worker_disconnect())

    def is_connected(self) -> bool:
        """True while the IPC channel to the primary is open."""
        return bool(check(lib.cluster_worker_is_connected(0)))

    def is_dead(self) -> bool:
        """False: this process is running."""
        return False


#: In a worker: this process's :class:`ThisWorker`; None in the primary.
worker: Optional[ThisWorker] = ThisWorker(check(lib.cluster_worker_id())) if is_worker else None


def leave() -> None:
    """Worker: leaves the cluster on its own (``worker.disconnect()``), ignoring a
    disconnect already under way or done. Its servers close, so the serving loops return."""
    if worker is not None:
        try:
            worker.disconnect()
        except _ffi.ChannelClosedError:
            pass
