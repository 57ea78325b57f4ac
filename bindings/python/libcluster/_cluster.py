"""The cluster object (Node's ``cluster``): this process's role, the scheduling policies,
the cluster's own events (``on``, ``once``, ``off``, ``emit``) and the library's logger."""

from __future__ import annotations

import logging

from . import _ffi
from ._emitter import EventEmitter
from ._ffi import lib

#: The library's own messages (an unhandled 'error' event, a signal-initiated stop).
#: Nothing configured: WARNING and above reach stderr through logging's last resort.
log = logging.getLogger("libcluster")

SCHED_NONE: int = _ffi.SCHED_NONE
SCHED_RR: int = _ffi.SCHED_RR
SCHED_REUSEPORT: int = _ffi.SCHED_REUSEPORT


class _Cluster(EventEmitter):
    EVENTS = ("fork", "online", "listening", "message", "disconnect", "exit", "error", "setup",
              *_ffi.SUPERVISION_EVENTS.values())


#: The cluster's emitter: Node's ``cluster`` object itself, as an EventEmitter.
cluster = _Cluster()
on = cluster.on
once = cluster.once
off = cluster.off
emit = cluster.emit
listener_count = cluster.listener_count

#: True in the primary (no ``NODE_UNIQUE_ID`` in the environment at start-up).
is_primary: bool = bool(lib.cluster_is_primary())
#: True in a worker. Importing libcluster in a worker starts it: it takes the IPC
#: channel and tells the primary it is ``online``.
is_worker: bool = bool(lib.cluster_is_worker())
