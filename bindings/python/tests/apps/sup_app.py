"""A supervised primary for tests/test_supervision.py, steered by commands on stdin.

Primary: libcluster.supervise(workers=WORKERS, ready_on=READY_ON, ...) then libcluster.run()
(run(handle_signals=False) with CHECK_HANDLERS=1). Prints one JSON line per cluster event
({"event": "ready", "id": .., "pid": .., "info": {...}}) and per command result; its
commands (each acknowledged with {"ack": line}) run on a thread of their own:
    stats                   {"stats": libcluster.stats()}
    worker_stats <id>       {"worker_stats": libcluster.worker_stats(id)}
    drain <id>              libcluster.drain(id)
    restart                 {"generation": libcluster.rolling_restart()}
    scale <n>               libcluster.scale(n)
    supervise <json>        libcluster.supervise(**kwargs)
    control <action>        libcluster.control(action)
    handlers                {"handlers": {signal: [repr(signal.getsignal(...)), caught]}}
    upgrade <seconds|->     {"upgrade_pid": libcluster.upgrade(ready_timeout=seconds or None)}
Stdin EOF or the 60 s watchdog: a fast stop, every worker SIGKILLed, exit. When run()
returns: {"event": "run_returned", "stats": ...}. A primary started by a hot upgrade
(libcluster.is_upgrade(), in its "primary" line) reads no commands (stdin is the old
one's); while the file UPGRADE_HANG_FILE exists it never gets ready (it sleeps before it
supervises anything) and is killed at the old one's timeout.

Worker: a keep-alive HTTP/1.1 server (ClusterThreadingHTTPServer, on 127.0.0.1:PORT, 0 by
default) answering
"worker <pid> <path>" (Connection: close once libcluster.worker_draining()); GET
/slow?until=F prints {"slow_started": pid} and waits (20 s at most) for the file F.
With READY_ON=explicit it prints {"listening_worker": pid} once it has its server, waits
for the file READY_FILE, prints {"calling_ready": pid} and calls worker_ready(). It prints
{"draining_seen": pid} when worker_draining() turns True, and {"left": pid, "draining": ..}
when it stops serving.
"""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGTTIN, signal.SIGTTOU)


def handlers():
    """Python's handler of each of the five signals, and the kernel's view (caught or not,
    from SigCgt: a handler installed below Python would show there)."""
    with open("/proc/self/status") as f:
        sigcgt = int(next(line.split()[1] for line in f if line.startswith("SigCgt:")), 16)
    return {s.name: [repr(signal.getsignal(s)), bool(sigcgt >> (s - 1) & 1)] for s in HANDLED}


BEFORE_IMPORT = handlers()

import libcluster  # noqa: E402  (after the handlers were read)

_out = threading.Lock()


def say(**kw):
    with _out:
        sys.stdout.write(json.dumps(kw, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()


def env_s(name):
    v = os.environ.get(name)
    return float(v) if v else None


# --------------------------------------------------------------------------- primary


def primary():
    check = os.environ.get("CHECK_HANDLERS") == "1"

    def stop_everything():
        try:
            libcluster.control("stop_fast")
        except OSError:
            pass
        for w in libcluster.workers.values():
            try:
                w.kill(signal.SIGKILL)
            except OSError:
                pass
        os._exit(3)

    def watchdog():
        say(event="watchdog")
        stop_everything()

    timer = threading.Timer(60.0, watchdog)
    timer.daemon = True
    timer.start()

    def w_event(name):
        return lambda w, *rest: say(event=name, id=w.id, pid=w.pid, info=rest[0] if rest else None)

    for name in ("fork", "online", "ready", "draining", "stuck", "recycle"):
        libcluster.on(name, w_event(name))
    for name in ("respawn", "breaker", "rollout", "control", "upgrade"):
        libcluster.on(name, lambda info, name=name: say(event=name, info=info))
    libcluster.on("listening", lambda w, a: say(event="listening", id=w.id, pid=w.pid, port=a["port"]))
    libcluster.on("exit", lambda w, code, sig: say(event="exit", id=w.id, pid=w.pid, code=code,
                                                   signal=sig.name if sig else None,
                                                   ead=w.exited_after_disconnect))
    libcluster.on("error", lambda w, e: say(event="error", id=w and w.id, message=str(e)))
    if check:
        libcluster.once("ready", lambda w: say(event="handlers_in_listener", handlers=handlers()))

    def command(line):
        cmd, _, arg = line.partition(" ")
        if cmd == "stats":
            say(stats=libcluster.stats())
        elif cmd == "worker_stats":
            say(worker_stats=libcluster.worker_stats(int(arg)))
        elif cmd == "drain":
            libcluster.drain(int(arg))
        elif cmd == "restart":
            say(generation=libcluster.rolling_restart())
        elif cmd == "scale":
            libcluster.scale(int(arg))
        elif cmd == "supervise":
            libcluster.supervise(**json.loads(arg))
        elif cmd == "control":
            libcluster.control(arg)
        elif cmd == "handlers":
            say(handlers=handlers())
        elif cmd == "upgrade":
            say(upgrade_pid=libcluster.upgrade(ready_timeout=None if arg == "-" else float(arg)))
        else:
            say(bad_command=line)

    def commands():
        for raw in sys.stdin:
            line = raw.strip()
            try:
                command(line)
            except Exception as e:  # noqa: BLE001 - the test asserts on it
                say(error=f"{type(e).__name__}: {e}", line=line)
            say(ack=line)
        stop_everything()

    upgraded = libcluster.is_upgrade()
    say(event="primary", pid=os.getpid(), handlers_before_import=BEFORE_IMPORT, handlers_after_import=handlers(),
        is_upgrade=upgraded)
    hang = os.environ.get("UPGRADE_HANG_FILE")
    if upgraded and hang and os.path.exists(hang):
        say(event="hanging", pid=os.getpid())
        time.sleep(30)  # never ready: the old primary kills it at its timeout
        os._exit(4)
    if os.environ.get("SIGNALS") == "1":
        say(installed=[s.name for s in libcluster.install_signal_handlers()])
    libcluster.supervise(workers=int(os.environ.get("WORKERS", "2")), ready_on=os.environ.get("READY_ON", "listening"),
                         drain_timeout=env_s("DRAIN_S"), kill_after=env_s("KILL_S"), backoff_base=0.05)
    if check:
        say(event="handlers_after_supervise", handlers=handlers())
    if not upgraded:
        threading.Thread(target=commands, daemon=True).start()
    libcluster.run(handle_signals=not check)
    say(event="run_returned", stats=libcluster.stats(), handlers=handlers())


# --------------------------------------------------------------------------- worker


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one segment per response (no 40 ms delayed-ACK stall)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/slow":
            until = parse_qs(url.query)["until"][0]
            say(slow_started=os.getpid())
            deadline = time.monotonic() + 20
            while not os.path.exists(until) and time.monotonic() < deadline:
                time.sleep(0.02)
        body = f"worker {os.getpid()} {self.path}\n".encode()
        close = self.close_connection or libcluster.worker_draining()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close" if close else "keep-alive")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def watch_draining():
    while not libcluster.worker_draining():
        time.sleep(0.02)
    say(draining_seen=os.getpid())


def worker():
    with libcluster.ClusterThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler) as httpd:
        if os.environ.get("READY_ON") == "explicit":
            say(listening_worker=os.getpid())
            deadline = time.monotonic() + 20
            while not os.path.exists(os.environ["READY_FILE"]) and time.monotonic() < deadline:
                time.sleep(0.02)
            say(calling_ready=os.getpid())
            libcluster.worker_ready()
        say(serving=os.getpid(), draining=libcluster.worker_draining())
        threading.Thread(target=watch_draining, daemon=True).start()
        httpd.serve_forever(poll_interval=0.1)
        say(left=os.getpid(), draining=libcluster.worker_draining())


if libcluster.is_primary:
    primary()
else:
    worker()
