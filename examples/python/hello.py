"""The Python twin of examples/hello.c: PORT=8000 WORKERS=4 python3 examples/python/hello.py
(also runs as a worker under a real Node primary)."""
import os
import signal
from http.server import BaseHTTPRequestHandler

import libcluster

signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends every process quietly, as in C


def say(line):  # one write per line, so lines of several processes never mix
    print(line + "\n", end="", flush=True)


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like hello.c

    def do_GET(self):
        body = f"hello from worker {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet, like hello.c
        pass


def died(worker, code, signal):
    say(f"worker {worker.pid} died ({'signal' if signal else 'code'} {signal or code})")
    libcluster.fork()  # keep the fleet at size


if libcluster.is_primary:
    say(f"Primary {os.getpid()} is running")
    libcluster.on("exit", died)
    libcluster.on("listening", lambda w, a: say(f"worker {w.pid} listening on {a['address']}:{a['port']}"))
    for _ in range(int(os.environ.get("WORKERS") or os.cpu_count())):
        libcluster.fork()
    libcluster.run()
else:
    with libcluster.ClusterThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT") or 8000)), Hello) as httpd:
        say(f"Worker {os.getpid()} started")
        httpd.serve_forever()  # until the primary disconnects this worker
