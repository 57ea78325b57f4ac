"""The Python twin of examples/hello.c: PORT=8000 WORKERS=4 python3 examples/python/hello.py
(also runs as a worker under a real Node primary). Ctrl-C stops the workers gracefully."""
import os
import signal
from http.server import BaseHTTPRequestHandler
from typing import Optional

import libcluster


def say(line: str) -> None:  # one write per line, so lines of several processes never mix
    print(line + "\n", end="", flush=True)


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like hello.c

    def do_GET(self) -> None:
        body = f"hello from worker {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet, like hello.c
        pass


def died(worker: libcluster.Worker, code: Optional[int], sig: Optional[signal.Signals]) -> None:
    say(f"worker {worker.pid} died ({'signal' if sig else 'code'} {int(sig) if sig else code})")
    if not worker.exited_after_disconnect:
        libcluster.fork()  # keep the fleet at size (not while Ctrl-C stops the cluster)


def listening(worker: libcluster.Worker, address: libcluster.ListeningAddress) -> None:
    say(f"worker {worker.pid} listening on {address['address']}:{address['port']}")


if libcluster.is_primary:
    say(f"Primary {os.getpid()} is running")
    libcluster.on("exit", died)
    libcluster.on("listening", listening)
    for _ in range(int(os.environ.get("WORKERS") or os.cpu_count() or 1)):
        libcluster.fork()
    libcluster.run()  # Ctrl-C: disconnects the workers, then exits 130
else:
    with libcluster.ClusterThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT") or 8000)), Hello) as httpd:
        say(f"Worker {os.getpid()} started")
        httpd.serve_forever()  # until the primary disconnects this worker (or Ctrl-C)
