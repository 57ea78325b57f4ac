"""`python -m libcluster`: the runner that clusters a WSGI app or an asyncio handler.

Real processes: the runner (primary) and its workers, started from tests/apps (so
`runner_wsgi:app` imports from the cwd). Each test SIGTERMs its runner at the end (the
`procs` fixture then SIGKILLs by pid whatever is left); every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import Any, List, Optional
from urllib.parse import quote

import pytest

from conftest import APPS, TIMEOUT, descendants, http_get, running

STARTED = r"serving (\S+) \((wsgi|asyncio)\) on (\S+) with (\d+) workers \(primary (\d+)\)"


def wait_err(p: Any, pattern: str, timeout: float = TIMEOUT) -> Any:
    """The first stderr line of `p` (the runner logs there) matching `pattern`."""
    deadline = time.monotonic() + timeout
    with p.cond:
        while True:
            for line in p.err:
                m = re.search(pattern, line)
                if m:
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                break
            p.cond.wait(min(left, 0.5))
    pytest.fail(f"no stderr line matching {pattern!r} within {timeout}s:\n{p.output()}")


@pytest.fixture
def runner(procs):
    """`start(target, *options, workers=3)`: the runner on 127.0.0.1:0 from tests/apps;
    returns its Proc with `.port` (from the startup line). SIGTERMed at the end."""
    started: List[Any] = []

    def start(target: str, *options: str, workers: int = 3, bind: str = "127.0.0.1:0") -> Any:
        p = procs([sys.executable, "-m", "libcluster", "--workers", str(workers), "--bind", bind,
                   "--log-level", "debug", *options, target], cwd=APPS)
        started.append(p)
        m = wait_err(p, STARTED)
        for i in range(1, workers + 1):  # the debug lines: each first worker has its server
            wait_err(p, rf"worker {i} \(pid \d+\) listening")
        assert (m.group(1), int(m.group(4)), int(m.group(5))) == (target, workers, p.pid)
        url = m.group(3)
        p.port = int(url.rsplit(":", 1)[1]) if url.startswith("http://") else None
        return p

    yield start
    for p in started:
        if p.popen.poll() is None:
            p.pids.update(descendants(p.pid))
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.popen.wait(10)
            except Exception:  # noqa: BLE001 - the procs fixture kills what is left
                pass


def worker_pids(p: Any) -> set:
    return {pid for pid in descendants(p.pid) if running(pid)}


def pid_of(body: str) -> int:
    m = re.match(r"(?:wsgi|aio) worker (\d+) ", body)
    assert m, body
    return int(m.group(1))


def collect(p: Any, want: int, tries: int = 60, path: str = "/") -> set:
    """GETs until `want` distinct workers have answered (at most `tries` requests)."""
    seen = set()
    for i in range(tries):
        status, body = http_get(p.port, f"{path}{i}")
        assert status == 200, body
        seen.add(pid_of(body))
        if len(seen) >= want:
            break
    p.pids |= seen
    return seen


def request(port: int, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read(), r.version
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["sync", "threaded"])
def test_serves_a_wsgi_app_from_every_worker(runner, mode):
    p = runner("runner_wsgi:validated", *(["--threaded"] if mode == "threaded" else []), workers=3)
    pids = collect(p, 3)
    assert len(pids) == 3 and pids <= worker_pids(p), "every worker answers"
    # The app runs under wsgiref.validate: a 200 means both sides kept the WSGI contract.
    status, headers, body, version = request(p.port, "GET", "/env?a=1", headers={"X-Test": "yes"})
    assert (status, version, headers.get("Connection")) == (200, 11, "close")
    env = json.loads(body)
    assert env["REQUEST_METHOD"] == "GET" and env["PATH_INFO"] == "/env" and env["QUERY_STRING"] == "a=1"
    assert env["SERVER_PORT"] == str(p.port) and env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_TEST"] == "yes" and env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["wsgi.multiprocess"] is True and env["wsgi.multithread"] is (mode == "threaded")
    assert env["wsgi.run_once"] is False and env["wsgi.url_scheme"] == "http"
    data = os.urandom(50000)
    status, _, echoed, _ = request(p.port, "POST", "/echo", body=data)
    assert (status, echoed) == (200, data)
    # Every worker answers a reused header list more than once (round-robin: 2 each).
    for _ in range(6):
        assert http_get(p.port, "/const") == (200, "constant\n")
    # An application error is a 500 and logged; the worker goes on.
    status, _, _, _ = request(p.port, "GET", "/boom")
    assert status == 500
    wait_err(p, r"error in the application \(GET /boom\)")
    assert len(collect(p, 3)) == 3


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(runner):
    p = runner("runner_wsgi:app", workers=2)
    before = collect(p, 2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_err(p, rf"worker \d+ \(pid {victim}\) exited \(signal SIGKILL\); replacing it")
    new = set()
    for i in range(400):  # bounded: answers all along, until the replacement answers too
        status, body = http_get(p.port, f"/after{i}")
        assert status == 200
        pid = pid_of(body)
        assert pid != victim
        p.pids.add(pid)
        if pid not in before:
            new.add(pid)
            break
        time.sleep(0.02)
    assert new, f"no replacement answered:\n{p.output()}"
    assert len(worker_pids(p)) == 2


def slow_request(port: int, until: str, out: dict) -> threading.Thread:
    def go() -> None:
        try:
            out["result"] = http_get(port, f"/slow?until={quote(until)}", timeout=30)
        except Exception as e:  # noqa: BLE001 - the test asserts on it
            out["result"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("sig,mode", [(signal.SIGTERM, "wsgi"), (signal.SIGINT, "wsgi"), (signal.SIGTERM, "asyncio")])
def test_a_signal_stops_gracefully_and_finishes_the_request_in_flight(runner, tmp_path, sig, mode):
    if mode == "asyncio":
        p = runner("runner_aio:handler", "--asyncio", workers=2)
    else:
        p = runner("runner_wsgi:app", workers=2)
    workers = worker_pids(p)
    p.pids |= workers
    assert len(workers) == 2
    out: dict = {}
    release = tmp_path / "release"
    t = slow_request(p.port, str(release), out)
    started = p.wait(lambda o: "slow_started" in o)["slow_started"]
    assert started in workers
    os.kill(p.pid, sig)
    # SIGTERM drains; SIGINT stops fast: SIGTERM at once, which a runner's worker takes as
    # leaving gracefully (SIGKILL only 5 s later).
    wait_err(p, rf"{sig.name}: stopping 2 worker\(s\) {'gracefully' if sig == signal.SIGTERM else 'fast'}")
    # The other worker may be gone; this one waits for its request, and the primary for it.
    assert p.popen.poll() is None and running(started) and "result" not in out
    release.touch()  # the request in flight may finish now
    t.join(30)
    status, body = out["result"]
    assert status == 200 and str(started) in body, body
    assert p.exit_code() == 0, p.output()
    wait_err(p, r"\] stopped$")
    deadline = time.monotonic() + 10
    while any(running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(running(w) for w in workers), "no worker left"
    with pytest.raises(OSError):
        http_get(p.port, "/after-stop", timeout=2)


def test_asyncio_handler_from_every_worker(runner):
    p = runner("runner_aio:handler", "--asyncio", workers=3)
    assert len(collect(p, 3)) == 3


def test_a_target_that_cannot_load_stops_the_runner(procs):
    p = procs([sys.executable, "-m", "libcluster", "--workers", "2", "--bind", "127.0.0.1:0",
               "no_such_module:app"], cwd=APPS)
    assert p.exit_code() == 3, p.output()
    wait_err(p, r"cannot load no_such_module:app: No module named 'no_such_module'")
    wait_err(p, r"failed to boot: stopping")


def test_unix_socket_and_chdir(runner, tmp_path):
    path = tmp_path / "app.sock"
    p = runner("runner_wsgi:app", "--chdir", str(APPS), workers=2, bind=f"unix:{path}")
    wait_err(p, rf"on unix:{re.escape(str(path))} with")
    seen = set()
    for i in range(40):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(path))
            s.sendall(f"GET /u{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), data
        seen.add(pid_of(body.decode()))
        if len(seen) == 2:
            break
    p.pids |= seen
    assert len(seen) == 2
    os.kill(p.pid, signal.SIGTERM)
    assert p.exit_code() == 0
    assert not path.exists(), "the last holder removed the socket file"


def test_sighup_replaces_every_worker_and_ttin_ttou_scale(runner):
    p = runner("runner_wsgi:app", workers=2)
    before = collect(p, 2)
    failures: List[str] = []
    stop = threading.Event()

    def client() -> None:  # one request per connection, all along the rollout: none may fail
        i = 0
        while not stop.is_set():
            i += 1
            try:
                status, body = http_get(p.port, f"/during{i}")
                assert status == 200, body
                p.pids.add(pid_of(body))
            except Exception as e:  # noqa: BLE001 - counted
                failures.append(f"{type(e).__name__}: {e}")

    clients = [threading.Thread(target=client, daemon=True) for _ in range(2)]
    for t in clients:
        t.start()
    try:
        os.kill(p.pid, signal.SIGHUP)
        wait_err(p, r"SIGHUP: rolling restart \(2 workers\)")
        wait_err(p, r"rolling restart to generation 2: done \(2 replaced\)")
        deadline = time.monotonic() + TIMEOUT
        while any(running(pid) for pid in before) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in clients:
            t.join(15)
    assert not failures, failures[:5]
    assert not any(running(pid) for pid in before), "the old workers were drained"
    after = collect(p, 2)
    assert len(after) == 2 and not (after & before), (after, before)

    os.kill(p.pid, signal.SIGTTIN)
    wait_err(p, r"SIGTTIN: one worker more \(3 workers\)")
    wait_err(p, r"worker 5 \(pid \d+\) ready")  # ids 1, 2, then 3, 4 for the rollout
    assert len(collect(p, 3)) == 3
    os.kill(p.pid, signal.SIGTTOU)
    wait_err(p, r"SIGTTOU: one worker fewer \(2 workers\)")
    # The newest one drains (all are ready), and exits once disconnected.
    drained = wait_err(p, r"worker 5 \(pid (\d+)\) exited \(code 0\) after a disconnect")
    assert not running(int(drained.group(1)))
    assert len(worker_pids(p)) == 2
