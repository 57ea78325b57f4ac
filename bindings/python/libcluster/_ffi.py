"""Library loading, its ctypes declarations (read from its ``cluster.h``), error mapping.

Private: the public API is in ``libcluster``. Every function here is called through
``ctypes.CDLL``, so each foreign call releases the GIL while it runs (the blocking ones:
``cluster_get_server``, ``cluster_worker_disconnect``, ``cluster_fork``).
"""

import ctypes
import ctypes.util
import errno as _errno
import os
import typing as _t

from . import _header

__all__ = [
    "lib",
    "library_path",
    "header",
    "check",
    "raise_code",
    "ClusterError",
    "Event",
    "Settings",
    "ServerOptions",
    "Supervisor",
    "WorkerStats",
    "Stats",
    "EVENT_CB",
    "need",
]

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _find_library() -> str:
    """``$LIBCLUSTER_LIBRARY``, else the copy bundled in this package, else the system's."""
    env = os.environ.get("LIBCLUSTER_LIBRARY")
    if env:
        if not os.path.exists(env):
            raise ImportError(f"LIBCLUSTER_LIBRARY={env!r}: no such file")
        return env
    bundled = os.path.join(_PKG_DIR, "libcluster.so")
    if os.path.exists(bundled):
        return bundled
    found = ctypes.util.find_library("cluster")
    if found:
        return found
    raise ImportError(
        "libcluster.so not found: install the package with `pip install ./bindings/python` "
        "(which builds and bundles it), or set LIBCLUSTER_LIBRARY to target/debug/libcluster.so"
    )


def _loaded_path(name: str) -> str:
    """The file the dynamic loader mapped for ``name`` (``find_library`` gives a bare name)."""
    if os.path.isabs(name):
        return os.path.realpath(name)
    base = os.path.basename(name)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").split(None, 5)[-1]
                if os.path.basename(path) == base:
                    return os.path.realpath(path)
    except OSError:
        pass
    return name


def header_candidates(library: str) -> _t.List[str]:
    """Where ``cluster.h`` is looked for, in order: ``$LIBCLUSTER_INCLUDE/cluster.h``, next
    to the library (the installed package ships both), ``<prefix>/include`` for a library
    in ``<prefix>/lib`` (``make install``), and ``<repo>/include`` for a library in
    ``<repo>/target/<profile>`` (a checkout)."""
    include = os.environ.get("LIBCLUSTER_INCLUDE")
    if include:
        return [os.path.join(include, "cluster.h")]
    out = []
    for lib_path in dict.fromkeys([os.path.abspath(library), os.path.realpath(library)]):
        d = os.path.dirname(lib_path)
        out.append(os.path.join(d, "cluster.h"))
        out.append(os.path.join(d, os.pardir, "include", "cluster.h"))
        out.append(os.path.join(d, os.pardir, os.pardir, "include", "cluster.h"))
    return [os.path.normpath(p) for p in dict.fromkeys(out)]


class _SettingsBase(ctypes.Structure):
    @classmethod
    def unchanged(cls) -> _t.Any:
        """Every field "unchanged", from ``cluster_settings_init(&s, sizeof s)``."""
        s = cls()
        check(lib.cluster_settings_init(ctypes.byref(s), ctypes.sizeof(s)))
        return s


class _ServerOptionsBase(ctypes.Structure):
    @classmethod
    def defaults(cls) -> _t.Any:
        """The defaults, from ``cluster_server_options_init(&o, sizeof o)``."""
        o = cls()
        check(lib.cluster_server_options_init(ctypes.byref(o), ctypes.sizeof(o)))
        return o


class _SupervisorBase(ctypes.Structure):
    @classmethod
    def defaults(cls) -> _t.Any:
        """What a production user would pick, from ``cluster_supervisor_init(&s, sizeof s)``."""
        s = cls()
        check(lib.cluster_supervisor_init(ctypes.byref(s), ctypes.sizeof(s)))
        return s


def _load_header(library: str) -> _header.Header:
    candidates = header_candidates(library)
    bases = {"cluster_settings": _SettingsBase, "cluster_server_options": _ServerOptionsBase,
             "cluster_supervisor": _SupervisorBase}
    for path in candidates:
        if os.path.exists(path):
            return _header.load(path, bases)
    raise _header.HeaderError(
        f"cluster.h (libcluster's header, read for its constants and struct layouts) not found "
        f"for {library}; looked in: {', '.join(candidates)}. Set LIBCLUSTER_INCLUDE to the "
        f"directory that holds it"
    )


library_path = _loaded_path(_find_library())
lib: _t.Any = ctypes.CDLL(library_path, use_errno=False)
#: The parsed ``cluster.h`` shipped with the library: every constant and layout below.
header = _load_header(library_path)

# Prototypes: every function the header declares and the loaded library exports (an
# older library may lack the newest calls; `has()` tells).
for _name, (_res, _args) in header.functions.items():
    if hasattr(lib, _name):
        _fn = getattr(lib, _name)
        _fn.restype = _res
        _fn.argtypes = _args
del _name, _res, _args, _fn

C = header.constant

# Result codes below -10000 (CLUSTER_E_*).
E_PANIC = C("CLUSTER_E_PANIC")
E_WRONG_ROLE = C("CLUSTER_E_WRONG_ROLE")
E_PROTOCOL = C("CLUSTER_E_PROTOCOL")
E_FORKED = C("CLUSTER_E_FORKED")
E_CLOSED = C("CLUSTER_E_CLOSED")
E_UNSUPPORTED = C("CLUSTER_E_UNSUPPORTED")
E_BREAKER_OPEN = C("CLUSTER_E_BREAKER_OPEN")
E_BUSY = C("CLUSTER_E_BUSY")

# cluster_event_type
EVENT_NONE = C("CLUSTER_EVENT_NONE")
EVENT_FORK = C("CLUSTER_EVENT_FORK")
EVENT_ONLINE = C("CLUSTER_EVENT_ONLINE")
EVENT_LISTENING = C("CLUSTER_EVENT_LISTENING")
EVENT_MESSAGE = C("CLUSTER_EVENT_MESSAGE")
EVENT_DISCONNECT = C("CLUSTER_EVENT_DISCONNECT")
EVENT_EXIT = C("CLUSTER_EVENT_EXIT")
EVENT_ERROR = C("CLUSTER_EVENT_ERROR")
# Supervision's kinds: {value: the event's name in Python} ('ready', 'draining', ...): every
# kind from CLUSTER_EVENT_READY on, as the header lists them.
SUPERVISION_EVENTS: _t.Dict[int, str] = {
    v: k[len("CLUSTER_EVENT_"):].lower() for k, v in header.enums["cluster_event_type"].items()
    if C("CLUSTER_EVENT_READY") <= v < C("CLUSTER_EVENT_COUNT")
}

# address_type
ADDRESS_IPV4 = C("CLUSTER_ADDRESS_IPV4")
ADDRESS_IPV6 = C("CLUSTER_ADDRESS_IPV6")
ADDRESS_PIPE = C("CLUSTER_ADDRESS_PIPE")
ADDRESS_UDP4 = C("CLUSTER_ADDRESS_UDP4")
ADDRESS_UDP6 = C("CLUSTER_ADDRESS_UDP6")

# cluster_settings.stdio
STDIO_INHERIT = C("CLUSTER_STDIO_INHERIT")
STDIO_PIPE = C("CLUSTER_STDIO_PIPE")
STDIO_IGNORE = C("CLUSTER_STDIO_IGNORE")

SCHED_NONE = C("CLUSTER_SCHED_NONE")
SCHED_RR = C("CLUSTER_SCHED_RR")
SCHED_REUSEPORT = C("CLUSTER_SCHED_REUSEPORT")

# cluster_worker_state: {value: Node's name} ('none', 'online', ..., 'dead').
WORKER_STATES: _t.Dict[int, str] = {
    v: k[len("CLUSTER_WORKER_"):].lower() for k, v in header.enums["cluster_worker_state"].items()
}


def _names(prefix: str) -> _t.Dict[int, str]:
    """``{value: name}`` of the header's ``#define <prefix>NAME value``, the name lowercased
    (``CLUSTER_BREAKER_HALF_OPEN`` -> ``'half_open'``)."""
    return {v: k[len(prefix):].lower() for k, v in header.defines.items() if k.startswith(prefix)}


# The supervision values by name, for events, stats and arguments.
DRAIN_STAGES = _names("CLUSTER_DRAIN_")  # cluster_event.state of DRAINING
DRAIN_REASONS = _names("CLUSTER_REASON_")  # cluster_event.reason of DRAINING
RECYCLE_REASONS = _names("CLUSTER_RECYCLE_")  # cluster_event.reason of RECYCLE
BREAKER_STATES = _names("CLUSTER_BREAKER_")  # cluster_event.state of BREAKER
ROLLOUT_STATES = _names("CLUSTER_ROLLOUT_")  # cluster_event.state of ROLLOUT
UPGRADE_STATES = _names("CLUSTER_UPGRADE_")  # cluster_event.state of UPGRADE
ACTIONS = _names("CLUSTER_ACT_")  # cluster_signal_map, cluster_control, CONTROL's state
READY_ON = _names("CLUSTER_READY_")  # cluster_supervisor.ready_on
EXIT_KINDS = _names("CLUSTER_EXIT_")  # cluster_worker_stats.exit_kind

#: ``cluster_event`` (its ``address``/``data`` read as ``bytes`` copies, or None).
Event: _t.Any = header.struct("cluster_event")
EVENT_CB: _t.Any = header.callbacks["cluster_event_cb"]


#: ``cluster_settings``; ``Settings.unchanged()`` is what ``cluster_settings_init`` gives.
Settings: _t.Any = header.struct("cluster_settings")
#: ``cluster_server_options``; ``ServerOptions.defaults()``: ``cluster_server_options_init``.
ServerOptions: _t.Any = header.struct("cluster_server_options")

#: ``cluster_supervisor``; ``Supervisor.defaults()`` is what ``cluster_supervisor_init`` gives.
Supervisor: _t.Any = header.struct("cluster_supervisor")
#: ``cluster_worker_stats`` and ``cluster_stats`` (``size`` set by the caller).
WorkerStats: _t.Any = header.struct("cluster_worker_stats")
Stats: _t.Any = header.struct("cluster_stats")

#: Every ``CLUSTER_E_*`` code the header defines.
LIBRARY_CODES = {v for k, v in header.defines.items() if k.startswith("CLUSTER_E_")}


def has(name: str) -> bool:
    """Whether the loaded library exports ``name``."""
    return hasattr(lib, name)


def need(name: str) -> _t.Any:
    """The library's function ``name``; ``NotImplementedError`` if the loaded library (older
    than its header) does not export it."""
    if not hasattr(lib, name):
        raise NotImplementedError(f"the loaded libcluster ({library_path}) has no {name}")
    return getattr(lib, name)


def string_at(p: _t.Union[bytes, int, None]) -> _t.Optional[str]:
    """Decodes a C string from the library (``bytes`` from a ``char *`` field or result,
    or an address) as UTF-8; ``None`` for NULL."""
    if not p:
        return None
    raw = p if isinstance(p, bytes) else ctypes.string_at(p)
    return raw.decode("utf-8", "replace")


def last_error() -> str:
    """``cluster_last_error()``: the message of this thread's last failed call."""
    return string_at(lib.cluster_last_error()) or ""


def strerror(code: int) -> str:
    """``cluster_strerror(code)``: the static description of a result code."""
    return string_at(lib.cluster_strerror(code)) or ""


class ClusterError(OSError):
    """A libcluster failure that is not an errno: a ``CLUSTER_E_*`` code (below -10000).

    ``code`` is the library's negative code (e.g. ``-10005`` for a closed channel) and
    ``strerror`` its message, which is also ``str(exc)``. ``errno`` is None: Python's
    ``errno`` is a positive errno number and these codes have none; catch the subclass
    (e.g. :class:`ChannelClosedError`) or compare ``code``. A failure with an errno
    raises the standard ``OSError`` subclass instead (``PermissionError``, ...).
    """

    #: The library's negative ``CLUSTER_E_*`` code.
    code: int

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.strerror = message

    def __str__(self) -> str:
        return self.strerror or ""

    def __reduce__(self) -> _t.Tuple[_t.Any, ...]:
        return (type(self), (self.code, self.strerror))


class WrongRoleError(ClusterError):
    """The call is not valid in this process's role (e.g. ``fork()`` in a worker)."""


class ProtocolError(ClusterError):
    """A peer broke the IPC protocol."""


class ForkedError(ClusterError):
    """The process was forked (``os.fork``) after libcluster started in its parent."""


class ChannelClosedError(ClusterError):
    """The IPC channel is closed (or a disconnect is under way)."""


class UnsupportedError(ClusterError):
    """Not supported (e.g. ``serialization='advanced'``)."""


class PanicError(ClusterError):
    """An internal panic was caught at the library boundary; the library is still usable."""


class BusyError(ClusterError):
    """Supervision: a rolling restart (or a recycle) or a hot upgrade is under way, or the
    primary is stopping."""


class BreakerOpenError(ClusterError):
    """Supervision: the crash-loop breaker is open (no new worker until it closes, or
    :func:`libcluster.reset_breaker`)."""


_CLUSTER_ERRORS: _t.Dict[int, _t.Type[ClusterError]] = {
    E_PANIC: PanicError,
    E_WRONG_ROLE: WrongRoleError,
    E_PROTOCOL: ProtocolError,
    E_FORKED: ForkedError,
    E_CLOSED: ChannelClosedError,
    E_UNSUPPORTED: UnsupportedError,
    E_BREAKER_OPEN: BreakerOpenError,
    E_BUSY: BusyError,
}

# Linux's errno numbers end at 4095 (as libuv's negative codes): anything further down is
# the library's own, even a code this binding does not know yet.
_MAX_ERRNO = 4095


def error_for(code: int, message: _t.Optional[str] = None) -> OSError:
    """The exception for a negative result ``code`` (see :func:`raise_code`)."""
    if message is None:
        message = last_error() or strerror(code)
    if code in LIBRARY_CODES or code < -_MAX_ERRNO:
        return _CLUSTER_ERRORS.get(code, ClusterError)(code, message)
    # OSError(errno, ...) returns the standard subclass (FileNotFoundError, ...).
    return OSError(-code, message)


def raise_code(code: int, message: _t.Optional[str] = None) -> _t.NoReturn:
    """Raises the exception for a negative result ``code``.

    A negative errno becomes ``OSError(errno, message)`` with the positive errno (so
    Python picks the matching subclass: ``FileNotFoundError``, ``BlockingIOError``, ...);
    a ``CLUSTER_E_*`` code becomes a :class:`ClusterError` subclass.
    """
    raise error_for(code, message)


def check(rc: int) -> int:
    """Returns ``rc`` if it is a success (>= 0); raises for a negative code.

    Must be called on the thread that made the call (the message is per thread).
    """
    if rc < 0:
        raise_code(rc)
    return rc


EAGAIN = _errno.EAGAIN
EBADF = _errno.EBADF
ENOENT = _errno.ENOENT
ESRCH = _errno.ESRCH
