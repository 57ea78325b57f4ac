"""Messages on the IPC channel: what ``worker.send``/``process.send`` write (JSON, one
line, with an optional socket to pass along) and the cap on one message."""

from __future__ import annotations

import json
import socket
from typing import Any, Optional, Union

from . import _ffi
from ._ffi import check, lib

Handle = Optional[socket.socket]
SocketLike = Union[socket.socket, int, Any]  # a socket, an fd, or anything with fileno()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _fd_of(sock: Optional[SocketLike]) -> int:
    if sock is None:
        return -1
    if isinstance(sock, int):
        return sock
    return int(sock.fileno())


def set_max_message(size: int) -> None:
    """Caps one IPC message (a JSON line) on every channel of this process (default 16 MiB;
    1 KiB to 1 GiB); a peer sending more has its channel closed with a protocol error."""
    if not _ffi.has("cluster_set_max_message"):
        raise NotImplementedError("the loaded libcluster has no cluster_set_max_message")
    check(lib.cluster_set_max_message(int(size)))
