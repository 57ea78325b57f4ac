"""Ctrl-C on the process group and SIGTERM to the primary, with real processes: the
primary disconnects its workers, logs one line and exits 128 + signal; workers exit 0,
quietly (no KeyboardInterrupt traceback anywhere)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import APPS, ROOT, child_env, ours, running

HELLO = ROOT / "examples" / "python" / "hello.py"


class Group:
    """A primary started in its own session (so it leads a process group), its output
    read to the end, its workers learnt from {"ready": pid} lines and killed at the end."""

    def __init__(self, argv, **env):
        self.p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=child_env(**env), cwd=str(ROOT),
                                  start_new_session=True)
        self.pids = set()

    def wait_ready(self, n, pattern=None, timeout=20.0):
        os.set_blocking(self.p.stdout.fileno(), False)
        buf, deadline = b"", time.monotonic() + timeout
        self.lines = []
        while len(self.pids) < n:
            if time.monotonic() > deadline or self.p.poll() is not None:
                pytest.fail(f"workers not ready: {buf!r} {self.p.stderr.read() if self.p.poll() is not None else ''}")
            chunk = self.p.stdout.read() or b""
            buf += chunk
            *done, buf = buf.split(b"\n")
            for line in done:
                self.lines.append(line.decode())
                if pattern is not None:
                    import re
                    m = re.match(pattern, line.decode())
                    if m:
                        self.pids.add(int(m.group(1)))
                else:
                    try:
                        self.pids.add(json.loads(line)["ready"])
                    except (ValueError, KeyError, TypeError):
                        pass
            time.sleep(0.05)
        os.set_blocking(self.p.stdout.fileno(), True)
        self.rest = buf

    def finish(self, timeout=20.0):
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.p.communicate(timeout=5)
            pytest.fail(f"the primary did not exit:\n{out.decode()}\n{err.decode()}")
        return self.p.returncode, "\n".join(self.lines) + "\n" + (self.rest + out).decode(), err.decode()

    def kill(self):
        for pid in [self.p.pid, *self.pids]:
            if running(pid) and ours(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def group():
    started = []

    def start(argv, **env):
        g = Group(argv, **env)
        started.append(g)
        return g

    yield start
    for g in started:
        g.kill()
        try:
            g.p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def exits(out):
    return [o for o in map(_json, out.splitlines()) if o and o.get("event") == "exit"]


def _json(line):
    try:
        o = json.loads(line)
    except ValueError:
        return None
    return o if isinstance(o, dict) else None


def gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(running(p) for p in pids)


@pytest.mark.parametrize("mode", ["http", "asyncio", "idle"])
def test_ctrl_c_on_the_process_group(group, mode):
    g = group([sys.executable, APPS / "sig_app.py"], MODE=mode, WORKERS="3")
    g.wait_ready(3)
    os.killpg(g.p.pid, signal.SIGINT)
    code, out, err = g.finish()
    assert code == 128 + signal.SIGINT, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # One line. Its count is the workers still connected when the primary handled the signal:
    # a worker that got the same Ctrl-C may have left already.
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"SIGINT: stopping [0-3] workers? \(again to kill them\)", lines[0]), err
    ex = exits(out)
    assert len(ex) == 3 and all((e["code"], e["signal"], e["ead"]) == (0, None, True) for e in ex), out
    assert "run returned" not in out
    assert gone(g.pids)


def test_sigterm_to_the_primary_stops_the_workers_gracefully(group):
    g = group([sys.executable, APPS / "sig_app.py"], MODE="http", WORKERS="2")
    g.wait_ready(2)
    os.kill(g.p.pid, signal.SIGTERM)
    code, out, err = g.finish()
    assert code == 128 + signal.SIGTERM, (out, err)
    assert err.strip().splitlines() == ["SIGTERM: stopping 2 workers (again to kill them)"], err
    ex = exits(out)
    assert len(ex) == 2 and all((e["code"], e["signal"], e["ead"]) == (0, None, True) for e in ex), out
    assert gone(g.pids)


def test_ctrl_c_on_the_demo(group):
    # hello.py installs supervision's handlers, as hello.c does: SIGINT is a fast stop (its
    # workers get SIGTERM at once, nothing is respawned), then run() returns and it exits 0.
    g = group([sys.executable, HELLO], PORT="0", WORKERS="3")
    g.wait_ready(3, pattern=r"^worker (\d+) listening on ")
    os.killpg(g.p.pid, signal.SIGINT)
    code, out, err = g.finish()
    assert code == 0, (out, err)
    assert "Traceback" not in err and not err.strip(), err
    assert "signal 2: action stop_fast" in out.splitlines(), out
    assert out.splitlines()[-1] == "primary stopped", out
    # Its workers ignore SIGINT (the primary's stop ends them): none left, none replaced.
    assert len(re.findall(r"^worker \d+ died \(signal 15\)$", out, re.M)) == 3, out
    assert gone(g.pids)


def test_sigint_to_one_worker_makes_it_leave_quietly(group):
    g = group([sys.executable, APPS / "sig_app.py"], MODE="http", WORKERS="2")
    g.wait_ready(2)
    victim = min(g.pids)
    os.kill(victim, signal.SIGINT)
    assert gone([victim])
    os.kill(g.p.pid, signal.SIGTERM)
    code, out, err = g.finish()
    assert code == 128 + signal.SIGTERM
    assert "Traceback" not in err, err
    ex = {e["pid"]: e for e in exits(out)}
    assert (ex[victim]["code"], ex[victim]["ead"]) == (0, True), out
