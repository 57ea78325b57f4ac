"""Events in: libcluster's events (``cluster_poll_event``) emitted as Node's, first on the
worker they concern, then on the cluster; :func:`fileno` and :func:`dispatch`."""

from __future__ import annotations

import ctypes
import json
import signal as _signal
import socket
from typing import Any, List, Optional, Union

from . import _ffi, _signals
from ._cluster import cluster, log
from ._emitter import EventEmitter
from ._ffi import check, lib
from ._fork import _awaiting_exit, _worker_by_id
from ._this_worker import worker
from ._types import ListeningAddress, SupervisionInfo
from ._worker import _WORKER_NOTICES

# The names of each notice's `state` and `reason` values.
_STATE_NAMES = {"draining": _ffi.DRAIN_STAGES, "breaker": _ffi.BREAKER_STATES,
                "rollout": _ffi.ROLLOUT_STATES, "control": _ffi.ACTIONS, "upgrade": _ffi.UPGRADE_STATES}
_REASON_NAMES = {"draining": _ffi.DRAIN_REASONS, "recycle": _ffi.RECYCLE_REASONS}

# In a worker: its channel to the primary is closed (the 'disconnect' event was dispatched).
_this_disconnected = False
# Exceptions raised by callbacks the library ran inside cluster_poll_event (disconnect()'s),
# re-raised by _poll_one once the call has returned.
_deferred: List[BaseException] = []


def _address_type(t: int) -> Union[int, str]:
    return {_ffi.ADDRESS_UDP4: "udp4", _ffi.ADDRESS_UDP6: "udp6"}.get(t, t)


def _report_unhandled(exc: BaseException) -> None:
    log.error("unhandled 'error' event: %s", exc)


def _emit_event(ev: Any) -> None:  # ev: an _ffi.Event
    kind = ev.kind
    # Copy the strings now: they are only valid until the next poll on this thread.
    address = _ffi.string_at(ev.address)
    data = _ffi.string_at(ev.data)
    if kind == _ffi.EVENT_MESSAGE:
        handle = socket.socket(fileno=ev.fd) if ev.fd >= 0 else None
        try:
            message = json.loads(data) if data is not None else None
        except ValueError:
            message = data
        if ev.worker_id == 0:
            target: EventEmitter = worker if worker is not None else cluster
            delivered = target.emit("message", message, handle)
        else:
            w = _worker_by_id(ev.worker_id, ev.pid)
            delivered = w.emit("message", message, handle)
            delivered = cluster.emit("message", w, message, handle) or delivered
        if handle is not None and not delivered:
            handle.close()
        return
    if kind == _ffi.EVENT_ERROR:
        exc = _ffi.error_for(ev.error or _ffi.E_PROTOCOL, data or "")
        if ev.worker_id == 0:
            if worker is not None:
                handled = worker.emit("error", exc)
            else:
                handled = cluster.emit("error", None, exc)
        else:
            w = _worker_by_id(ev.worker_id, ev.pid)
            handled = w.emit("error", exc)
            handled = cluster.emit("error", w, exc) or handled
        if not handled:
            _report_unhandled(exc)
        return
    if kind == _ffi.EVENT_DISCONNECT and worker is not None:
        global _this_disconnected
        _this_disconnected = True
        worker.emit("disconnect")
        return
    notice = _ffi.SUPERVISION_EVENTS.get(kind)
    if notice is not None:
        _emit_supervision(notice, ev)
        return
    w = _worker_by_id(ev.worker_id, ev.pid)
    if kind == _ffi.EVENT_FORK:
        _awaiting_exit.add(ev.worker_id)  # also the workers supervision forks
        cluster.emit("fork", w)
    elif kind == _ffi.EVENT_ONLINE:
        w.emit("online")
        cluster.emit("online", w)
    elif kind == _ffi.EVENT_LISTENING:
        info: ListeningAddress = {
            "addressType": _address_type(ev.address_type),
            "address": address,
            "port": ev.port,
            "fd": ev.listening_fd if ev.listening_fd >= 0 else None,
        }
        w.emit("listening", info)
        cluster.emit("listening", w, info)
    elif kind == _ffi.EVENT_DISCONNECT:
        w.emit("disconnect")
        cluster.emit("disconnect", w)
    elif kind == _ffi.EVENT_EXIT:
        _awaiting_exit.discard(ev.worker_id)
        code: Optional[int] = None if ev.signal else ev.exit_code
        sig: Optional[_signal.Signals] = _signals.by_number.get(ev.signal, ev.signal) if ev.signal else None
        w.emit("exit", code, sig)
        cluster.emit("exit", w, code, sig)


def _emit_supervision(name: str, ev: Any) -> None:
    if name == "ready":
        w = _worker_by_id(ev.worker_id, ev.pid)
        w.emit("ready")
        cluster.emit("ready", w)
        return
    states, reasons = _STATE_NAMES.get(name), _REASON_NAMES.get(name)
    sig = _signals.by_number.get(ev.signal, None) if ev.signal else None
    info: SupervisionInfo = {
        "state": states.get(ev.state, str(ev.state)) if states is not None else None,
        "reason": reasons.get(ev.reason, str(ev.reason)) if reasons is not None else None,
        "generation": ev.generation,
        "delay_ms": ev.delay_ms,
        "count": ev.count,
        "signal": sig,
        # The other primary, for a hot upgrade (a worker's events carry the worker).
        "pid": ev.pid if name == "upgrade" else 0,
        "error": ev.error if name == "upgrade" else 0,
    }
    if name in _WORKER_NOTICES and ev.worker_id:
        w = _worker_by_id(ev.worker_id, ev.pid)
        w.emit(name, info)
        cluster.emit(name, w, info)
    else:
        cluster.emit(name, info)


def _raise_deferred() -> None:
    if _deferred:
        e = _deferred[0]
        del _deferred[:]
        raise e


def _poll_one() -> bool:
    ev = _ffi.Event()
    rc = lib.cluster_poll_event(ctypes.byref(ev), 0)
    if rc < 0:
        check(rc)
    _raise_deferred()
    if rc == 0:
        return False
    _emit_event(ev)
    return True


def fileno() -> int:
    """An fd that is readable while events are pending (owned by libcluster: never close
    it). Poll it from your own loop, then call :func:`dispatch`; with asyncio:
    ``loop.add_reader(libcluster.fileno(), libcluster.dispatch)``."""
    return check(lib.cluster_event_fd())


def dispatch() -> int:
    """Runs the listeners of every pending event on this thread, without waiting.

    Returns how many events were dispatched. If a listener raises, the exception
    propagates and the events after it stay queued for the next call.
    """
    n = 0
    while _poll_one():
        n += 1
    return n
