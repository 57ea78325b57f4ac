"""Node's ``EventEmitter``, small: the base of the cluster object, :class:`Worker` and
:class:`ThisWorker`."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])


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
