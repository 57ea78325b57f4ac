"""Hot upgrade of a Python primary (libcluster.upgrade, SIGUSR2; docs/upgrade.md): the old
primary starts the same interpreter on the same script as a new primary, which takes over
the port once its workers are ready; the old one drains and exits. Real processes
(examples/python/hello.py, tests/apps/sup_app.py, the `python -m libcluster` runner) under a
bounded HTTP load; every process is stopped by pid at the end (the `procs` fixture: the new
primary and its workers are learnt from the output lines naming them, since once the old
primary is gone they are no longer its descendants). No timing assertions.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import sys
import time
from typing import Any, Dict, Optional, Set

import pytest

import libcluster
from libcluster import _ffi
from conftest import APPS, ROOT, TIMEOUT, http_get, running
from httpload import Load

HELLO = ROOT / "examples" / "python" / "hello.py"
SUP = APPS / "sup_app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parent_of(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def wait_gone(pid: int, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def event(p: Any, name: str, start: int = 0, **match: Any) -> Dict[str, Any]:
    return p.wait(lambda o: o.get("event") == name and all(o.get(k) == v for k, v in match.items()), start=start)


def upgrade_info(p: Any, state: str, start: int = 0, **match: Any) -> Dict[str, Any]:
    """The next 'upgrade' event's info with `state` (and the given fields): both primaries
    print theirs here."""
    return p.wait(lambda o: o.get("event") == "upgrade" and o["info"]["state"] == state
                  and all(o["info"].get(k) == v for k, v in match.items()), start=start)["info"]


def served_by(port: int, n: int = 12) -> Set[int]:
    """Who answers `n` new connections now (each must be a 200)."""
    pids = set()
    for i in range(n):
        status, body = http_get(port, f"/after{i}")
        assert status == 200, (status, body)
        pids.add(int(re.search(r"worker (\d+)", body).group(1)))
    return pids


def test_the_binding_checks_its_arguments_and_reports_no_upgrade_here():
    # This process is a primary no upgrade started; nothing here starts one.
    assert libcluster.is_upgrade() is False
    for bad, exc in [(-1, ValueError), (0, ValueError), ("5", TypeError), (True, TypeError)]:
        with pytest.raises(exc):
            libcluster.upgrade(ready_timeout=bad)
    assert set(_ffi.UPGRADE_STATES.values()) == {"started", "ready", "done", "aborted"}
    assert "upgrade" in _ffi.ACTIONS.values() and signal.SIGUSR2 in libcluster._supervision.SIGNALS


def test_sigusr2_hands_hello_py_over_to_a_new_primary_under_load(procs):
    port = free_port()
    p = procs([sys.executable, HELLO], PORT=str(port), WORKERS="2", DRAIN_MS="5000", KILL_MS="2000")
    old = int(p.wait(r"^Primary (\d+) is running$").group(1))
    before: Set[int] = set()
    while len(before) < 2:
        before.add(int(p.wait(r"^worker (\d+) ready$", start=p.last_index).group(1)))
    keep = Load(port, clients=4)
    close = Load(port, clients=2, close=True)
    try:
        assert keep.wait_ok(100) and close.wait_ok(20), (keep.failures[:3], close.failures[:3])
        mark = len(p.lines)
        os.kill(old, signal.SIGUSR2)
        m = p.wait(rf"^upgrade started: primary {old} \(other primary (\d+), error 0\)$", start=mark)
        new = int(m.group(1))
        p.pids.add(new)
        p.wait(rf"^Primary {new} is running \(started by a hot upgrade\)$", start=mark)
        p.wait(rf"^upgrade ready: primary {new} \(other primary {old}, error 0\)$", start=mark)
        p.wait(rf"^upgrade ready: primary {old} \(other primary {new}, error 0\)$", start=mark)
        after = {int(x) for x in re.findall(r"^worker (\d+) ready$", "\n".join(p.lines[mark:]), re.M)} - before
        assert len(after) == 2 and all(parent_of(w) == new for w in after), (after, p.output())
        # The old primary drains its workers (each exits on its own, code 0) and exits 0.
        assert p.exit_code() == 0, p.output()
        for w in before:
            p.wait(rf"^worker {w} died \(code 0\)$", start=mark)
            assert wait_gone(w), f"old worker {w} still runs"
        p.wait(rf"^upgrade done: primary {new} \(other primary {old}, error 0\)$", start=mark)
        all_new_at = time.monotonic()
        assert keep.wait_ok(keep.ok + 100) and close.wait_ok(close.ok + 20)
    finally:
        keep.stop()
        close.stop()
    failures = keep.failures + close.failures
    assert not failures, f"{len(failures)} failed: {failures[:5]}\n{p.output()}"
    print(f"hello.py upgrade: {keep.ok} keep-alive ({keep.retried} retried on a new connection) "
          f"and {close.ok} close-mode requests, 0 failed")
    assert (keep.pids_since(all_new_at) | close.pids_since(all_new_at)) <= after
    assert served_by(port) <= after
    assert running(new) and parent_of(new) != old

    # The new primary stops gracefully on TERM, its workers with it.
    mark = len(p.lines)
    os.kill(new, signal.SIGTERM)
    p.wait(r"^primary stopped$", start=mark)
    assert wait_gone(new) and all(wait_gone(w) for w in after), p.output()


def test_upgrade_returns_the_new_primary_and_a_failed_one_changes_nothing(procs, tmp_path):
    port = free_port()
    hang = tmp_path / "hang"
    hang.touch()
    p = procs([sys.executable, SUP], WORKERS="2", PORT=str(port), UPGRADE_HANG_FILE=str(hang))
    old = event(p, "primary")["pid"]
    assert event(p, "primary")["is_upgrade"] is False
    before = {o["pid"] for o in p.wait_all(lambda o: o.get("event") == "ready", 2)}

    # A new primary that never gets ready: killed at the timeout; meanwhile a second upgrade
    # is refused (BusyError), and the old workers serve on.
    mark = len(p.lines)
    p.cmd("upgrade 5")
    hung = p.wait(lambda o: "upgrade_pid" in o, start=mark)["upgrade_pid"]
    p.pids.add(hung)
    assert upgrade_info(p, "started", mark)["pid"] == hung
    p.cmd("upgrade -")
    refused = p.wait(lambda o: o.get("line") == "upgrade -", start=mark)
    assert refused["error"].startswith("BusyError"), refused
    event(p, "hanging", start=mark, pid=hung)
    aborted = upgrade_info(p, "aborted", mark)
    assert (aborted["pid"], aborted["error"]) == (hung, -errno.ETIMEDOUT), aborted
    assert "upgrade aborted" in p.wait(lambda o: o.get("event") == "error", start=mark)["message"]
    assert wait_gone(hung) and all(running(w) for w in before)
    assert served_by(port) <= before

    # The same call once the new program is sound: the new primary takes over.
    hang.unlink()
    mark = len(p.lines)
    p.cmd("upgrade -")
    new = p.wait(lambda o: "upgrade_pid" in o, start=mark)["upgrade_pid"]
    p.pids.add(new)
    assert event(p, "primary", start=mark, pid=new)["is_upgrade"] is True
    upgrade_info(p, "ready", mark, pid=new)  # the old primary hands over
    upgrade_info(p, "ready", mark, pid=old)  # the new one serves
    event(p, "run_returned", start=mark)
    assert p.exit_code() == 0, p.output()
    upgrade_info(p, "done", mark, pid=old)
    assert all(wait_gone(w) for w in before)
    after = served_by(port)
    assert after and not (after & before) and all(parent_of(w) == new for w in after), (after, before)
    p.pids |= after
    os.kill(new, signal.SIGTERM)
    assert wait_gone(new) and all(wait_gone(w) for w in after), p.output()


def test_the_runner_hands_over_on_sigusr2_under_load(procs):
    port = free_port()
    p = procs([sys.executable, "-m", "libcluster", "--workers", "2", "--bind", f"127.0.0.1:{port}",
               "--log-level", "debug", "runner_wsgi:app"], cwd=APPS)

    def err(pattern: str, start: int = 0) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in list(p.err)[start:]:
                found = re.search(pattern, line)
                if found:
                    return found
            time.sleep(0.02)
        pytest.fail(f"no stderr line matching {pattern!r}:\n{p.output()}")

    err(r"serving runner_wsgi:app \(wsgi\) on http://127\.0\.0\.1:\d+ with 2 workers")
    before = {int(err(rf"worker {i} \(pid (\d+)\) listening").group(1)) for i in (1, 2)}
    p.pids |= before
    keep = Load(port, clients=2)
    close = Load(port, clients=1, close=True)
    try:
        assert keep.wait_ok(50) and close.wait_ok(10), (keep.failures[:3], close.failures[:3])
        mark = len(p.err)
        os.kill(p.pid, signal.SIGUSR2)
        new = int(err(r"hot upgrade: new primary (\d+) started", mark).group(1))
        p.pids.add(new)
        err(rf"hot upgrade: new primary {new} ready; draining 2 worker\(s\)", mark)
        assert p.exit_code() == 0, p.output()
        err(rf"handed over to primary {new}", mark)
        err(r"hot upgrade: done \(the old primary \d+ is gone\)", mark)
        assert all(wait_gone(w) for w in before)
        all_new_at = time.monotonic()
        assert keep.wait_ok(keep.ok + 50) and close.wait_ok(close.ok + 10)
    finally:
        keep.stop()
        close.stop()
    failures = keep.failures + close.failures
    assert not failures, f"{len(failures)} failed: {failures[:5]}\n{p.output()}"
    print(f"runner upgrade: {keep.ok} keep-alive and {close.ok} close-mode requests, 0 failed")
    after = served_by(port)
    p.pids |= after
    assert after and not (after & before) and all(parent_of(w) == new for w in after)
    assert (keep.pids_since(all_new_at) | close.pids_since(all_new_at)) <= after
    os.kill(new, signal.SIGTERM)
    assert wait_gone(new) and all(wait_gone(w) for w in after), p.output()
