"""The cluster itself: roles, workers, events, messages and the event loop."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal as _signal
import socket
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypedDict, TypeVar, Union, overload

from . import _ffi, _signals
from ._ffi import check, lib

#: The library's own messages (an unhandled 'error' event, a signal-initiated stop).
#: Nothing configured: WARNING and above reach stderr through logging's last resort.
log = logging.getLogger("libcluster")

F = TypeVar("F", bound=Callable[..., Any])
Handle = Optional[socket.socket]
SocketLike = Union[socket.socket, int, Any]  # a socket, an fd, or anything with fileno()

SCHED_NONE: int = _ffi.SCHED_NONE
SCHED_RR: int = _ffi.SCHED_RR
SCHED_REUSEPORT: int = _ffi.SCHED_REUSEPORT


# --------------------------------------------------------------------------- events


class EventEmitter:
    """A small ``EventEmitter``: ``on``, ``once``, ``off``, and ``emit``.

    Listeners run on the thread that dispatches libcluster's events (the one calling
    :func:`libcluster.run` or :func:`libcluster.dispatch`). An exception raised by a
    listener propagates out of ``run()``/``dispatch()``; events not yet dispatched stay
    queued.
    """

    #: The event names this emitter accepts.
    EVENTS: Tuple[str, ...] = ()

    def __init__(self) -> None:
        self._listeners: Dict[str, List[Tuple[Callable[..., Any], bool]]] = {}

    def _check_event(self, event: str) -> None:
        if event not in self.EVENTS:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(self.EVENTS)}")

    @overload
    def on(self, event: str) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, fn: F) -> F: ...

    def on(self, event: str, fn: Optional[F] = None) -> Any:
        """Calls ``fn`` on every ``event`` (Node's ``emitter.on``). Returns ``fn``.

        Without ``fn``, returns a decorator: ``@libcluster.on('exit')``.
        """
        self._check_event(event)
        if fn is None:
            return lambda f: self.on(event, f)
        if not callable(fn):
            raise TypeError("listener must be callable")
        self._listeners.setdefault(event, []).append((fn, False))
        return fn

    @overload
    def once(self, event: str) -> Callable[[F], F]: ...
    @overload
    def once(self, event: str, fn: F) -> F: ...

    def once(self, event: str, fn: Optional[F] = None) -> Any:
        """Like :meth:`on`, but the listener is removed after its first call."""
        self._check_event(event)
        if fn is None:
            return lambda f: self.once(event, f)
        if not callable(fn):
            raise TypeError("listener must be callable")
        self._listeners.setdefault(event, []).append((fn, True))
        return fn

    def off(self, event: str, fn: Callable[..., Any]) -> None:
        """Removes the most recently added registration of ``fn`` for ``event``."""
        self._check_event(event)
        entries = self._listeners.get(event, [])
        for i in range(len(entries) - 1, -1, -1):
            if entries[i][0] is fn or entries[i][0] == fn:
                del entries[i]
                return

    remove_listener = off

    def listener_count(self, event: str) -> int:
        """How many listeners ``event`` has."""
        return len(self._listeners.get(event, []))

    def emit(self, event: str, *args: Any) -> bool:
        """Calls every listener of ``event`` with ``args``; True if there was one."""
        entries = self._listeners.get(event)
        if not entries:
            return False
        for entry in list(entries):
            fn, once = entry
            if once:
                try:
                    entries.remove(entry)
                except ValueError:
                    continue
            fn(*args)
        return True


class ListeningAddress(TypedDict):
    """The ``'listening'`` event's address (Node's): ``addressType`` (4, 6, -1 for a Unix
    socket, 'udp4', 'udp6'), ``address`` (None: every interface), ``port``, ``fd``."""

    addressType: Union[int, str]
    address: Optional[str]
    port: int
    fd: Optional[int]


class SupervisionInfo(TypedDict):
    """What a supervision event says (``cluster_event``'s fields by name). Names come from
    ``cluster.h`` (``CLUSTER_DRAIN_TERM`` is ``'term'``, ``CLUSTER_BREAKER_HALF_OPEN`` is
    ``'half_open'``); a field an event does not use is None or 0.

    - ``state``: ``'draining'``: the drain's stage, ``'disconnect'``, ``'term'`` (SIGTERM
      sent) or ``'kill'`` (SIGKILL sent); ``'breaker'``: ``'closed'``, ``'open'`` or
      ``'half_open'``; ``'rollout'``: ``'started'``, ``'step'``, ``'done'`` or
      ``'aborted'``; ``'control'``: the action, ``'reload'``, ``'scale_up'``,
      ``'scale_down'``, ``'stop_graceful'``, ``'stop_fast'``, ``'upgrade'`` or ``'none'``;
      ``'upgrade'`` (a hot upgrade of the primary, :func:`libcluster.upgrade`):
      ``'started'`` (old primary: the new one runs and has the listeners), ``'ready'``
      (both: the new primary's workers are ready, the old one hands over), ``'done'`` (new
      primary: the old one is gone) or ``'aborted'`` (old primary: the new one failed and
      was killed; nothing changed).
    - ``reason``: ``'draining'``: ``'user'``, ``'rollout'``, ``'recycle'``, ``'stuck'``,
      ``'scale_down'``, ``'stop'``, ``'boot_timeout'`` or ``'aborted'``; ``'recycle'``:
      ``'connections'``, ``'rss'`` or ``'age'``.
    - ``generation``: ``'rollout'``: the generation rolled out to.
    - ``delay_ms``: ``'respawn'``: the delay before the fork; ``'stuck'``: how long its
      connections waited.
    - ``count``: ``'respawn'``: deaths in a row; ``'breaker'``: boot failures in the
      window; ``'rollout'``: old workers replaced so far.
    - ``signal``: ``'control'``: the signal acted on (None for :func:`libcluster.control`).
    - ``pid``: ``'upgrade'``: the other primary's pid (0 for other events).
    - ``error``: ``'upgrade'`` ``'aborted'``: why, a negative errno (``-ECHILD``: the new
      primary exited; ``-EPIPE``/``-ECONNRESET``: it closed its channel; ``-ETIMEDOUT``: not
      ready in time); 0 otherwise.
    """

    state: Optional[str]
    reason: Optional[str]
    generation: int
    delay_ms: int
    count: int
    signal: Optional[_signal.Signals]
    pid: int
    error: int


class WorkerStats(TypedDict):
    """One worker's figures (:func:`libcluster.worker_stats`, ``Worker.stats()``, and each
    entry of :func:`libcluster.stats`'s ``per_worker``). Of the connections the primary
    hands out, ``handed == received + queued + rerouted + lost`` at every moment.

    ``id``, ``pid``, ``generation``; ``alive`` (the process lives), ``ready``,
    ``draining``; once gone, ``exit`` (``'asked'``: drained, disconnected or stopped on
    purpose; ``'crash'``: died after it was ready; ``'boot_failure'``: died, or was stopped
    at its boot timeout, before it was ready; None while alive) with ``exit_code`` (or -1)
    and ``exit_signal`` (or 0); ``forked_ms`` and ``ready_ms`` (milliseconds on
    supervision's clock, -1: not yet); ``handed`` (connections given to it), ``received``
    (taken by its program), ``queued`` (handed, not yet received), ``rerouted`` (taken back
    and dealt to another worker), ``lost`` (0 by design); ``handoff_us`` (accept to handoff
    in microseconds: ``{'p50', 'p99', 'max'}``), ``rss_bytes`` (its resident size).
    """

    id: int
    pid: int
    generation: int
    alive: bool
    ready: bool
    draining: bool
    exit: Optional[str]
    exit_code: int
    exit_signal: int
    forked_ms: int
    ready_ms: int
    handed: int
    received: int
    queued: int
    rerouted: int
    lost: int
    handoff_us: Dict[str, int]
    rss_bytes: int


class ClusterStats(TypedDict):
    """The cluster's figures (:func:`libcluster.stats`): ``target`` (workers to keep, 0: no
    respawn), ``workers`` (alive), ``ready`` (ready and not draining), ``draining``,
    ``generation`` (1, then +1 per completed rolling restart), ``breaker`` (``'closed'``,
    ``'open'`` or ``'half_open'``), ``respawns`` (forks that replaced dead workers),
    ``rollout`` (the generation a rolling restart is moving to, 0 when none runs),
    ``stopping`` (``'no'``, ``'graceful'`` or ``'fast'``) and ``per_worker`` (every worker
    alive, then the most recently gone ones: :class:`WorkerStats`)."""

    target: int
    workers: int
    ready: int
    draining: int
    generation: int
    breaker: str
    respawns: int
    rollout: int
    stopping: str
    per_worker: List[WorkerStats]


# Supervision's events that concern one worker: emitted on it, then on the cluster.
_WORKER_NOTICES = ("ready", "draining", "stuck", "recycle")
# The names of each notice's `state` and `reason` values.
_STATE_NAMES = {"draining": _ffi.DRAIN_STAGES, "breaker": _ffi.BREAKER_STATES,
                "rollout": _ffi.ROLLOUT_STATES, "control": _ffi.ACTIONS, "upgrade": _ffi.UPGRADE_STATES}
_REASON_NAMES = {"draining": _ffi.DRAIN_REASONS, "recycle": _ffi.RECYCLE_REASONS}


class _Cluster(EventEmitter):
    EVENTS = ("fork", "online", "listening", "message", "disconnect", "exit", "error", "setup",
              *_ffi.SUPERVISION_EVENTS.values())


_cluster = _Cluster()
on = _cluster.on
once = _cluster.once
off = _cluster.off
emit = _cluster.emit
listener_count = _cluster.listener_count


# --------------------------------------------------------------------------- roles

#: True in the primary (no ``NODE_UNIQUE_ID`` in the environment at start-up).
is_primary: bool = bool(lib.cluster_is_primary())
#: True in a worker. Importing libcluster in a worker starts it: it takes the IPC
#: channel and tells the primary it is ``online``.
is_worker: bool = bool(lib.cluster_is_worker())

_signal_enum = {int(s): s for s in _signal.Signals}


def _signal_of(sig: Union[int, str, _signal.Signals]) -> int:
    if isinstance(sig, str):
        name = sig.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return int(_signal.Signals[name])
        except KeyError:
            raise ValueError(f"unknown signal {sig!r}") from None
    return int(sig)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _fd_of(sock: Optional[SocketLike]) -> int:
    if sock is None:
        return -1
    if isinstance(sock, int):
        return sock
    return int(sock.fileno())


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
        check(lib.cluster_kill(self.id, _signal_of(sig)))

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

# Primary: every Worker object by id (kept so listeners and identity survive).
_registry: Dict[int, Worker] = {}
# Primary: ids forked whose 'exit' event has not been dispatched yet (run() waits for them).
_awaiting_exit: "set[int]" = set()

#: Node's ``cluster.settings``: what :func:`setup_primary` was given so far.
settings: Dict[str, Any] = {}


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


# --------------------------------------------------------------------------- primary API


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


_forks = 0  # how many fork() calls succeeded (run() disconnects late ones while stopping)

_STDIO = {"inherit": _ffi.STDIO_INHERIT, "pipe": _ffi.STDIO_PIPE, "ignore": _ffi.STDIO_IGNORE}
_UNSET: Any = object()


def _cstr_array(items: Iterable[Any]) -> Any:
    enc = [os.fsencode(x) if not isinstance(x, bytes) else x for x in items]
    return (ctypes.c_char_p * (len(enc) + 1))(*enc, None)


def setup_primary(
    *,
    exec: Optional[str] = None,
    args: Optional[Sequence[str]] = None,
    cwd: Optional[Union[str, "os.PathLike[str]"]] = None,
    env: Optional[Mapping[str, str]] = None,
    silent: Optional[bool] = None,
    stdio: Optional[Sequence[Union[str, int, Any]]] = None,
    uid: Optional[int] = None,
    gid: Optional[int] = None,
    serialization: Optional[str] = None,
    scheduling_policy: Optional[Union[int, str]] = None,
    max_in_flight: Optional[int] = None,
    least_loaded: Optional[bool] = None,
    max_servers: Optional[int] = None,
) -> None:
    """Node's ``cluster.setupPrimary()``: changes what later :func:`fork` calls run.

    Settings accumulate: arguments left out (None) keep their value.

    - ``exec``: the program to run (a path, or a name looked up on PATH); default: this
      program (the same interpreter and argv). ``args``: its arguments after argv[0].
      For another Python script: ``exec=sys.executable, args=['worker.py']``; for a Node
      worker: ``exec='node', args=['worker.js']``.
    - ``cwd``; ``env``: variables added to every worker's environment.
    - ``silent``: pipe the worker's stdio to the primary (``worker.stdout`` ...);
      ``stdio``: three entries of 'inherit', 'pipe', 'ignore', an fd or a file object.
    - ``uid``/``gid``; ``serialization``: only 'json' is supported;
      ``scheduling_policy``: 'rr'/``SCHED_RR``, 'none'/``SCHED_NONE`` or 'reuseport'/``SCHED_REUSEPORT`` (before the first fork).
    - libcluster extensions (round-robin, libcluster workers only): ``max_in_flight``,
      connections a worker may be handed before it accepted the first (Node: 1);
      ``least_loaded``: hand each connection to the worker with the fewest pending;
      ``max_servers``: most servers one worker may hold (default 64).
    """
    s = _ffi.Settings.unchanged()
    keep: List[Any] = []
    given: Dict[str, Any] = {}
    if exec is not None:
        s.exec = os.fsencode(exec)
        given["exec"] = exec
    if args is not None:
        arr = _cstr_array(args)
        keep.append(arr)
        s.args = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
        given["args"] = list(args)
    if cwd is not None:
        s.cwd = os.fsencode(cwd)
        given["cwd"] = os.fspath(cwd)
    if env is not None:
        arr = _cstr_array(f"{k}={v}" for k, v in env.items())
        keep.append(arr)
        s.env = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
        given["env"] = dict(env)
    if silent is not None:
        s.silent = 1 if silent else 0
        given["silent"] = bool(silent)
    if stdio is not None:
        entries = list(stdio)
        if len(entries) == 4 and entries[3] == "ipc":
            entries = entries[:3]
        if len(entries) != 3:
            raise ValueError("stdio must have 3 entries (stdin, stdout, stderr)")
        vals = []
        for e in entries:
            if isinstance(e, str):
                if e not in _STDIO:
                    raise ValueError(f"stdio entry {e!r}: expected 'inherit', 'pipe', 'ignore' or an fd")
                vals.append(_STDIO[e])
            elif e is None:
                vals.append(_ffi.STDIO_INHERIT)
            else:
                vals.append(_fd_of(e))
        arr3 = (ctypes.c_int * 3)(*vals)
        keep.append(arr3)
        s.stdio = ctypes.cast(arr3, ctypes.POINTER(ctypes.c_int))
        given["stdio"] = entries
    if uid is not None:
        s.uid = int(uid)
        given["uid"] = uid
    if gid is not None:
        s.gid = int(gid)
        given["gid"] = gid
    if serialization is not None:
        s.serialization = serialization.encode()
        given["serialization"] = serialization
    if scheduling_policy is not None:
        if isinstance(scheduling_policy, str):
            policies = {"rr": SCHED_RR, "none": SCHED_NONE, "reuseport": SCHED_REUSEPORT}
            if scheduling_policy.lower() not in policies:
                raise ValueError("scheduling_policy must be 'rr', 'none', 'reuseport', SCHED_RR, SCHED_NONE or SCHED_REUSEPORT")
            s.sched_policy = policies[scheduling_policy.lower()]
        else:
            s.sched_policy = int(scheduling_policy)
        given["scheduling_policy"] = scheduling_policy
    if max_in_flight is not None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        s.max_in_flight = int(max_in_flight)
        given["max_in_flight"] = max_in_flight
    if least_loaded is not None:
        s.least_loaded = 1 if least_loaded else 0
        given["least_loaded"] = bool(least_loaded)
    if max_servers is not None:
        if max_servers < 1:
            raise ValueError("max_servers must be >= 1")
        s.max_servers = int(max_servers)
        given["max_servers"] = max_servers
    check(lib.cluster_setup_primary(ctypes.byref(s)))
    settings.update(given)
    _cluster.emit("setup", dict(settings))


_drained_callbacks: List[Callable[[], Any]] = []
_deferred: List[BaseException] = []


def _drained(_event: Any, _userdata: Any) -> None:
    # Runs inside cluster_poll_event on the dispatching thread; exceptions are re-raised
    # by _poll_one once the call has returned.
    callbacks = _drained_callbacks[:]
    del _drained_callbacks[:]
    for cb in callbacks:
        try:
            cb()
        except BaseException as e:  # noqa: BLE001 - re-raised after the C call returns
            _deferred.append(e)


_on_drained = _ffi.EVENT_CB(_drained)  # a module global: stays referenced while registered


def disconnect(callback: Optional[Callable[[], Any]] = None) -> int:
    """Node's ``cluster.disconnect([callback])``: disconnects every worker. ``callback``
    runs (from :func:`run`/:func:`dispatch`) once ``workers`` is empty. Returns how many
    workers were told to disconnect."""
    if callback is not None:
        _drained_callbacks.append(callback)
    # _on_drained is a module global, so it stays referenced while registered.
    return check(lib.cluster_disconnect(_on_drained, None))


# --------------------------------------------------------------------------- events in

_stop_requested = False
_this_disconnected = False


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
            target: EventEmitter = worker if worker is not None else _cluster
            delivered = target.emit("message", message, handle)
        else:
            w = _worker_by_id(ev.worker_id, ev.pid)
            delivered = w.emit("message", message, handle)
            delivered = _cluster.emit("message", w, message, handle) or delivered
        if handle is not None and not delivered:
            handle.close()
        return
    if kind == _ffi.EVENT_ERROR:
        exc = _ffi.error_for(ev.error or _ffi.E_PROTOCOL, data or "")
        if ev.worker_id == 0:
            if worker is not None:
                handled = worker.emit("error", exc)
            else:
                handled = _cluster.emit("error", None, exc)
        else:
            w = _worker_by_id(ev.worker_id, ev.pid)
            handled = w.emit("error", exc)
            handled = _cluster.emit("error", w, exc) or handled
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
        _cluster.emit("fork", w)
    elif kind == _ffi.EVENT_ONLINE:
        w.emit("online")
        _cluster.emit("online", w)
    elif kind == _ffi.EVENT_LISTENING:
        info: ListeningAddress = {
            "addressType": _address_type(ev.address_type),
            "address": address,
            "port": ev.port,
            "fd": ev.listening_fd if ev.listening_fd >= 0 else None,
        }
        w.emit("listening", info)
        _cluster.emit("listening", w, info)
    elif kind == _ffi.EVENT_DISCONNECT:
        w.emit("disconnect")
        _cluster.emit("disconnect", w)
    elif kind == _ffi.EVENT_EXIT:
        _awaiting_exit.discard(ev.worker_id)
        code: Optional[int] = None if ev.signal else ev.exit_code
        sig: Optional[_signal.Signals] = _signal_enum.get(ev.signal, ev.signal) if ev.signal else None
        w.emit("exit", code, sig)
        _cluster.emit("exit", w, code, sig)


def _emit_supervision(name: str, ev: Any) -> None:
    if name == "ready":
        w = _worker_by_id(ev.worker_id, ev.pid)
        w.emit("ready")
        _cluster.emit("ready", w)
        return
    states, reasons = _STATE_NAMES.get(name), _REASON_NAMES.get(name)
    sig = _signal_enum.get(ev.signal, None) if ev.signal else None
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
        _cluster.emit(name, w, info)
    else:
        _cluster.emit(name, info)


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


def set_max_message(size: int) -> None:
    """Caps one IPC message (a JSON line) on every channel of this process (default 16 MiB;
    1 KiB to 1 GiB); a peer sending more has its channel closed with a protocol error."""
    if not _ffi.has("cluster_set_max_message"):
        raise NotImplementedError("the loaded libcluster has no cluster_set_max_message")
    check(lib.cluster_set_max_message(int(size)))


def allow_bind(address: Optional[str] = None, port: int = -2) -> None:
    """Primary: adds an entry to the bind allowlist. Once there is one, a worker asking for
    an address/port no entry matches gets ``PermissionError`` (EACCES) from ``get_server``.
    ``address`` None matches any; ``port`` -2 matches any."""
    if not _ffi.has("cluster_allow_bind"):
        raise NotImplementedError("the loaded libcluster has no cluster_allow_bind")
    check(lib.cluster_allow_bind(address.encode() if address is not None else None, int(port)))


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


def leave() -> None:
    """Worker: leaves the cluster on its own (``worker.disconnect()``), ignoring a
    disconnect already under way or done. Its servers close, so the serving loops return."""
    if worker is not None:
        try:
            worker.disconnect()
        except _ffi.ChannelClosedError:
            pass


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
        self.forks = _forks
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
        if _forks != self.forks and not _supervising:  # an 'exit' listener forked a replacement: stop it too
            self.forks = _forks
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
            if is_worker and _this_disconnected and worker is not None and not worker.is_connected():
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
