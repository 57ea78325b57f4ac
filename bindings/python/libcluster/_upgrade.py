"""Hot upgrade of the primary (``cluster_upgrade``, ``docs/upgrade.md``): the old primary
starts the program again (the interpreter it runs in, with the same arguments: ``python
app.py`` runs ``python app.py``, the script as it is on disk now) as a new primary, hands it
the listening sockets, and once the new primary's workers are ready it stops accepting,
forwards what no worker took, drains its own workers and :func:`libcluster.run` returns.

Progress comes as ``'upgrade'`` events on the cluster (a :class:`SupervisionInfo` whose
``state`` is ``'started'``, ``'ready'``, ``'done'`` or ``'aborted'``, ``pid`` the other
primary's and, once aborted, ``error`` the reason as a negative errno).
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional

from . import _ffi
from ._ffi import check

_INT_MAX = 2**31 - 1


def _options(ready_timeout: Optional[float]) -> Any:
    """A ``cluster_upgrade_options`` from ``cluster_upgrade_options_init``, with the timeout."""
    o = _ffi.header.struct("cluster_upgrade_options")()
    check(_ffi.need("cluster_upgrade_options_init")(ctypes.byref(o), ctypes.sizeof(o)))
    if ready_timeout is not None:
        if isinstance(ready_timeout, bool) or not isinstance(ready_timeout, (int, float)):
            raise TypeError(f"ready_timeout is in seconds: a number, not {type(ready_timeout).__name__}")
        ms = round(ready_timeout * 1000)
        if not 1 <= ms <= _INT_MAX:
            raise ValueError(f"ready_timeout must be 0.001 to {_INT_MAX / 1000:.0f} seconds (got {ready_timeout!r})")
        o.ready_timeout_ms = ms
    return o


def upgrade(ready_timeout: Optional[float] = None) -> int:
    """Primary: a hot upgrade of this primary (``cluster_upgrade``). Starts this program
    again as a new primary (the executable and arguments it was started with, so a Python
    program runs its interpreter on its script, as it is on disk now; the environment
    without ``NODE_*`` and ``LISTEN_*``) and gives it the listening sockets. Both accept
    on them until the new primary's workers are ready (``'upgrade'`` ``'ready'``); then this
    one stops accepting, forwards the connections no worker received, drains its workers
    (the supervisor's drain clock, none replaced) and :func:`run` returns once they are
    gone: let the program end then. A new primary that exits, or is not ready within
    ``ready_timeout`` seconds (None: 60), is killed, and this primary carries on
    unchanged (``'upgrade'`` ``'aborted'``, with an ``'error'`` event saying why).

    Returns the new primary's pid. Raises :class:`BusyError` (an upgrade, a rolling
    restart or a stop is under way, or this primary already handed over),
    :class:`WrongRoleError` in a worker, ``OSError`` when the program cannot be started,
    ``ValueError``/``TypeError`` for a bad ``ready_timeout``.

    Listening ports must be fixed (a worker asking for port 0 gets a new port), and the
    round-robin policy (the default) is the one handed over without a lost connection.
    """
    o = _options(ready_timeout)
    return check(_ffi.need("cluster_upgrade")(ctypes.byref(o)))


def is_upgrade() -> bool:
    """Primary: True when this primary was started by a hot upgrade of the one before it
    (``cluster_is_upgrade``). Raises :class:`WrongRoleError` in a worker."""
    return bool(check(_ffi.need("cluster_is_upgrade")()))
