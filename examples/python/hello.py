"""The Python twin of examples/hello.c: a clustered HTTP server, supervised.

    PORT=8000 WORKERS=4 python3 examples/python/hello.py

The primary keeps WORKERS workers (default: CPU count) with libcluster's supervision: a dead
worker is replaced after a jittered exponential delay, a crash loop opens the breaker, a
stuck worker is drained and replaced. It handles signals (opt-in, installed by this
program): HUP rolling restart (the program file now on disk), TTIN/TTOU one worker
more/less, TERM graceful stop, INT (Ctrl-C) fast stop (workers ignore SIGINT: the
primary's stop ends them), USR2 hot upgrade of the primary (this script as it is on disk
now starts as a new primary and takes over the port; this one drains and exits). Every
worker serves "hello from worker <pid>\\n" on HOST:PORT (127.0.0.1:8000; port 0 = random,
shared by all workers), keeping connections alive and answering "Connection: close" once
draining.

The supervisor's defaults can be changed for tests: STUCK_MS, DRAIN_MS, KILL_MS,
BOOT_TIMEOUT_MS, BREAKER_BURST, BREAKER_COOLDOWN_MS, BACKOFF_BASE_MS, MAX_CONNECTIONS. The
primary prints one "stats {...}" JSON line after each exit, rollout end and at the end.
Also runs as a worker under a real Node primary.
"""
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, Optional

import libcluster


def say(line: str) -> None:  # one write per line, so lines of several processes never mix
    print(line + "\n", end="", flush=True)


def print_stats() -> None:
    say("stats " + json.dumps(libcluster.stats(), separators=(",", ":"), sort_keys=True))


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like hello.c
    disable_nagle_algorithm = True  # headers and body leave at once, as hello.c's one write

    def do_GET(self) -> None:
        body = f"hello from worker {os.getpid()}\n".encode()
        # HTTP/1.1 keeps the connection unless the client said close (then close_connection is
        # already True); a draining worker closes it after this response.
        close = self.close_connection or libcluster.worker_draining()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close" if close else "keep-alive")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet, like hello.c
        pass


def died(worker: libcluster.Worker, code: Optional[int], sig: Optional[signal.Signals]) -> None:
    say(f"worker {worker.pid} died ({'signal' if sig else 'code'} {int(sig) if sig else code})")
    print_stats()


def listening(worker: libcluster.Worker, address: libcluster.ListeningAddress) -> None:
    say(f"worker {worker.pid} listening on {address['address'] or '*'}:{address['port']}")


def draining(worker: libcluster.Worker, info: libcluster.SupervisionInfo) -> None:
    say(f"worker {worker.pid} draining: {info['state']} (reason {info['reason']})")


def rollout(info: libcluster.SupervisionInfo) -> None:
    say(f"rollout {info['state']} generation {info['generation']} ({info['count']} replaced)")
    if info["state"] in ("done", "aborted"):
        print_stats()


def upgrade(info: libcluster.SupervisionInfo) -> None:
    say(f"upgrade {info['state']}: primary {os.getpid()} (other primary {info['pid']}, error {info['error']})")


def supervisor_settings() -> Dict[str, Any]:
    """The supervisor's settings the environment overrides (milliseconds to seconds)."""
    given: Dict[str, Any] = {}
    for env, name, seconds in [("STUCK_MS", "stuck_timeout", True), ("DRAIN_MS", "drain_timeout", True),
                               ("KILL_MS", "kill_after", True), ("BOOT_TIMEOUT_MS", "boot_timeout", True),
                               ("BREAKER_BURST", "breaker_burst", False),
                               ("BREAKER_COOLDOWN_MS", "breaker_cooldown", True),
                               ("BACKOFF_BASE_MS", "backoff_base", True), ("MAX_CONNECTIONS", "max_connections", False)]:
        value = os.environ.get(env)
        if value:
            given[name] = int(value) / 1000 if seconds else int(value)
    return given


if libcluster.is_primary:
    say(f"Primary {os.getpid()} is running{' (started by a hot upgrade)' if libcluster.is_upgrade() else ''}")
    libcluster.on("exit", died)
    libcluster.on("listening", listening)
    libcluster.on("ready", lambda worker: say(f"worker {worker.pid} ready"))
    libcluster.on("draining", draining)
    libcluster.on("respawn", lambda info: say(f"respawn in {info['delay_ms']} ms ({info['count']} deaths in a row)"))
    libcluster.on("breaker", lambda info: say(f"breaker {info['state']} ({info['count']} boot failures)"))
    libcluster.on("rollout", rollout)
    libcluster.on("stuck", lambda worker, info: say(f"worker {worker.pid} stuck ({info['delay_ms']} ms)"))
    libcluster.on("recycle", lambda worker, info: say(f"worker {worker.pid} recycled (reason {info['reason']})"))
    libcluster.on("upgrade", upgrade)
    libcluster.on("control", lambda info: say(f"signal {int(info['signal'] or 0)}: action {info['state']}"))
    libcluster.on("error", lambda worker, exc: print(f"worker {worker.pid if worker else 0}: {exc}", file=sys.stderr))
    libcluster.install_signal_handlers()
    libcluster.supervise(workers=int(os.environ.get("WORKERS") or os.cpu_count() or 1), **supervisor_settings())
    libcluster.run()  # until a stop (TERM, INT) or an upgrade's handover has ended every worker
    print_stats()
    say("primary stopped")
else:
    # Ctrl-C reaches the whole process group: the primary turns it into a stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with libcluster.ClusterThreadingHTTPServer((os.environ.get("HOST") or "127.0.0.1", int(os.environ.get("PORT") or 8000)),
                                               Hello) as httpd:
        say(f"Worker {os.getpid()} started")
        httpd.serve_forever()  # until the primary disconnects (drains) this worker
