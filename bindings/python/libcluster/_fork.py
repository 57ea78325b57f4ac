"""Node's ``cluster.fork()`` and ``cluster.workers``: the primary's :class:`Worker` objects
by id, and the ids whose ``'exit'`` :func:`libcluster.run` still waits for."""

from __future__ import annotations

import ctypes
import os
from typing import Dict, Mapping, Optional

from ._cluster import is_primary
from ._ffi import check, lib
from ._worker import Worker

# Primary: every Worker object by id (kept so listeners and identity survive).
_registry: Dict[int, Worker] = {}
# Primary: ids forked whose 'exit' event has not been dispatched yet (run() waits for them).
_awaiting_exit: "set[int]" = set()

_forks = 0  # how many fork() calls succeeded (run() disconnects late ones while stopping)


def _worker_by_id(id: int, pid: int = 0) -> Worker:
    w = _registry.get(id)
    if w is None:
        w = _registry[id] = Worker(id, pid)
    elif pid and not w.pid:
        w.pid = pid
    return w


def _workers() -> Dict[int, Worker]:
    """Node's ``cluster.workers``: the live workers by id (a fresh dict each time)."""
    if not is_primary:
        return {}
    n = check(lib.cluster_workers(None, 0))
    while True:
        ids = (ctypes.c_int * max(n, 1))()
        m = check(lib.cluster_workers(ids, n))
        if m <= n:
            break
        n = m
    out: Dict[int, Worker] = {}
    for id in ids[:m]:
        out[id] = _worker_by_id(id)
        if not out[id].pid:
            rc = lib.cluster_worker_pid(id)
            if rc > 0:
                out[id].pid = rc
    return out


def fork(env: Optional[Mapping[str, str]] = None) -> Worker:
    """Forks a worker (Node's ``cluster.fork(env)``): runs this program again (or what
    :func:`setup_primary` set) with ``env`` added to the environment. Returns the
    :class:`Worker` once its program has been exec'd; a ``'fork'`` event follows.
    """
    arr = None
    if env:
        entries = [os.fsencode(str(k)) + b"=" + os.fsencode(str(v)) for k, v in env.items()]
        arr = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
    id = check(lib.cluster_fork(arr))
    global _forks
    _forks += 1
    pid = lib.cluster_worker_pid(id)
    w = _worker_by_id(id, pid if pid > 0 else 0)
    _awaiting_exit.add(id)
    return w
