"""A small, bounded HTTP load for the tests that replace workers or the primary under it:
client threads sending GET over kept-alive connections (or a new connection per request),
counting every failure. Not a test module (tests/test_supervision.py, tests/test_upgrade.py).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import List, Optional, Set

# The answers of examples/python/hello.py ("hello from worker <pid>"), tests/apps/sup_app.py
# ("worker <pid> <path>") and tests/apps/runner_wsgi.py ("wsgi worker <pid> <path>").
BODY = r"(?:hello from |wsgi )?worker (\d+)(?: {path})?\n"


class Retry(Exception):
    """A request on a reused connection met EOF, a reset or a broken pipe before any byte of
    its response: the server closed that idle connection as the request went out."""


def exchange(sock: socket.socket, path: str, close: bool = False) -> tuple:
    """One GET on `sock` (with `Connection: close` if `close`): (status, headers, body).
    Raises Retry (nothing came back) or another exception (anything else)."""
    extra = "Connection: close\r\n" if close else ""
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    except (BrokenPipeError, ConnectionResetError) as e:
        raise Retry(str(e)) from e
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError as e:
            if not buf:
                raise Retry(str(e)) from e
            raise
        if not chunk:
            if not buf:
                raise Retry("EOF")
            raise ConnectionError(f"EOF after {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    n = int(headers["content-length"])
    while len(body) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF in the body after {body!r}")
        body += chunk
    return status, headers, body[:n].decode()


class Load:
    """`clients` threads sending GET / until stopped, over kept-alive connections (or, with
    `close`, one new connection per request); a request on a reused connection is retried
    once on a new one under the standard rule (see Retry); anything else is a failure.
    `answers`: who answered, in order."""

    def __init__(self, port: int, clients: int = 4, close: bool = False) -> None:
        self.port = port
        self.close = close
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.retried = 0
        self.connections = 0
        self.failures: List[str] = []
        self.answers: List[tuple] = []  # (time, pid)
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]
        for t in self.threads:
            t.start()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        with self.lock:
            self.connections += 1
        return sock

    def _client(self, i: int) -> None:
        sock: Optional[socket.socket] = None
        used = 0
        n = 0
        tag = "x" if self.close else "c"
        while not self.stopping.is_set():
            n += 1
            path = f"/{tag}{i}-{n}"
            try:
                if sock is None:
                    sock, used = self._connect(), 0
                try:
                    status, headers, body = exchange(sock, path, self.close)
                except Retry:
                    if used == 0:
                        raise
                    sock.close()
                    sock, used = self._connect(), 0
                    with self.lock:
                        self.retried += 1
                    status, headers, body = exchange(sock, path, self.close)
                used += 1
                m = re.fullmatch(BODY.format(path=re.escape(path)), body)
                if status != 200 or not m:
                    raise AssertionError(f"status {status}, body {body!r}")
                with self.lock:
                    self.ok += 1
                    self.answers.append((time.monotonic(), int(m.group(1))))
                if self.close or headers.get("connection", "").lower() == "close":
                    sock.close()
                    sock = None
            except Exception as e:  # noqa: BLE001 - every failure is counted
                with self.lock:
                    self.failures.append(f"{path}: {type(e).__name__}: {e}")
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.01)
        if sock is not None:
            sock.close()

    def wait_ok(self, n: int, timeout: float = 20.0) -> bool:
        """Waits (at most `timeout` s) until `n` requests succeeded in all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.ok >= n:
                    return True
            time.sleep(0.02)
        return False

    def pids_since(self, t: float) -> Set[int]:
        with self.lock:
            return {pid for at, pid in self.answers if at >= t}

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "a client did not finish"
