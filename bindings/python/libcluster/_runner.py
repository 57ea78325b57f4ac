"""``python -m libcluster``: cluster an existing WSGI app or asyncio handler, no primary code.

    python -m libcluster --workers 4 --bind 127.0.0.1:8000 module:app
    python -m libcluster --asyncio --bind unix:/run/app.sock module:handler

The primary supervises ``--workers`` copies of this runner (``libcluster.supervise``): a
worker that dies is replaced (after a short delay that grows while workers keep dying
young). Each worker imports the target and asks the primary for ``--bind``; the primary
binds once and deals the connections round-robin. SIGHUP: a rolling restart (new workers,
the code now on disk, each old one drained once a new one is ready); SIGTTIN/SIGTTOU: one
worker more/fewer. SIGTERM: every worker is drained (it finishes the requests it has and
exits; SIGTERM after ``--graceful-timeout``, SIGKILL 5 s later), then the primary exits 0;
SIGINT: the same, fast (SIGTERM at once, which makes a worker leave as gracefully, SIGKILL
5 s later). A second SIGTERM/SIGINT kills the workers left at once. SIGUSR2: a hot upgrade
of the primary (``libcluster.upgrade``: the same command line runs again as a new primary
and takes over the listeners once its workers are ready; this one drains its workers and
exits 0; ``--bind`` needs a fixed port). A worker that cannot
load the target or listen exits with :data:`BOOT_ERROR`; the primary then stops and exits
with it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import selectors
import signal
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import libcluster

log = logging.getLogger("libcluster.runner")

#: A worker's exit code when it could not load its target or listen (gunicorn's too).
BOOT_ERROR = 3
# Supervision's respawn delay: FIRST_DELAY after a death, doubling while workers keep dying
# (at most MAX_DELAY), until one stays ready STABLE_AFTER seconds.
STABLE_AFTER = 2.0
FIRST_DELAY, MAX_DELAY = 0.1, 5.0

Address = Union[Tuple[str, int], str]


def parse_bind(text: str) -> Address:
    """``host:port``, ``[v6]:port``, ``:port`` (every interface) or ``unix:/path``."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise ValueError("unix: needs a path")
        return os.path.abspath(path)
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad port in {text!r}")
    return (host or "", int(port))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m libcluster",
        description="Serve a WSGI app (or an asyncio handler) from several worker processes; "
                    "the primary binds once and deals connections round-robin.")
    ap.add_argument("target", help="module:app (a WSGI callable; module:factory() calls it), or with "
                                   "--asyncio module:handler, an `async def handler(reader, writer)`")
    ap.add_argument("-w", "--workers", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: the CPU count)")
    ap.add_argument("-b", "--bind", default="127.0.0.1:8000",
                    help="HOST:PORT, [V6]:PORT, :PORT or unix:PATH (default 127.0.0.1:8000; port 0: a random one)")
    ap.add_argument("--asyncio", action="store_true",
                    help="the target is an asyncio handler(reader, writer), as for asyncio.start_server")
    ap.add_argument("--threaded", action="store_true",
                    help="WSGI: a thread per connection in each worker (the app must be thread-safe)")
    ap.add_argument("--chdir", help="change to this directory before loading the target")
    ap.add_argument("--pythonpath", default="",
                    help="comma-separated directories put first on sys.path (the current one always is)")
    ap.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="how long a drained worker (SIGTERM, SIGHUP, SIGTTOU) may finish its requests "
                         "before SIGTERM, then SIGKILL 5 s later (default 30)")
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                    help="default info; debug adds one line per request")
    return ap


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    if level != "debug":
        logging.getLogger("libcluster.access").setLevel(logging.WARNING)


def load_target(spec: str, pythonpath: str = "") -> Any:
    """Imports ``module:attr`` (``module`` alone: ``module:application``) with the current
    directory and ``pythonpath`` first on ``sys.path``; ``attr()`` calls a factory."""
    for d in reversed([os.getcwd()] + [p for p in pythonpath.split(",") if p]):
        d = os.path.abspath(d)
        if d in sys.path:
            sys.path.remove(d)
        sys.path.insert(0, d)
    modname, _, attr = spec.partition(":")
    attr = attr or "application"
    call = attr.endswith("()")
    if call:
        attr = attr[:-2]
    obj: Any = importlib.import_module(modname)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if call:
        obj = obj()
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def describe(bind: Address, port: Optional[int] = None) -> str:
    if isinstance(bind, str):
        return f"unix:{bind}"
    host = bind[0] or "0.0.0.0"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{bind[1] if port is None else port}"


# --------------------------------------------------------------------------- primary


#: What the primary passes on to supervision (libcluster's default mapping): SIGHUP a
#: rolling restart, SIGTTIN/SIGTTOU one worker more/fewer, SIGTERM a graceful stop, SIGINT a
#: fast one, SIGUSR2 a hot upgrade of the primary.
SIGNALS = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
STOPS = {signal.SIGTERM: "gracefully", signal.SIGINT: "fast"}
ACTIONS = {"reload": "rolling restart", "scale_up": "one worker more", "scale_down": "one worker fewer",
           "upgrade": "hot upgrade of the primary"}


class Primary:
    """Supervises the workers (``libcluster.supervise``): replaces those that die, replaces
    all of them on SIGHUP, scales on SIGTTIN/SIGTTOU, stops them on SIGTERM/SIGINT, hands
    over to a new primary on SIGUSR2."""

    def __init__(self, args: argparse.Namespace, argv: Sequence[str]) -> None:
        self.args = args
        self.argv = list(argv)
        self.alive: Set[int] = set()  # worker ids forked and not yet exited
        self.listened: Set[int] = set()  # ids that got their server
        self.stopping = False
        self.exit_code = 0
        self.announced = False
        self.signals: List[int] = []
        self.upgrade_to = 0  # the new primary a hot upgrade of this one started

    def run(self) -> int:
        libcluster.setup_primary(
            exec=sys.executable,
            args=[*subprocess._args_from_interpreter_flags(), "-m", "libcluster", *self.argv])  # type: ignore[attr-defined]
        listeners: Dict[str, Callable[..., None]] = {
            "fork": self._on_fork, "listening": self._on_listening, "exit": self._on_exit,
            "ready": lambda w: log.debug("worker %d (pid %d) ready", w.id, w.pid),
            "draining": self._on_draining, "respawn": self._on_respawn, "breaker": self._on_breaker,
            "rollout": self._on_rollout, "stuck": self._on_stuck, "recycle": self._on_recycle,
            "control": self._on_control, "upgrade": self._on_upgrade,
        }
        for event, fn in listeners.items():
            libcluster.on(event, fn)
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = signal.set_wakeup_fd(wfd)
        old = {s: signal.signal(s, lambda n, _f: self.signals.append(n)) for s in SIGNALS}
        done = False
        try:
            libcluster.supervise(workers=self.args.workers, backoff_base=FIRST_DELAY, backoff_max=MAX_DELAY,
                                 stable_after=STABLE_AFTER, drain_timeout=self.args.graceful_timeout)
            with selectors.DefaultSelector() as sel:
                sel.register(libcluster.fileno(), selectors.EVENT_READ)
                sel.register(rfd, selectors.EVENT_READ)
                while not self._finished():
                    sel.select(1.0 if self.stopping else None)
                    try:
                        os.read(rfd, 512)
                    except BlockingIOError:
                        pass
                    libcluster.dispatch()
                    while self.signals:
                        self._signal(self.signals.pop(0))
            done = True
        finally:
            if not done:  # an unexpected error: leave no worker behind
                self._kill_all()
            signal.set_wakeup_fd(old_wakeup)
            for s, h in old.items():
                signal.signal(s, h)
            os.close(rfd)
            os.close(wfd)
        log.info("stopped" if not self.upgrade_to else f"handed over to primary {self.upgrade_to}")
        return self.exit_code

    def _finished(self) -> bool:
        if not self.stopping or self.alive:
            return False
        # Once supervision has taken the stop in, a fork it made before has queued its 'fork'.
        if libcluster.stats()["stopping"] == "no":
            return False
        libcluster.dispatch()
        return not self.alive

    def _signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if sig in STOPS:
            if self.stopping:
                log.warning("%s again: killing %d worker(s)", name, len(self.alive))
                self._kill_all()
                return
            self.stopping = True
            log.info("%s: stopping %d worker(s) %s", name, len(self.alive), STOPS[signal.Signals(sig)])
        elif self.stopping:
            return
        libcluster.handle_signal(sig)

    def _stop(self) -> None:
        self.stopping = True
        libcluster.control("stop_fast")

    def _kill_all(self) -> None:
        try:
            libcluster.control("stop_fast")  # nothing is respawned from now on
        except OSError:
            pass
        for wid in list(self.alive):
            try:
                libcluster.workers[wid].kill(signal.SIGKILL)
            except (KeyError, OSError):
                pass

    def _on_fork(self, w: libcluster.Worker) -> None:
        self.alive.add(w.id)
        log.debug("worker %d (pid %d) forked", w.id, w.pid)

    def _on_listening(self, w: libcluster.Worker, address: Dict[str, Any]) -> None:
        self.listened.add(w.id)
        log.debug("worker %d (pid %d) listening", w.id, w.pid)
        if not self.announced:
            self.announced = True
            log.info("serving %s (%s) on %s with %d workers (primary %d)", self.args.target,
                     "asyncio" if self.args.asyncio else "wsgi", describe(parse_bind(self.args.bind), address.get("port")),
                     self.args.workers, os.getpid())

    def _on_exit(self, w: libcluster.Worker, code: Optional[int], sig: Optional[signal.Signals]) -> None:
        self.alive.discard(w.id)
        how = f"signal {sig.name}" if sig else f"code {code}"
        if self.stopping:
            log.debug("worker %d (pid %d) exited (%s)", w.id, w.pid, how)
        elif code == BOOT_ERROR and w.id not in self.listened:
            log.error("worker %d (pid %d) failed to boot: stopping", w.id, w.pid)
            self.exit_code = BOOT_ERROR
            self._stop()
        elif w.exited_after_disconnect:  # drained, or left on its own (SIGTERM)
            log.debug("worker %d (pid %d) exited (%s) after a disconnect", w.id, w.pid, how)
        else:
            log.warning("worker %d (pid %d) exited (%s); replacing it", w.id, w.pid, how)

    def _on_respawn(self, info: libcluster.SupervisionInfo) -> None:
        log.info("replacing a worker in %.1f s (%d deaths in a row)", info["delay_ms"] / 1000, info["count"])

    def _on_breaker(self, info: libcluster.SupervisionInfo) -> None:
        if info["state"] == "open":
            log.error("crash loop (%d workers died before they were ready): no new worker for a while", info["count"])
        else:
            log.warning("crash-loop breaker %s", info["state"])

    def _on_draining(self, w: libcluster.Worker, info: libcluster.SupervisionInfo) -> None:
        log.debug("worker %d (pid %d) draining: %s (%s)", w.id, w.pid, info["state"], info["reason"])

    def _on_rollout(self, info: libcluster.SupervisionInfo) -> None:
        level = logging.DEBUG if info["state"] == "step" else logging.WARNING if info["state"] == "aborted" else logging.INFO
        log.log(level, "rolling restart to generation %d: %s (%d replaced)", info["generation"], info["state"], info["count"])

    def _on_stuck(self, w: libcluster.Worker, info: libcluster.SupervisionInfo) -> None:
        log.warning("worker %d (pid %d) stuck (its connections waited %d ms): replacing it", w.id, w.pid, info["delay_ms"])

    def _on_recycle(self, w: libcluster.Worker, info: libcluster.SupervisionInfo) -> None:
        log.info("worker %d (pid %d) recycled (%s)", w.id, w.pid, info["reason"])

    def _on_upgrade(self, info: libcluster.SupervisionInfo) -> None:
        state, pid = info["state"], info["pid"]
        if state == "started":
            self.upgrade_to = pid
            log.info("hot upgrade: new primary %d started", pid)
        elif state == "ready" and pid == self.upgrade_to:
            # The new primary serves: this one drains every worker and ends with them.
            self.stopping = True
            log.info("hot upgrade: new primary %d ready; draining %d worker(s)", pid, len(self.alive))
        elif state == "aborted":
            self.upgrade_to = 0
            log.warning("hot upgrade aborted: new primary %d failed (%s); serving on", pid,
                        os.strerror(-info["error"]) if info["error"] else "?")
        elif state == "ready":
            log.info("hot upgrade: serving; the old primary %d drains", pid)
        elif state == "done":
            log.info("hot upgrade: done (the old primary %d is gone)", pid)

    def _on_control(self, info: libcluster.SupervisionInfo) -> None:
        what = ACTIONS.get(info["state"] or "")
        if what is not None:
            sig = info["signal"].name if info["signal"] else "control"
            log.info("%s: %s (%d workers)", sig, what, libcluster.stats()["target"])


# --------------------------------------------------------------------------- worker


def _quiet_signals(on_term: Callable[[], None]) -> None:
    # Ctrl-C reaches the whole process group: the primary turns it into a stop, so a worker
    # ignores it, and the primary's other signals (HUP, TTIN/TTOU, USR2, sent to the group)
    # too.
    # SIGTERM to one worker (or from the primary's stop or drain): it leaves gracefully.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda _n, _f: on_term())


def _leave() -> None:
    me = libcluster.worker
    try:
        if me is not None and me.is_connected():
            me.disconnect()
    except OSError:
        pass


def _listen_failed(e: BaseException, bind: Address) -> int:
    me = libcluster.worker
    if me is None or not me.is_connected():  # disconnected while booting: just leave
        return 0
    log.error("cannot listen on %s: %s", describe(bind), e)
    return BOOT_ERROR


def run_wsgi_worker(app: Any, bind: Address, threaded: bool) -> int:
    from ._wsgi import make_server

    _quiet_signals(_leave)
    try:
        server = make_server(app, bind, threaded)
    except OSError as e:
        return _listen_failed(e, bind)
    with server:
        server.serve_forever()
    return 0


def run_asyncio_worker(handler: Any, bind: Address, graceful: float) -> int:
    import asyncio
    import inspect

    async def main() -> int:
        loop = asyncio.get_running_loop()
        libcluster.add_reader(loop)
        busy: Set[asyncio.Task[Any]] = set()

        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            busy.add(task)
            try:
                res = handler(reader, writer)
                if inspect.isawaitable(res):
                    await res
            except Exception:
                log.exception("error in the handler")
                writer.close()
            finally:
                busy.discard(task)

        host, port = (bind, 0) if isinstance(bind, str) else bind
        try:
            server = await libcluster.start_server(tracked, host, port)
        except OSError as e:
            return _listen_failed(e, bind)
        loop.add_signal_handler(signal.SIGTERM, _leave)
        await server.serve_forever()  # until the primary disconnects us
        if busy:
            _done, left = await asyncio.wait(set(busy), timeout=graceful)
            for t in left:
                t.cancel()
        libcluster.remove_reader(loop)
        return 0

    _quiet_signals(_leave)
    return asyncio.run(main())


def run_worker(args: argparse.Namespace) -> int:
    bind = parse_bind(args.bind)
    try:
        target = load_target(args.target, args.pythonpath)
    except Exception as e:  # noqa: BLE001 - reported, and the primary stops
        log.error("cannot load %s: %s", args.target, e, exc_info=args.log_level == "debug")
        return BOOT_ERROR
    if args.asyncio:
        return run_asyncio_worker(target, bind, args.graceful_timeout)
    return run_wsgi_worker(target, bind, args.threaded)


# --------------------------------------------------------------------------- entry point


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: ``python -m libcluster [options] module:app``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = parser()
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    try:
        parse_bind(args.bind)
    except ValueError as e:
        ap.error(f"--bind: {e}")
    setup_logging(args.log_level)
    if libcluster.is_worker:
        return run_worker(args)
    worker_args = worker_argv(args)  # paths resolved before --chdir
    args.bind = worker_args[worker_args.index("--bind") + 1]
    if args.chdir:
        os.chdir(args.chdir)  # the workers start here
    return Primary(args, worker_args).run()


def worker_argv(args: argparse.Namespace) -> List[str]:
    """The workers' command line: the primary's options, paths made absolute, no --chdir."""
    bind = parse_bind(args.bind)
    out = [args.target, "--workers", str(args.workers),
           "--bind", f"unix:{bind}" if isinstance(bind, str) else args.bind,
           "--graceful-timeout", str(args.graceful_timeout), "--log-level", args.log_level]
    if args.pythonpath:
        base = os.path.abspath(args.chdir or ".")
        out += ["--pythonpath", ",".join(os.path.join(base, p) for p in args.pythonpath.split(",") if p)]
    out += ["--asyncio"] * args.asyncio + ["--threaded"] * args.threaded
    return out
