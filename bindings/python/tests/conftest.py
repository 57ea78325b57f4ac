"""Shared fixtures: real processes, tracked by pid and always stopped.

Every process a test starts goes through the `procs` fixture. Its finalizer, pass or fail,
closes the primary's stdin (the test primaries then kill their workers), waits a bounded
time, then SIGKILLs every pid the test learnt (from output lines) or found below the
primary in /proc and that is still running. Every wait is bounded (TIMEOUT); an alarm
bounds each whole test.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import pytest

HERE = Path(__file__).resolve().parent
PKG = HERE.parent  # bindings/python
ROOT = PKG.parent.parent  # the repository
APPS = HERE / "apps"
NODE = HERE / "node"
TIMEOUT = 20.0  # seconds, for any single expected output line
TEST_LIMIT = 150  # seconds, for a whole test

LIBRARY = os.environ.setdefault("LIBCLUSTER_LIBRARY", str(ROOT / "target" / "debug" / "libcluster.so"))
if not os.path.exists(LIBRARY):
    pytest.exit(f"{LIBRARY} is missing: run `cargo build` first (or bindings/python/run-tests.sh)", returncode=4)
sys.path.insert(0, str(PKG))


def child_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["LIBCLUSTER_LIBRARY"] = LIBRARY
    env["PYTHONPATH"] = os.pathsep.join([str(PKG)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("NODE_UNIQUE_ID", None)
    env.pop("NODE_CHANNEL_FD", None)
    env.update(extra)
    return env


Pred = Union[str, Callable[[Any], bool]]


class Proc:
    """A started process whose stdout lines are collected (JSON lines parsed)."""

    PID_RE = re.compile(r"\b(?:[Ww]orker|Primary) (\d+)\b")

    def __init__(self, argv: List[str], env: Dict[str, str], cwd: Optional[Path] = None) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=str(cwd or ROOT),
        )
        self.pid = self.popen.pid
        self.lines: List[str] = []
        self.err: List[str] = []
        self.pids = {self.pid}
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(self.popen.stdout, self.lines, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.popen.stderr, self.err, False), daemon=True).start()

    def _read(self, stream: Any, into: List[str], learn: bool) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                into.append(line)
                if learn:
                    self._learn(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _learn(self, line: str) -> None:
        for m in self.PID_RE.finditer(line):
            self.pids.add(int(m.group(1)))
        try:
            obj = json.loads(line)
        except ValueError:
            return
        if isinstance(obj, dict) and isinstance(obj.get("pid"), int) and obj["pid"] > 0:
            self.pids.add(obj["pid"])

    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines) + "\n--- stderr ---\n" + "\n".join(self.err)

    @staticmethod
    def _match(pred: Pred, line: str) -> Any:
        if isinstance(pred, str):
            return re.search(pred, line)
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) and pred(obj) else None

    def wait(self, pred: Pred, timeout: float = TIMEOUT, start: int = 0) -> Any:
        """The first line from index `start` matching `pred` (a regex, or a predicate on a
        JSON object): the match or the object. Fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = self._match(pred, self.lines[i])
                    i += 1
                    if m:
                        self.last_index = i
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.5))
        pytest.fail(f"no line matching {pred!r} within {timeout}s from {self.argv}:\n{self.output()}")

    def wait_all(self, pred: Callable[[Any], bool], n: int, timeout: float = TIMEOUT) -> List[Any]:
        """`n` JSON objects matching `pred` (waits until there are)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [o for o in self.objects() if pred(o)]
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.5))
        pytest.fail(f"fewer than {n} lines matching within {timeout}s from {self.argv}:\n{self.output()}")

    def objects(self) -> List[Dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def cmd(self, line: str, timeout: float = TIMEOUT) -> None:
        """Sends a command line and waits for its {"ack": line}."""
        self.send(line)
        self.wait(lambda o: o.get("ack") == line, timeout)

    def exit_code(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.argv} did not exit within {timeout}s:\n{self.output()}")


def descendants(pid: int) -> List[int]:
    """Every process below `pid`, from /proc (taken before the parent dies)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def running(pid: int) -> bool:
    """True while `pid` runs (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def ours(pid: int) -> bool:
    """A guard against pid reuse: only python/node processes are ever killed."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return b"python" in cmd or b"node" in cmd


def stop(procs: List[Proc]) -> List[int]:
    """Stops every process of a test; returns the pids that had to be SIGKILLed."""
    tracked = set()
    for p in procs:
        tracked |= p.pids
        tracked.update(descendants(p.pid))
    for p in procs:
        try:
            if p.popen.stdin:
                p.popen.stdin.close()
        except OSError:
            pass
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        tracked |= p.pids
    killed = []
    for pid in sorted(tracked):
        if running(pid) and ours(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    for p in procs:
        try:
            p.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 5
    while any(running(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed


@pytest.fixture
def procs():
    """`spawn(argv, env_extra...)` starts a tracked process; all are stopped at the end."""
    started: List[Proc] = []

    def spawn(argv: List[str], cwd: Optional[Path] = None, **env: str) -> Proc:
        p = Proc([str(a) for a in argv], child_env(**env), cwd)
        started.append(p)
        return p

    yield spawn
    stop(started)


@pytest.fixture
def driver(procs):
    """The test primary (tests/apps/driver.py), steered with `cmd`."""

    def start(**env: str) -> Proc:
        return procs([sys.executable, APPS / "driver.py"], **env)

    return start


@pytest.fixture(autouse=True)
def _time_limit():
    """Bounds every test: SIGALRM raises in the main thread; fixtures still clean up."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"test exceeded {TEST_LIMIT}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def http_get(port: int, path: str = "/", timeout: float = 10.0) -> tuple:
    """One GET to 127.0.0.1:`port` (Connection: close): (status, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def node_available() -> bool:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
