"""ctypes declarations of include/cluster.h, library loading and error mapping.

Private: the public API is in ``libcluster``. Every function here is called through
``ctypes.CDLL``, so each foreign call releases the GIL while it runs (the blocking ones:
``cluster_get_server``, ``cluster_worker_disconnect``, ``cluster_fork``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import os
from typing import NoReturn

__all__ = [
    "lib",
    "library_path",
    "check",
    "raise_code",
    "ClusterError",
    "Event",
    "Settings",
    "ServerOptions",
    "EVENT_CB",
]

# Result codes below -10000 (CLUSTER_E_*).
E_PANIC = -10001
E_WRONG_ROLE = -10002
E_PROTOCOL = -10003
E_FORKED = -10004
E_CLOSED = -10005
E_UNSUPPORTED = -10006

# cluster_event_type
EVENT_NONE = 0
EVENT_FORK = 1
EVENT_ONLINE = 2
EVENT_LISTENING = 3
EVENT_MESSAGE = 4
EVENT_DISCONNECT = 5
EVENT_EXIT = 6
EVENT_ERROR = 7

# address_type
ADDRESS_IPV4 = 4
ADDRESS_IPV6 = 6
ADDRESS_PIPE = -1
ADDRESS_UDP4 = 104
ADDRESS_UDP6 = 106

# cluster_settings.stdio
STDIO_INHERIT = -1
STDIO_PIPE = -2
STDIO_IGNORE = -3

SCHED_NONE = 1
SCHED_RR = 2
SCHED_REUSEPORT = 3

# cluster_worker_state
WORKER_STATES = ("none", "online", "listening", "disconnected", "dead")


class ClusterError(OSError):
    """A libcluster failure that is not an errno (a ``CLUSTER_E_*`` code below -10000).

    ``code`` is the negative library code (e.g. ``-10002`` for the wrong role), ``errno``
    is the same number and ``strerror`` libcluster's message.
    """

    code: int

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code


class Event(ctypes.Structure):
    """``cluster_event``."""

    _fields_ = [
        ("kind", ctypes.c_int),
        ("worker_id", ctypes.c_int),
        ("pid", ctypes.c_int),
        ("exit_code", ctypes.c_int),
        ("signal", ctypes.c_int),
        ("exited_after_disconnect", ctypes.c_int),
        ("port", ctypes.c_int),
        ("address_type", ctypes.c_int),
        ("fd", ctypes.c_int),
        ("error", ctypes.c_int),
        # c_void_p, not c_char_p: the strings are copied explicitly, at once.
        ("address", ctypes.c_void_p),
        ("data", ctypes.c_void_p),
        ("listening_fd", ctypes.c_int),
        ("reserved", ctypes.c_int * 7),
    ]


class Settings(ctypes.Structure):
    """``cluster_settings``."""

    _fields_ = [
        ("size", ctypes.c_size_t),
        ("exec", ctypes.c_char_p),
        ("args", ctypes.POINTER(ctypes.c_char_p)),
        ("cwd", ctypes.c_char_p),
        ("env", ctypes.POINTER(ctypes.c_char_p)),
        ("silent", ctypes.c_int),
        ("stdio", ctypes.POINTER(ctypes.c_int)),
        ("uid", ctypes.c_int),
        ("gid", ctypes.c_int),
        ("serialization", ctypes.c_char_p),
        ("sched_policy", ctypes.c_int),
        # Appended later (the library reads only the fields `size` covers).
        ("max_in_flight", ctypes.c_int),
        ("least_loaded", ctypes.c_int),
        ("max_servers", ctypes.c_int),
    ]

    @classmethod
    def unchanged(cls) -> "Settings":
        """Every field "unchanged", ``size`` = this declaration's size.

        Filled here, like ``cluster_settings_init(&s, sizeof s)`` would (the library
        writes only the ``size`` bytes the caller declares)."""
        return cls(size=ctypes.sizeof(cls), silent=-1, uid=-1, gid=-1, sched_policy=0,
                   max_in_flight=0, least_loaded=-1, max_servers=0)


class ServerOptions(ctypes.Structure):
    """``cluster_server_options``."""

    _fields_ = [
        ("size", ctypes.c_size_t),
        ("backlog", ctypes.c_int),
        ("ipv6_only", ctypes.c_int),
        ("exclusive", ctypes.c_int),
        ("nonblocking", ctypes.c_int),
        ("udp", ctypes.c_int),
        ("reuse_addr", ctypes.c_int),
    ]

    @classmethod
    def defaults(cls) -> "ServerOptions":
        """The defaults, ``size`` = this declaration's size (what
        ``cluster_server_options_init(&o, sizeof o)`` gives)."""
        return cls(size=ctypes.sizeof(cls))


EVENT_CB = ctypes.CFUNCTYPE(None, ctypes.POINTER(Event), ctypes.c_void_p)

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


library_path = _find_library()
lib = ctypes.CDLL(library_path, use_errno=False)

_P = ctypes.POINTER
_int = ctypes.c_int
_cstr = ctypes.c_char_p
_vp = ctypes.c_void_p

_PROTOTYPES = {
    "cluster_last_error": (ctypes.c_void_p, []),
    "cluster_strerror": (ctypes.c_void_p, [_int]),
    "cluster_on": (_int, [_int, EVENT_CB, _vp]),
    "cluster_event_fd": (_int, []),
    "cluster_poll_event": (_int, [_P(Event), _int]),
    "cluster_dispatch": (_int, []),
    "cluster_run": (_int, []),
    "cluster_stop": (_int, []),
    "cluster_send": (_int, [_int, _cstr, _int]),
    "cluster_disconnect_worker": (_int, [_int]),
    "cluster_disconnect": (_int, [EVENT_CB, _vp]),
    "cluster_worker_disconnect": (_int, []),
    "cluster_worker_get_state": (_int, [_int]),
    "cluster_worker_is_connected": (_int, [_int]),
    "cluster_worker_is_dead": (_int, [_int]),
    "cluster_worker_exited_after_disconnect": (_int, [_int]),
    "cluster_is_primary": (_int, []),
    "cluster_is_worker": (_int, []),
    "cluster_worker_id": (_int, []),
    "cluster_fork": (_int, [_P(_cstr)]),
    "cluster_kill": (_int, [_int, _int]),
    "cluster_worker_count": (_int, []),
    "cluster_workers": (_int, [_P(_int), ctypes.c_size_t]),
    "cluster_worker_pid": (_int, [_int]),
    "cluster_settings_init": (_int, [_P(Settings), ctypes.c_size_t]),
    "cluster_worker_stdio": (_int, [_int, _int]),
    "cluster_setup_primary": (_int, [_P(Settings)]),
    "cluster_server_options_init": (_int, [_P(ServerOptions), ctypes.c_size_t]),
    "cluster_get_server": (_int, [_P(_vp), _cstr, _int, _P(ServerOptions)]),
    "cluster_server_fd": (_int, [_vp]),
    "cluster_server_port": (_int, [_vp]),
    "cluster_accept": (_int, [_vp]),
    "cluster_server_close": (_int, [_vp]),
}

# Newer calls: declared when the loaded library has them.
_OPTIONAL = {
    "cluster_set_max_message": (_int, [ctypes.c_size_t]),
    "cluster_allow_bind": (_int, [_cstr, _int]),
}

for _name, (_res, _args) in _PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args

for _name, (_res, _args) in _OPTIONAL.items():
    if hasattr(lib, _name):
        _fn = getattr(lib, _name)
        _fn.restype = _res
        _fn.argtypes = _args


def has(name: str) -> bool:
    """Whether the loaded library exports ``name``."""
    return hasattr(lib, name)


def string_at(p: int | None) -> str | None:
    """Copies a NUL-terminated UTF-8 string out of library memory (``None`` for NULL)."""
    if not p:
        return None
    return ctypes.string_at(p).decode("utf-8", "replace")


def last_error() -> str:
    return string_at(lib.cluster_last_error()) or ""


def strerror(code: int) -> str:
    return string_at(lib.cluster_strerror(code)) or ""


def raise_code(code: int, message: str | None = None) -> NoReturn:
    """Raises the exception for a negative result ``code``.

    A negative errno becomes ``OSError(errno, message)`` (so Python picks the matching
    subclass: ``FileNotFoundError``, ``BlockingIOError``, ...); a ``CLUSTER_E_*`` code
    becomes a :class:`ClusterError` subclass.
    """
    if message is None:
        message = last_error() or strerror(code)
    if code <= -10000:
        raise _CLUSTER_ERRORS.get(code, ClusterError)(code, message)
    raise OSError(-code, message)


def check(rc: int) -> int:
    """Returns ``rc`` if it is a success (>= 0); raises for a negative code.

    Must be called on the thread that made the call (the message is per thread).
    """
    if rc < 0:
        raise_code(rc)
    return rc


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


_CLUSTER_ERRORS: dict[int, type[ClusterError]] = {
    E_PANIC: PanicError,
    E_WRONG_ROLE: WrongRoleError,
    E_PROTOCOL: ProtocolError,
    E_FORKED: ForkedError,
    E_CLOSED: ChannelClosedError,
    E_UNSUPPORTED: UnsupportedError,
}

EAGAIN = _errno.EAGAIN
EBADF = _errno.EBADF
