"""Ctrl-C / SIGTERM: a primary on libcluster.run() with WORKERS workers of kind MODE.

MODE: "http" (libcluster.serve), "asyncio" (start_server + serve_forever) or "idle"
(libcluster.run() in the worker). Prints JSON lines: {"ready": pid} per worker (from the
worker, once it serves), {"event": "exit", ...} per exit (from the primary). No signal
handling of its own: what happens on SIGINT/SIGTERM is the binding's.
"""
import asyncio
import json
import os
from http.server import BaseHTTPRequestHandler

import libcluster


def say(**kw):
    print(json.dumps(kw) + "\n", end="", flush=True)


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


async def aio_worker():
    async def handle(reader, writer):
        writer.close()

    server = await libcluster.start_server(handle, "127.0.0.1", 0)
    say(ready=os.getpid())
    await server.serve_forever()


if libcluster.is_primary:
    libcluster.on("exit", lambda w, code, sig: say(event="exit", pid=w.pid, code=code,
                                                   signal=sig and sig.name, ead=w.exited_after_disconnect))
    for _ in range(int(os.environ.get("WORKERS", "2"))):
        libcluster.fork()
    libcluster.run()
    say(event="run returned")  # not reached after a signal: run() raises SystemExit
else:
    mode = os.environ.get("MODE", "http")
    if mode == "http":
        libcluster.serve(Hello, "127.0.0.1", 0, ready=lambda server: say(ready=os.getpid()))
    elif mode == "asyncio":
        asyncio.run(aio_worker())
    else:
        say(ready=os.getpid())
        libcluster.run()
