"""Node's ``cluster.setupPrimary()`` and ``cluster.settings``: what later forks run; and
the primary's bind allowlist."""

from __future__ import annotations

import ctypes
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _ffi
from ._cluster import SCHED_NONE, SCHED_REUSEPORT, SCHED_RR, cluster
from ._ffi import check, lib
from ._messages import _fd_of

#: Node's ``cluster.settings``: what :func:`setup_primary` was given so far.
settings: Dict[str, Any] = {}

_STDIO = {"inherit": _ffi.STDIO_INHERIT, "pipe": _ffi.STDIO_PIPE, "ignore": _ffi.STDIO_IGNORE}


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
    cluster.emit("setup", dict(settings))


def allow_bind(address: Optional[str] = None, port: int = -2) -> None:
    """Primary: adds an entry to the bind allowlist. Once there is one, a worker asking for
    an address/port no entry matches gets ``PermissionError`` (EACCES) from ``get_server``.
    ``address`` None matches any; ``port`` -2 matches any."""
    if not _ffi.has("cluster_allow_bind"):
        raise NotImplementedError("the loaded libcluster has no cluster_allow_bind")
    check(lib.cluster_allow_bind(address.encode() if address is not None else None, int(port)))
