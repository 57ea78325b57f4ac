"""A 3-worker clustered HTTP server on the installed package (tests/test_packaging.py).

Run from an empty folder with a venv's python, after `pip install` of the sdist or wheel.
Only the public API. Prints JSON lines:
    {"event": "primary", "pid", "package": <libcluster's folder>, "library": <the mapped
     libcluster.so>, "header": <cluster.h beside it, or null>}
    {"event": "listening", "pid", "port"}           once per worker
Workers answer GET / with "worker <pid>". Stdin EOF (or a 60 s watchdog) makes the primary
SIGKILL its workers and exit.
"""
import json
import os
import selectors
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler

import libcluster

WORKERS = int(os.environ.get("WORKERS", "3"))


def say(**kw):
    sys.stdout.write(json.dumps(kw, sort_keys=True) + "\n")
    sys.stdout.flush()


def mapped_library():
    """The libcluster.so this process has mapped (from /proc/self/maps)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split(None, 5)[-1].strip()
            if path.endswith("/libcluster.so"):
                return path
    return None


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"worker {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def primary():
    package = os.path.dirname(os.path.abspath(libcluster.__file__))
    header = os.path.join(package, "cluster.h")
    say(event="primary", pid=os.getpid(), package=package, library=mapped_library(),
        header=header if os.path.exists(header) else None)
    forked = []

    def kill_all():
        for w in forked:
            try:
                w.kill(signal.SIGKILL)
            except OSError:
                pass

    def watchdog():
        kill_all()
        os._exit(3)

    timer = threading.Timer(60, watchdog)
    timer.daemon = True
    timer.start()
    libcluster.on("listening", lambda w, a: say(event="listening", pid=w.pid, port=a["port"]))
    libcluster.on("exit", lambda w, code, sig: say(event="exit", pid=w.pid, code=code))
    for _ in range(WORKERS):
        forked.append(libcluster.fork())
    sel = selectors.DefaultSelector()
    sel.register(libcluster.fileno(), selectors.EVENT_READ, "cluster")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    while True:
        for key, _ in sel.select():
            if key.data == "cluster":
                libcluster.dispatch()
            elif not os.read(sys.stdin.fileno(), 4096):
                kill_all()
                return


def worker():
    with libcluster.ClusterThreadingHTTPServer(("127.0.0.1", 0), Hello) as httpd:
        httpd.serve_forever()


if __name__ == "__main__":
    primary() if libcluster.is_primary else worker()
