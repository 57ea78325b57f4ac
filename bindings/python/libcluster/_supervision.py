"""Supervision (beyond Node's API): respawn with backoff, readiness, rolling restarts, drains,
scaling, stats, and the signals a program passes on to libcluster.

Everything here is a thin layer over ``cluster_supervise`` and its siblings in ``cluster.h``:
seconds become milliseconds, ``CLUSTER_*`` values become the lowercased names the header
gives them (``CLUSTER_ACT_STOP_FAST`` is ``'stop_fast'``), failures raise ``OSError`` or a
:class:`libcluster.ClusterError`.
"""

from __future__ import annotations

import ctypes
import json
import signal as _signal
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union, cast

from . import _cluster, _ffi, _run, _signals
from ._types import ClusterStats, WorkerStats
from ._worker import Worker
from ._ffi import check

Signal = Union[int, str, _signal.Signals]

_INT_MAX = 2**31 - 1
_U64_MAX = 2**64 - 1

# Python's keyword -> (cluster_supervisor's field, kind): "s" seconds (to milliseconds),
# "int" a C int, "u64" a uint64_t. The fields themselves come from the header.
_FIELDS: Dict[str, Tuple[str, str]] = {
    "backoff_base": ("backoff_base_ms", "s"),
    "backoff_max": ("backoff_max_ms", "s"),
    "stable_after": ("stable_ms", "s"),
    "breaker_burst": ("breaker_burst", "int"),
    "breaker_window": ("breaker_window_ms", "s"),
    "breaker_cooldown": ("breaker_cooldown_ms", "s"),
    "boot_timeout": ("boot_timeout_ms", "s"),
    "drain_timeout": ("drain_timeout_ms", "s"),
    "kill_after": ("kill_after_ms", "s"),
    "stuck_timeout": ("stuck_timeout_ms", "s"),
    "max_connections": ("max_connections", "u64"),
    "max_rss": ("max_rss_bytes", "u64"),
    "max_age": ("max_age_ms", "s"),
    "recycle_jitter": ("recycle_jitter_pct", "int"),
    "rss_interval": ("rss_interval_ms", "s"),
    "max_surge": ("max_surge", "int"),
    "drain_delay": ("drain_delay_ms", "s"),
    "seed": ("seed", "u64"),
}

# The policy given so far (cluster_supervisor_init's values, then every supervise() call's).
_policy: Optional[Any] = None


def _value_of(names: Mapping[int, str], what: str, value: Union[str, int]) -> int:
    """A ``CLUSTER_*`` value given by its name (``'stop_fast'``) or number."""
    if isinstance(value, str):
        by_name = {n: v for v, n in names.items()}
        if value.lower() not in by_name:
            raise ValueError(f"{what} must be one of {', '.join(sorted(by_name))} (got {value!r})")
        return by_name[value.lower()]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a name or an int, not {type(value).__name__}")
    return value


def _ms(name: str, seconds: float) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} is in seconds: a number, not {type(seconds).__name__}")
    ms = round(seconds * 1000)
    if not 0 <= ms <= _INT_MAX:
        raise ValueError(f"{name} must be 0 to {_INT_MAX / 1000:.0f} seconds (got {seconds!r})")
    return ms


def _int(name: str, value: int, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= top:
        raise ValueError(f"{name} must be 0 to {top} (got {value!r})")
    return value


def _worker_id(worker: Union[Worker, int]) -> int:
    if isinstance(worker, Worker):
        return worker.id
    if isinstance(worker, bool) or not isinstance(worker, int):
        raise TypeError(f"expected a Worker or a worker id, not {type(worker).__name__}")
    return worker


def _signo(sig: Signal) -> int:
    return _signals.number(sig)


# --------------------------------------------------------------------------- primary


def supervise(
    workers: Optional[int] = None,
    *,
    backoff_base: Optional[float] = None,
    backoff_max: Optional[float] = None,
    stable_after: Optional[float] = None,
    breaker_burst: Optional[int] = None,
    breaker_window: Optional[float] = None,
    breaker_cooldown: Optional[float] = None,
    ready_on: Optional[Union[str, int]] = None,
    boot_timeout: Optional[float] = None,
    drain_timeout: Optional[float] = None,
    kill_after: Optional[float] = None,
    stuck_timeout: Optional[float] = None,
    max_connections: Optional[int] = None,
    max_rss: Optional[int] = None,
    max_age: Optional[float] = None,
    recycle_jitter: Optional[int] = None,
    rss_interval: Optional[float] = None,
    max_surge: Optional[int] = None,
    seed: Optional[int] = None,
    drain_delay: Optional[float] = None,
) -> None:
    """Primary: keeps ``workers`` workers (``cluster_supervise``). They are forked at once
    (running what :func:`setup_primary` set); from then on a dead one is replaced after a
    jittered exponential delay, a crash loop opens a breaker, a stuck worker is drained and
    replaced, and :func:`rolling_restart`, :func:`scale`, :func:`drain` and the signals of
    :func:`install_signal_handlers` act on them. :func:`run` keeps running while
    supervision has work, until a stop. ``workers=0`` turns respawn off again.

    Settings accumulate, as :func:`setup_primary`'s: an argument left out keeps what an
    earlier call gave (``workers``: the current target, which :func:`scale` and SIGTTIN
    change), else ``cluster_supervisor_init``'s value, what a production user would pick.
    Times are in seconds (floats):

    - ``backoff_base`` (0.1), ``backoff_max`` (30): the delay after the n-th death in a row
      is ``base * 2**(n-1)``, at most ``max``, drawn from its upper half; a worker ready
      for ``stable_after`` (30) seconds ends the run of deaths.
    - ``breaker_burst`` (5) boot failures (deaths before ready, boot timeouts) within
      ``breaker_window`` (60) open the crash-loop breaker: no fork for ``breaker_cooldown``
      (30; 0: until :func:`reset_breaker`), the healthy workers go on serving; then one
      probe, whose readiness closes it.
    - ``ready_on``: when a worker counts as ready: ``'listening'`` (its first server, the
      default), ``'explicit'`` (it calls :func:`worker_ready`) or ``'online'``; not ready
      within ``boot_timeout`` (60): a boot failure, stopped.
    - A drain (:func:`drain`, a rolling restart, a stop...): disconnect at once, SIGTERM
      after ``drain_timeout`` (20), SIGKILL ``kill_after`` (5) later.
    - ``stuck_timeout`` (20; 0: off): a worker that takes none of the connections waiting
      for it this long is drained and replaced (round-robin scheduling only).
    - Recycling, one worker at a time, surge-first (0: off, the default):
      ``max_connections`` received (round-robin only), ``max_rss`` bytes resident (read
      every ``rss_interval``, 1 s), ``max_age`` seconds; each limit gets up to
      ``recycle_jitter`` (10) percent more per worker.
    - ``max_surge`` (1): new workers a rolling restart starts ahead of the old ones.
    - ``seed``: of the jitter (0: from the clock).
    - ``drain_delay`` (0): a graceful stop first only says so (an agent check answers
      ``drain``) while every worker serves, and drains after this many seconds.

    Raises ``ValueError``/``TypeError`` for a bad argument (nothing changes),
    :class:`WrongRoleError` in a worker.
    """
    global _policy
    values: Dict[str, Any] = {
        "backoff_base": backoff_base, "backoff_max": backoff_max, "stable_after": stable_after,
        "breaker_burst": breaker_burst, "breaker_window": breaker_window,
        "breaker_cooldown": breaker_cooldown, "boot_timeout": boot_timeout,
        "drain_timeout": drain_timeout, "kill_after": kill_after, "stuck_timeout": stuck_timeout,
        "max_connections": max_connections, "max_rss": max_rss, "max_age": max_age,
        "recycle_jitter": recycle_jitter, "rss_interval": rss_interval,
        "max_surge": max_surge, "seed": seed, "drain_delay": drain_delay,
    }
    fn = _ffi.need("cluster_supervise")
    s = _ffi.Supervisor.defaults()
    if _policy is not None:
        ctypes.memmove(ctypes.byref(s), ctypes.byref(_policy), ctypes.sizeof(s))
    fields = {name for name, _ in s._fields_}
    if workers is not None:
        s.workers = _int("workers", workers, _INT_MAX)
    elif _run._supervising:
        s.workers = _current_target()
    if ready_on is not None:
        s.ready_on = _value_of(_ffi.READY_ON, "ready_on", ready_on)
    for name, value in values.items():
        if value is None:
            continue
        field, kind = _FIELDS[name]
        if field not in fields:
            raise NotImplementedError(f"the loaded libcluster's cluster_supervisor has no {field}")
        if kind == "s":
            setattr(s, field, _ms(name, value))
        else:
            setattr(s, field, _int(name, value, _INT_MAX if kind == "int" else _U64_MAX))
    check(fn(ctypes.byref(s)))
    _policy = s
    _run._supervising = True


def _current_target() -> int:
    st = _ffi.Stats()
    check(_ffi.lib.cluster_stats_get(ctypes.byref(st), ctypes.sizeof(st)))
    return int(st.target)


def rolling_restart(max_surge: int = 0) -> int:
    """Primary: replaces every serving worker by a new one running the program file now on
    disk, ``max_surge`` at a time (0: :func:`supervise`'s, 1 by default). An old worker
    drains only once a new one is ready; a new one that dies or times out before it is
    ready aborts the rollout and the old ones not yet replaced keep serving. ``'rollout'``
    events report it (``state``: ``'started'``, each ``'step'``, ``'done'`` or
    ``'aborted'``). Returns the generation it moves to (2, 3, ...).

    Raises :class:`BusyError` (one is under way, or a stop), :class:`BreakerOpenError`,
    ``ValueError`` (negative ``max_surge``).
    """
    if max_surge < 0:
        raise ValueError("max_surge must not be negative")
    return check(_ffi.need("cluster_rolling_restart")(_int("max_surge", max_surge, _INT_MAX)))


def scale(workers: int) -> None:
    """Primary: keeps ``workers`` workers (1 to 4096): more are forked at once, the extra ones
    drain (those not ready first, then the newest). Turns respawn on if it was off. Raises
    ``ValueError`` out of range, :class:`BusyError` while stopping."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, not {type(workers).__name__}")
    if not 1 <= workers <= 4096:
        raise ValueError(f"workers must be 1 to 4096 (got {workers})")
    check(_ffi.need("cluster_scale")(workers))
    _run._supervising = True


def drain(worker: Union[Worker, int]) -> None:
    """Primary: drains ``worker`` (a :class:`Worker` or its id): from now on it gets no new
    connection, those handed to it but not yet received go to the others; it is told to
    disconnect (its servers close, :func:`worker_draining` becomes True there, it finishes
    its open connections and exits), then gets SIGTERM after ``drain_timeout`` and SIGKILL
    ``kill_after`` later. A supervised primary replaces it at once.

    Raises ``ProcessLookupError`` (no such live worker), :class:`ChannelClosedError`
    (draining already).
    """
    check(_ffi.need("cluster_drain_worker")(_worker_id(worker)))


def reset_breaker() -> None:
    """Primary: closes an open crash-loop breaker at once (forks resume)."""
    check(_ffi.need("cluster_breaker_reset")())


def control(action: Union[str, int]) -> None:
    """Primary: does now what a signal mapped to ``action`` does (for a control socket, an
    admin endpoint, a test): ``'reload'`` (a rolling restart), ``'scale_up'``,
    ``'scale_down'`` (one worker more, fewer), ``'stop_graceful'`` (drain every worker and
    stop; a second one: fast), ``'stop_fast'`` (SIGTERM every worker now, SIGKILL
    ``kill_after`` later; a second one: SIGKILL now), ``'upgrade'`` (a hot upgrade of the
    primary, as :func:`libcluster.upgrade` with its default timeout or
    ``LIBCLUSTER_UPGRADE_TIMEOUT_MS``) or ``'none'``. A ``'control'`` event follows. The names are the header's ``CLUSTER_ACT_*``; their numbers work too."""
    check(_ffi.need("cluster_control")(_value_of(_ffi.ACTIONS, "action", action)))


def handle_signal(sig: Signal) -> None:
    """Primary: records signal ``sig`` for libcluster to act on, as :func:`signal_map` says
    (by default SIGHUP a rolling restart, SIGTTIN/SIGTTOU one worker more/fewer, SIGTERM a
    graceful stop, SIGINT a fast stop, SIGUSR2 a hot upgrade of the primary). The action runs on the library's thread; repeats
    before it runs count once. For a program's own handler (``signal.signal(SIGHUP, lambda
    n, f: libcluster.handle_signal(n))``); :func:`install_signal_handlers` installs such
    handlers. Raises ``ValueError`` (not a signal), :class:`WrongRoleError` in a worker."""
    rc = _ffi.need("cluster_handle_signal")(_signo(sig))
    if rc < 0:
        _ffi.raise_code(rc, _ffi.strerror(rc))  # it sets no last error (a handler may call it)


def signal_map(sig: Signal, action: Optional[Union[str, int]]) -> None:
    """Primary: what :func:`handle_signal` does for ``sig``: an action name as for
    :func:`control` (``'none'`` ignores it), or None for the default mapping."""
    value = -1 if action is None else _value_of(_ffi.ACTIONS, "action", action)
    check(_ffi.need("cluster_signal_map")(_signo(sig), value))


def stats() -> ClusterStats:
    """Primary: the cluster's and every worker's figures (``cluster_stats_json``, parsed): a
    :class:`ClusterStats` dict whose ``per_worker`` holds :class:`WorkerStats` dicts."""
    fn = _ffi.need("cluster_stats_json")
    size = 16384
    while True:
        buf = ctypes.create_string_buffer(size)
        n = check(fn(buf, size))
        if n < size:
            return cast(ClusterStats, json.loads(buf.raw[:n].decode("utf-8")))
        size = n + 1


def worker_stats(worker: Union[Worker, int]) -> WorkerStats:
    """Primary: one worker's figures (``cluster_worker_stats_get``), alive or among the 256
    most recently gone: a :class:`WorkerStats` dict, as in :func:`stats`'s ``per_worker``.
    Raises ``ProcessLookupError`` for a worker it does not know."""
    fn = _ffi.need("cluster_worker_stats_get")
    s = _ffi.WorkerStats()
    check(fn(_worker_id(worker), ctypes.byref(s), ctypes.sizeof(s)))
    return {
        "id": s.worker_id, "pid": s.pid, "generation": s.generation,
        "alive": bool(s.alive), "ready": bool(s.ready), "draining": bool(s.draining),
        "exit": None if s.exit_kind == _ffi.C("CLUSTER_EXIT_NONE") else _ffi.EXIT_KINDS.get(s.exit_kind, str(s.exit_kind)),
        "exit_code": s.exit_code, "exit_signal": s.exit_signal,
        "forked_ms": s.forked_ms, "ready_ms": s.ready_ms,
        "handed": s.handed, "received": s.received, "queued": s.queued,
        "rerouted": s.rerouted, "lost": s.lost,
        "handoff_us": {"p50": s.handoff_us_p50, "p99": s.handoff_us_p99, "max": s.handoff_us_max},
        "rss_bytes": s.rss_bytes,
    }


# --------------------------------------------------------------------------- worker


def worker_ready() -> None:
    """Worker: tells a primary supervising with ``ready_on='explicit'`` that this worker is
    ready (call it once the program can serve: caches warm, say). Other primaries ignore
    it. Raises :class:`ChannelClosedError`, :class:`WrongRoleError` in the primary."""
    check(_ffi.need("cluster_worker_ready")())


def worker_draining() -> bool:
    """Worker: True once it is draining (its primary asked it to disconnect, it disconnected
    itself, or the channel is gone): answer ``Connection: close`` and finish. Raises
    :class:`WrongRoleError` in the primary."""
    return bool(check(_ffi.need("cluster_worker_draining")()))


# --------------------------------------------------------------------------- signals

#: The signals supervision acts on by default.
SIGNALS: Tuple[_signal.Signals, ...] = (_signal.SIGHUP, _signal.SIGTTIN, _signal.SIGTTOU,
                                        _signal.SIGTERM, _signal.SIGINT, _signal.SIGUSR2)
# Installed by install_signal_handlers: signal -> the handler it replaced.
_replaced: Dict[int, Any] = {}
_lock = threading.Lock()


def _on_signal(signo: int, _frame: object) -> None:
    _ffi.lib.cluster_handle_signal(signo)


def install_signal_handlers() -> List[_signal.Signals]:
    """Primary, main thread: ``signal.signal`` handlers that pass SIGHUP, SIGTTIN, SIGTTOU,
    SIGTERM, SIGINT and SIGUSR2 to :func:`handle_signal` (a rolling restart, one worker
    more/fewer, a graceful and a fast stop, a hot upgrade of the primary (see
    :func:`libcluster.upgrade`), unless :func:`signal_map` says otherwise), for each of them
    whose handler is still Python's default, as the binding's own loops do: a handler the
    program set stays. Returns the signals it installed a handler for.

    libcluster installs no handler otherwise. Once SIGINT and SIGTERM are handled here,
    :func:`run` leaves them alone and returns once every worker has exited.
    :func:`restore_signal_handlers` undoes it. Raises :class:`WrongRoleError` in a worker,
    ``ValueError`` off the main thread.
    """
    _ffi.need("cluster_handle_signal")
    if not _cluster.is_primary:
        raise _ffi.error_for(_ffi.E_WRONG_ROLE, "install_signal_handlers() is for the primary")
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("install_signal_handlers() works only in the main thread")
    installed = []
    with _lock:
        for sig in SIGNALS:
            current = _signal.getsignal(sig)
            if current is _on_signal or not _signals.is_default(sig, current):
                continue
            _signal.signal(sig, _on_signal)
            _replaced[int(sig)] = current
            installed.append(sig)
    return installed


def restore_signal_handlers() -> None:
    """Puts back the handlers :func:`install_signal_handlers` replaced (where its own is
    still installed). Main thread only."""
    with _lock:
        for signo, old in list(_replaced.items()):
            if _signal.getsignal(signo) is _on_signal:
                _signal.signal(signo, old if old is not None else _signal.SIG_DFL)
            del _replaced[signo]
