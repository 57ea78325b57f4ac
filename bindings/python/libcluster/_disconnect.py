"""Node's ``cluster.disconnect([callback])``: disconnects every worker; the callbacks run
once none is left."""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from . import _dispatch, _ffi
from ._ffi import check, lib

_drained_callbacks: List[Callable[[], Any]] = []


def _drained(_event: Any, _userdata: Any) -> None:
    # Runs inside cluster_poll_event on the dispatching thread; exceptions are re-raised
    # by _dispatch._poll_one once the call has returned.
    callbacks = _drained_callbacks[:]
    del _drained_callbacks[:]
    for cb in callbacks:
        try:
            cb()
        except BaseException as e:  # noqa: BLE001 - re-raised after the C call returns
            _dispatch._deferred.append(e)


_on_drained = _ffi.EVENT_CB(_drained)  # a module global: stays referenced while registered


def disconnect(callback: Optional[Callable[[], Any]] = None) -> int:
    """Node's ``cluster.disconnect([callback])``: disconnects every worker. ``callback``
    runs (from :func:`run`/:func:`dispatch`) once ``workers`` is empty. Returns how many
    workers were told to disconnect."""
    if callback is not None:
        _drained_callbacks.append(callback)
    # _on_drained is a module global, so it stays referenced while registered.
    return check(lib.cluster_disconnect(_on_drained, None))
