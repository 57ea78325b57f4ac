"""asyncio: ``start_server`` (the cluster's ``asyncio.start_server``) and event dispatch."""

from __future__ import annotations

import asyncio
import functools
import signal
import threading
from typing import Any, Awaitable, Callable, Optional, Set, Union

from . import _cluster, _dispatch, _signals, _this_worker
from ._server import Server, get_server

ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Union[None, Awaitable[None]]]


class AsyncServer:
    """What :func:`start_server` returns: accepts from a libcluster :class:`Server` with
    ``loop.add_reader`` and hands each connection to ``client_connected_cb`` as a
    ``(StreamReader, StreamWriter)`` pair, as ``asyncio.start_server`` does."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: Server, cb: ClientConnected, limit: int) -> None:
        self._loop = loop
        #: The underlying libcluster server.
        self.server = server
        self._cb = cb
        self._limit = limit
        self._closed: asyncio.Future[None] = loop.create_future()
        self._tasks: Set[asyncio.Task[Any]] = set()
        loop.add_reader(server.fileno(), self._on_readable)

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    def is_serving(self) -> bool:
        """True until the server is closed."""
        return not self._closed.done()

    def _on_readable(self) -> None:
        while not self._closed.done():
            try:
                sock, _addr = self.server.accept()
            except BlockingIOError:
                return
            except OSError:
                # EBADF: a disconnect closed the server.
                self.close()
                return
            task = self._loop.create_task(self._connected(sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connected(self, sock: Any) -> None:
        reader = asyncio.StreamReader(limit=self._limit, loop=self._loop)
        protocol = asyncio.StreamReaderProtocol(reader, self._cb, loop=self._loop)
        try:
            await self._loop.connect_accepted_socket(lambda: protocol, sock)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        """Stops accepting (connections not yet accepted go to other workers)."""
        if self._closed.done():
            return
        fd = self.server.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
        self.server.close()
        self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Waits until the server is closed (by :meth:`close` or a disconnect)."""
        await asyncio.shield(self._closed)

    async def serve_forever(self, *, handle_signals: bool = True) -> None:
        """Waits until the server is closed, e.g. by the primary's disconnect.

        With ``handle_signals``, on the main thread and unless the program set its own
        SIGINT handler, Ctrl-C closes the server gracefully instead of raising
        ``KeyboardInterrupt`` (a worker leaves the cluster: ``worker.disconnect()``);
        connections in progress are left to finish.
        """
        installed = False
        if (handle_signals and threading.current_thread() is threading.main_thread()
                and _signals.is_default(signal.SIGINT, signal.getsignal(signal.SIGINT))):
            self._loop.add_signal_handler(signal.SIGINT, self._on_sigint)
            installed = True
        try:
            await self.wait_closed()
        finally:
            if installed:
                self._loop.remove_signal_handler(signal.SIGINT)

    def _on_sigint(self) -> None:
        if _cluster.is_worker:
            # worker.disconnect() waits for the primary's ack: not on the loop's thread.
            fut = self._loop.run_in_executor(None, _this_worker.leave)
            fut.add_done_callback(lambda _f: self.close())
        else:
            self.close()

    async def __aenter__(self) -> "AsyncServer":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        await self.wait_closed()


async def start_server(
    client_connected_cb: ClientConnected,
    host: Optional[str] = None,
    port: int = 0,
    *,
    limit: int = 2**16,
    **options: Any,
) -> AsyncServer:
    """The cluster's ``asyncio.start_server``: in a worker, the primary binds
    ``host``:``port`` and hands connections round-robin; each one calls
    ``client_connected_cb(reader, writer)`` (a plain function or a coroutine function).
    ``options``: :func:`libcluster.get_server` options.
    """
    loop = asyncio.get_running_loop()
    make = functools.partial(get_server, host, port, nonblocking=True, **options)
    server = await loop.run_in_executor(None, make)  # waits for the primary's reply
    return AsyncServer(loop, server, client_connected_cb, limit)


def add_reader(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Dispatches libcluster's events from ``loop`` (default: the running loop):
    ``loop.add_reader(libcluster.fileno(), libcluster.dispatch)``."""
    (loop or asyncio.get_running_loop()).add_reader(_dispatch.fileno(), _dispatch.dispatch)


def remove_reader(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Undoes :func:`add_reader`."""
    (loop or asyncio.get_running_loop()).remove_reader(_dispatch.fileno())

