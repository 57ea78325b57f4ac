"""Graceful stop on SIGINT/SIGTERM, for the loops the user runs (``run()``, ``serve_forever``),
and signals by name or number.

Private. The C library installs no signal handler; the binding does, but only while one of
its loops runs on the main thread, only for a signal whose handler is still Python's
default (a program's own handler always wins), and restores it when the loop returns.
The handler only records the signal and wakes the loop through a pipe; the loop does the
work (disconnects) outside the handler.
"""

import functools
import os
import signal
import threading
import typing as _t

__all__ = ["SignalStop", "by_number", "is_default", "name", "number"]


def is_default(sig: int, handler: _t.Any) -> bool:
    if sig == signal.SIGINT:
        if handler is signal.default_int_handler:
            return True
        # asyncio.run()'s own SIGINT handler (it cancels the main task, then raises
        # KeyboardInterrupt): a loop of ours stops gracefully instead.
        return isinstance(handler, functools.partial) and getattr(handler.func, "__name__", "") == "_on_sigint"
    return handler in (signal.SIG_DFL, None)


def name(sig: int) -> str:
    """``'SIGINT'`` for 2."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


#: ``signal.SIGINT`` for 2: every signal Python knows, by number.
by_number = {int(s): s for s in signal.Signals}


def number(sig: _t.Union[int, str, signal.Signals]) -> int:
    """15 for ``'TERM'``, ``'SIGTERM'``, ``signal.SIGTERM`` or 15."""
    if isinstance(sig, str):
        full = sig.upper()
        if not full.startswith("SIG"):
            full = "SIG" + full
        try:
            return int(signal.Signals[full])
        except KeyError:
            raise ValueError(f"unknown signal {sig!r}") from None
    return int(sig)


class SignalStop:
    """While entered (on the main thread): ``signals`` whose handler is the default are
    recorded instead; :meth:`fileno` becomes readable and :meth:`take` returns them."""

    def __init__(self, signals: _t.Iterable[int]) -> None:
        self._signals = list(signals)
        self._saved: _t.Dict[int, _t.Any] = {}
        self._received: _t.List[int] = []
        self._r = self._w = -1

    def __enter__(self) -> "SignalStop":
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self._signals:
            current = signal.getsignal(sig)
            if is_default(sig, current):
                if self._r < 0:
                    self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                self._saved[sig] = current
                signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._saved.items():
            signal.signal(sig, old)
        self._saved.clear()
        for fd in (self._r, self._w):
            if fd >= 0:
                os.close(fd)
        self._r = self._w = -1

    @property
    def active(self) -> bool:
        """True if at least one handler was installed."""
        return bool(self._saved)

    def _handler(self, sig: int, frame: object) -> None:
        self._received.append(sig)
        try:
            os.write(self._w, b"\0")
        except OSError:  # the pipe is full: the loop is already awake
            pass

    def fileno(self) -> int:
        """Readable once a signal came (-1 when no handler was installed)."""
        return self._r

    def take(self) -> _t.Optional[int]:
        """The next recorded signal, or None."""
        if self._r >= 0:
            try:
                while os.read(self._r, 64):
                    pass
            except BlockingIOError:
                pass
        return self._received.pop(0) if self._received else None
