"""The event loop: :func:`run` (with the primary's signal-initiated stop) and :func:`stop`."""

from __future__ import annotations

import ctypes
import select
import signal as _signal
from typing import Optional

from . import _dispatch, _ffi, _fork, _signals
from ._cluster import is_primary, is_worker, log
from ._disconnect import disconnect
from ._dispatch import dispatch, fileno
from ._ffi import check, lib
from ._fork import _awaiting_exit, _workers
from ._this_worker import leave, worker

_stop_requested = False


def stop() -> None:
    """Makes :func:`run` return after the events it is dispatching (any thread)."""
    global _stop_requested
    _stop_requested = True
    check(lib.cluster_stop())


def _wait_readable(fd: int, timeout: Optional[float], *more: int) -> bool:
    p = select.poll()
    for f in (fd,) + more:
        if f >= 0:
            p.register(f, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return bool(p.poll(ms))


# Primary: supervise() or scale() was called (run() then asks whether supervision still
# has work before it returns for want of workers).
_supervising = False


def _keeps_running() -> bool:
    """Supervision has work though no worker may be running (a respawn due, an open
    breaker): its target is set and no stop began."""
    if not _supervising:
        return False
    s = _ffi.Stats()
    check(lib.cluster_stats_get(ctypes.byref(s), ctypes.sizeof(s)))
    return bool(s.target > 0 and s.stopping == 0)


class _Stopping:
    """The primary's signal-initiated stop: disconnect every worker (also ones forked while
    stopping), or with supervision, its graceful stop (drains that escalate on its clock);
    a second signal kills the rest."""

    def __init__(self, sig: int) -> None:
        self.sig = sig
        self.forks = _fork._forks
        self.killed = False
        if _supervising:
            n = len(_workers())
            check(lib.cluster_control(_ffi.C("CLUSTER_ACT_STOP_GRACEFUL")))
        else:
            n = disconnect()
        log.warning("%s: stopping %d worker%s (again to kill them)",
                    _signals.name(sig), n, "" if n == 1 else "s")

    def again(self) -> None:
        if not self.killed:
            self.killed = True
            for w in _workers().values():
                try:
                    w.kill(_signal.SIGKILL)
                except OSError:
                    pass

    def after_dispatch(self) -> None:
        if _fork._forks != self.forks and not _supervising:  # an 'exit' listener forked a replacement: stop it too
            self.forks = _fork._forks
            disconnect()


def run(*, handle_signals: bool = True) -> None:
    """Dispatches events on this thread until :func:`stop` is called or, in the primary,
    no forked worker is left (each one's ``'exit'`` has been dispatched) and supervision
    has no work left (no target, or a stop began); in a worker, until its channel is closed.

    Waits in Python (``poll`` on :func:`fileno`), so signal handlers run. With
    ``handle_signals`` (the default), on the main thread, and while the program has not
    set its own handler:

    - in the primary, SIGINT (Ctrl-C) and SIGTERM disconnect every worker (they finish
      what they are doing and exit; workers forked meanwhile are disconnected too), one
      line is logged, and once all have exited ``run()`` raises ``SystemExit(128 +
      signal)`` (130 for SIGINT, 143 for SIGTERM, what a shell reports for a process the
      signal ended) instead of a ``KeyboardInterrupt`` traceback. A second signal kills
      the workers that are left (SIGKILL). With supervision the workers are not
      disconnected but drained (its graceful stop: nothing is respawned).
    - in a worker, SIGINT makes it leave (``worker.disconnect()``) and ``run()`` return,
      quietly. SIGTERM keeps its default (``worker.kill()`` ends the process at once, as
      in Node).

    The handlers are restored when ``run()`` returns. After
    :func:`libcluster.install_signal_handlers` SIGINT and SIGTERM are no longer at their
    default: they go to supervision (fast and graceful stop), and ``run()`` returns once
    every worker has exited.
    """
    global _stop_requested
    _stop_requested = False
    fd = fileno()
    wanted = (_signal.SIGINT, _signal.SIGTERM) if is_primary else (_signal.SIGINT,)
    stopping: Optional[_Stopping] = None
    with _signals.SignalStop(wanted if handle_signals else ()) as sigs:
        while True:
            dispatch()
            if stopping is not None:
                stopping.after_dispatch()
            if _stop_requested:
                _stop_requested = False
                break
            if is_primary and not _awaiting_exit and not _keeps_running():
                # A fork supervision made before it stopped has queued its 'fork' by now.
                dispatch()
                if not _awaiting_exit:
                    break
                continue
            if is_worker and _dispatch._this_disconnected and worker is not None and not worker.is_connected():
                break
            sig = sigs.take()
            if sig is not None:
                if not is_primary:
                    leave()
                elif stopping is None:
                    stopping = _Stopping(sig)
                else:
                    stopping.again()
                continue
            # Supervision's state may change without an event (a stop asked from another
            # thread): look again now and then.
            _wait_readable(fd, 1.0 if _supervising else None, sigs.fileno())
    if stopping is not None:
        raise SystemExit(128 + stopping.sig)
