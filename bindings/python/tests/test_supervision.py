"""Supervision from Python: respawn, rolling restarts under load, stats, readiness, drains
and signals, with real processes (tests/apps/sup_app.py and examples/python/hello.py),
every one stopped by pid at the end (the `procs` fixture); plus the binding's own checks
in this process (arguments, names from the header, signal handlers).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Set

import pytest

import libcluster
from libcluster import _cluster, _dispatch, _ffi, _fork, _run, _supervision
from conftest import APPS, ROOT, http_get, running
from httpload import Load, Retry
from httpload import exchange as _exchange

SUP = APPS / "sup_app.py"
HELLO = ROOT / "examples" / "python" / "hello.py"


def event(p: Any, name: str, start: int = 0, **match: Any) -> Dict[str, Any]:
    """The next {"event": name, ...} line of `p` (from index `start`) with the given fields."""
    return p.wait(lambda o: o.get("event") == name and all(o.get(k) == v for k, v in match.items()), start=start)


def cmd_result(p: Any, line: str, key: str) -> Any:
    """Sends a command and returns the `key` of the line it printed before its ack."""
    start = len(p.lines)
    p.send(line)
    p.wait(lambda o: o.get("ack") == line, start=start)
    for raw in p.lines[start:]:
        o = p._match(lambda o: key in o or "error" in o, raw)
        if o:
            assert "error" not in o, o
            return o[key]
    pytest.fail(f"{line}: no {key} line:\n{p.output()}")


def json_after(line: str, prefix: str) -> Dict[str, Any]:
    return json.loads(line[len(prefix):])


def conserved(w: Dict[str, Any]) -> bool:
    return w["handed"] == w["received"] + w["queued"] + w["rerouted"] + w["lost"]


# --------------------------------------------------------------------------- real processes


def start_sup(procs: Any, workers: int = 2, **env: str) -> Any:
    p = procs([sys.executable, SUP], WORKERS=str(workers), **env)
    event(p, "primary")
    return p


def ready_workers(p: Any, n: int) -> Dict[int, int]:
    """{id: pid} of the first `n` workers ready."""
    return {o["id"]: o["pid"] for o in p.wait_all(lambda o: o.get("event") == "ready", n)[:n]}


def test_a_worker_killed_with_sigkill_is_respawned_and_serves(procs):
    p = start_sup(procs, workers=2)
    before = ready_workers(p, 2)
    port = event(p, "listening")["port"]
    for i in range(6):
        assert http_get(port, f"/a{i}")[0] == 200
    victim_id, victim = min(before.items())
    os.kill(victim, signal.SIGKILL)
    exited = event(p, "exit", id=victim_id)
    assert (exited["code"], exited["signal"], exited["ead"]) == (None, "SIGKILL", False)
    respawn = event(p, "respawn")["info"]
    assert respawn["count"] == 1 and 25 <= respawn["delay_ms"] <= 50, respawn  # backoff_base 0.05 s, upper half
    new = event(p, "ready", start=p.last_index)
    assert new["pid"] not in before.values() and new["id"] > max(before)
    p.pids.add(new["pid"])
    seen = set()
    for i in range(40):
        status, body = http_get(port, f"/b{i}")
        assert status == 200
        seen.add(int(body.split()[1]))
        if new["pid"] in seen:
            break
    assert new["pid"] in seen and victim not in seen, p.output()
    assert not running(victim)

    stats = cmd_result(p, "stats", "stats")
    assert (stats["target"], stats["workers"], stats["ready"], stats["respawns"]) == (2, 2, 2, 1), stats
    assert (stats["breaker"], stats["stopping"], stats["generation"]) == ("closed", "no", 1), stats
    by_id = {w["id"]: w for w in stats["per_worker"]}
    assert set(by_id) == set(before) | {new["id"]}
    gone = by_id[victim_id]
    assert (gone["alive"], gone["exit"], gone["exit_signal"], gone["pid"]) == (False, "crash", signal.SIGKILL, victim)
    assert all(conserved(w) for w in stats["per_worker"]), stats
    assert sum(w["handed"] for w in stats["per_worker"]) >= 6 + len(seen)  # one request per answer at least
    # The per-worker accessor gives the same figures (a gone worker's no longer move).
    assert cmd_result(p, f"worker_stats {victim_id}", "worker_stats") == gone
    one = cmd_result(p, f"worker_stats {new['id']}", "worker_stats")
    assert (one["pid"], one["alive"], one["ready"], one["exit"]) == (new["pid"], True, True, None) and conserved(one)


def test_sighup_rolling_restart_replaces_every_worker_without_a_failed_request(procs):
    # The demo, as a user runs it: its own signal handlers (install_signal_handlers).
    p = procs([sys.executable, HELLO], PORT="0", WORKERS="3")
    primary = int(p.wait(r"^Primary (\d+) is running$").group(1))
    old: Set[int] = set()
    idx = 0
    while len(old) < 3:
        m = p.wait(r"^worker (\d+) ready$", start=idx)
        idx = p.last_index
        old.add(int(m.group(1)))
    port = int(p.wait(r"^worker \d+ listening on 127\.0\.0\.1:(\d+)$").group(1))
    load = Load(port, clients=4)
    try:
        time.sleep(0.3)
        os.kill(primary, signal.SIGHUP)
        p.wait(r"^signal 1: action reload$")
        hup_line = p.last_index
        p.wait(r"^rollout done generation 2 \(3 replaced\)$")
        done_line = p.last_index
        # The old workers finish what they had read (answering Connection: close), then exit.
        for pid in old:
            p.wait(rf"^worker {pid} died \(code 0\)$")
        all_new_at = time.monotonic()
        time.sleep(0.4)
    finally:
        load.stop()
    new = {int(m.group(1)) for m in (re.match(r"^worker (\d+) ready$", line) for line in p.lines[hup_line:]) if m}
    p.pids |= new
    assert not load.failures, f"{len(load.failures)} failed of {load.ok}: {load.failures[:5]}\n{p.output()}"
    assert load.ok > 50, load.ok
    assert len(new) == 3 and not (new & old) and all(running(pid) for pid in new), (new, old)
    assert not any(running(pid) for pid in old)
    answered = load.pids_since(all_new_at)
    assert answered and answered <= new, (answered, new)  # keep-alive clients stick to some of them
    print(f"{load.ok} requests, {load.retried} retried on a new connection")

    # Stats after the rollout: every worker's connections are accounted for.
    stats = json_after(p.wait(r"^stats ", start=done_line).string, "stats ")  # printed after "rollout done"
    assert stats["generation"] == 2 and stats["rollout"] == 0
    serving = [w for w in stats["per_worker"] if w["alive"] and not w["draining"]]
    assert stats["ready"] == 3 and {w["pid"] for w in serving} == new, stats
    assert all(conserved(w) for w in stats["per_worker"]), stats

    # SIGTERM: a graceful stop; the primary prints its last stats and exits 0.
    os.kill(primary, signal.SIGTERM)
    assert p.exit_code() == 0, p.output()
    p.wait(r"^signal 15: action stop_graceful$")
    p.wait(r"^primary stopped$")
    final = json_after(p.lines[-2], "stats ")
    assert final["stopping"] == "graceful" and not any(w["alive"] for w in final["per_worker"]), final
    assert all(conserved(w) for w in final["per_worker"]), final
    # Every connection the clients made was handed to a worker (once more for each reroute).
    handed = sum(w["handed"] - w["rerouted"] for w in final["per_worker"])
    assert handed == load.connections and sum(w["lost"] for w in final["per_worker"]) == 0, (handed, load.connections)


def test_explicit_readiness_waits_for_worker_ready(procs, tmp_path):
    gate = tmp_path / "ready"
    p = start_sup(procs, workers=1, READY_ON="explicit", READY_FILE=str(gate))
    listening = event(p, "listening")
    p.wait(lambda o: o.get("listening_worker") == listening["pid"])
    time.sleep(0.5)  # listening, but not ready until it says so
    assert not [o for o in p.objects() if o.get("event") == "ready"], p.output()
    w = cmd_result(p, f"worker_stats {listening['id']}", "worker_stats")
    assert (w["alive"], w["ready"], w["ready_ms"]) == (True, False, -1), w
    gate.touch()
    p.wait(lambda o: o.get("calling_ready") == listening["pid"])
    said = p.last_index
    ready = event(p, "ready", id=listening["id"])
    assert p.last_index > said, "'ready' comes after the worker's worker_ready()"
    assert ready["pid"] == listening["pid"]
    w = cmd_result(p, f"worker_stats {listening['id']}", "worker_stats")
    assert w["ready"] is True and w["ready_ms"] >= w["forked_ms"] >= 0, w


def test_a_drain_makes_worker_draining_true_and_closes_keep_alive(procs, tmp_path):
    p = start_sup(procs, workers=2, DRAIN_S="10")
    workers = ready_workers(p, 2)
    for pid in workers.values():
        p.wait(lambda o: o.get("serving") == pid and o.get("draining") is False)
    port = event(p, "listening")["port"]
    release = tmp_path / "release"
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    result: Dict[str, Any] = {}

    def slow() -> None:
        try:
            result["r"] = _exchange(sock, f"/slow?until={release}")
        except Exception as e:  # noqa: BLE001 - asserted below
            result["r"] = e

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    pid = p.wait(lambda o: "slow_started" in o)["slow_started"]
    wid = next(i for i, w in workers.items() if w == pid)
    p.cmd(f"drain {wid}")
    d = event(p, "draining", id=wid)
    assert d["info"]["state"] == "disconnect" and d["info"]["reason"] == "user", d
    p.wait(lambda o: o.get("draining_seen") == pid)
    assert p.popen.poll() is None and running(pid)
    release.touch()
    t.join(15)
    status, headers, body = result["r"]
    assert (status, body.split()[1], headers["connection"]) == (200, str(pid), "close"), result
    p.wait(lambda o: o.get("left") == pid and o.get("draining") is True)
    e = event(p, "exit", id=wid)
    assert (e["code"], e["ead"]) == (0, True), e
    # A supervised primary replaced it at once.
    replacement = p.wait(lambda o: o.get("event") == "ready" and o["id"] not in workers)
    p.pids.add(replacement["pid"])
    with pytest.raises((OSError, Retry)):
        _exchange(sock, "/after")  # the drained worker closed it
    sock.close()
    w = cmd_result(p, f"worker_stats {wid}", "worker_stats")
    assert (w["exit"], w["draining"], w["alive"]) == ("asked", True, False) and conserved(w), w


def test_without_install_signal_handlers_no_handler_is_installed(procs):
    p = start_sup(procs, workers=2, CHECK_HANDLERS="1")
    first = event(p, "primary")
    before = first["handlers_before_import"]
    assert first["handlers_after_import"] == before
    assert event(p, "handlers_after_supervise")["handlers"] == before
    old = ready_workers(p, 2)
    assert event(p, "handlers_in_listener")["handlers"] == before
    start = len(p.lines)
    p.cmd("restart")
    p.wait(lambda o: o.get("event") == "rollout" and o["info"]["state"] == "done", start=start)
    p.cmd("scale 3")
    p.wait_all(lambda o: o.get("event") == "ready", 5)
    # supervise() settings accumulate: without `workers`, the target scale() set stays.
    p.cmd('supervise {"kill_after": 2.0}')
    assert cmd_result(p, "stats", "stats")["target"] == 3
    new_id = max(o["id"] for o in p.objects() if o.get("event") == "ready")
    p.cmd(f"drain {new_id}")
    event(p, "exit", id=new_id)
    assert cmd_result(p, "handlers", "handlers") == before
    p.cmd("control stop_graceful")
    end = event(p, "run_returned")
    assert end["handlers"] == before, (end, before)
    assert end["stats"]["stopping"] == "graceful" and not any(w["alive"] for w in end["stats"]["per_worker"])
    assert p.exit_code() == 0
    assert len(old) == 2
    assert not [o for o in p.objects() if "error" in o], p.output()  # every command succeeded


def test_sigterm_to_a_supervised_run_drains_every_worker_and_exits_143(procs):
    # No install_signal_handlers(): run()'s own handling, as without supervision, except
    # that the workers are drained (supervision's graceful stop) and none is respawned.
    p = start_sup(procs, workers=2)
    ready_workers(p, 2)
    os.kill(p.pid, signal.SIGTERM)
    assert p.exit_code() == 128 + signal.SIGTERM, p.output()
    drains = p.wait_all(lambda o: o.get("event") == "draining", 2)
    assert sorted(d["id"] for d in drains) == [1, 2], p.output()
    assert all((d["info"]["state"], d["info"]["reason"]) == ("disconnect", "stop") for d in drains)
    exits = p.wait_all(lambda o: o.get("event") == "exit", 2)
    assert sorted(e["id"] for e in exits) == [1, 2] and all((e["code"], e["ead"]) == (0, True) for e in exits)
    assert [o["id"] for o in p.objects() if o.get("event") == "fork"] == [1, 2], "nothing respawned"
    deadline = time.monotonic() + 5
    while not p.err and time.monotonic() < deadline:  # the reader thread may lag the exit
        time.sleep(0.02)
    assert p.err == ["SIGTERM: stopping 2 workers (again to kill them)"], p.err


# --------------------------------------------------------------------------- in this process


def test_supervision_names_come_from_the_header():
    h = _ffi.header
    kinds = {k: v for k, v in h.enums["cluster_event_type"].items()}
    names = {kinds[f"CLUSTER_EVENT_{n.upper()}"]: n for n in
             ("ready", "draining", "respawn", "breaker", "rollout", "stuck", "recycle", "control", "upgrade")}
    assert _ffi.SUPERVISION_EVENTS == names
    assert set(names.values()) <= set(_cluster._Cluster.EVENTS)
    assert {"ready", "draining", "stuck", "recycle"} <= set(libcluster.Worker.EVENTS)
    assert _ffi.ACTIONS[h.defines["CLUSTER_ACT_STOP_FAST"]] == "stop_fast"
    assert _ffi.BREAKER_STATES[h.defines["CLUSTER_BREAKER_HALF_OPEN"]] == "half_open"
    assert _ffi.E_BUSY == h.defines["CLUSTER_E_BUSY"]
    assert type(_ffi.error_for(_ffi.E_BUSY, "busy")) is libcluster.BusyError
    assert type(_ffi.error_for(_ffi.E_BREAKER_OPEN, "open")) is libcluster.BreakerOpenError
    s = _ffi.Supervisor.defaults()
    assert s.size == ctypes.sizeof(_ffi.Supervisor) and s.workers == 0 and s.ready_on == h.defines["CLUSTER_READY_LISTENING"]


def test_supervision_events_carry_named_fields():
    seen: List[Any] = []
    libcluster.on("draining", lambda w, info: seen.append(("cluster", w.id, info)))
    libcluster.on("rollout", lambda info: seen.append(("rollout", info)))
    libcluster.on("upgrade", lambda info: seen.append(("upgrade", info)))
    w = _fork._worker_by_id(4242, 77)
    w.once("draining", lambda info: seen.append(("worker", info)))
    try:
        ev = _ffi.Event()
        ev.kind = _ffi.C("CLUSTER_EVENT_DRAINING")
        ev.worker_id, ev.pid = 4242, 77
        ev.state, ev.reason = _ffi.C("CLUSTER_DRAIN_TERM"), _ffi.C("CLUSTER_REASON_ROLLOUT")
        _dispatch._emit_event(ev)
        ev = _ffi.Event()
        ev.kind = _ffi.C("CLUSTER_EVENT_ROLLOUT")
        ev.state, ev.generation, ev.count = _ffi.C("CLUSTER_ROLLOUT_DONE"), 3, 2
        _dispatch._emit_event(ev)
        ev = _ffi.Event()
        ev.kind = _ffi.C("CLUSTER_EVENT_UPGRADE")
        ev.state, ev.pid, ev.error = _ffi.C("CLUSTER_UPGRADE_ABORTED"), 4343, -110
        _dispatch._emit_event(ev)
    finally:
        for name in ("draining", "rollout", "upgrade"):
            _cluster.cluster._listeners.pop(name, None)
        _fork._registry.pop(4242, None)
    info = {"state": "term", "reason": "rollout", "generation": 0, "delay_ms": 0, "count": 0, "signal": None,
            "pid": 0, "error": 0}
    assert seen[0] == ("worker", info) and seen[1] == ("cluster", 4242, info)
    assert seen[2] == ("rollout", {"state": "done", "reason": None, "generation": 3, "delay_ms": 0, "count": 2,
                                   "signal": None, "pid": 0, "error": 0})
    # A hot upgrade's: the other primary's pid, and why it was aborted.
    assert seen[3] == ("upgrade", {"state": "aborted", "reason": None, "generation": 0, "delay_ms": 0, "count": 0,
                                   "signal": None, "pid": 4343, "error": -110})


def test_arguments_are_checked_before_the_library_is_called():
    with pytest.raises(ValueError):
        libcluster.supervise(workers=-1)
    with pytest.raises(ValueError):
        libcluster.supervise(2, drain_timeout=-1.0)
    with pytest.raises(ValueError):
        libcluster.supervise(2, boot_timeout=1e9)  # past a C int of milliseconds
    with pytest.raises(TypeError):
        libcluster.supervise(2, stable_after="30")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        libcluster.supervise(2, ready_on="eventually")
    with pytest.raises(ValueError):
        libcluster.control("restart")
    with pytest.raises(ValueError):
        libcluster.scale(0)
    with pytest.raises(ValueError):
        libcluster.rolling_restart(-1)
    with pytest.raises(ValueError):
        libcluster.handle_signal("SIGNOPE")
    with pytest.raises(OSError) as info:
        libcluster.handle_signal(0)  # the library's EINVAL, with its own message
    assert info.value.errno == 22
    with pytest.raises(libcluster.WrongRoleError):
        libcluster.worker_draining()
    with pytest.raises(libcluster.WrongRoleError):
        libcluster.worker_ready()
    assert _run._supervising is False  # nothing above turned supervision on


def test_install_signal_handlers_takes_only_signals_at_their_default():
    saved = {s: signal.getsignal(s) for s in _supervision.SIGNALS}
    mine = lambda n, f: None  # noqa: E731
    try:
        for s in _supervision.SIGNALS:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
        signal.signal(signal.SIGTERM, mine)
        installed = libcluster.install_signal_handlers()
        assert installed == [signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGINT, signal.SIGUSR2]
        assert all(signal.getsignal(s) is _supervision._on_signal for s in installed)
        assert signal.getsignal(signal.SIGTERM) is mine
        assert libcluster.install_signal_handlers() == []  # twice: nothing more
        libcluster.restore_signal_handlers()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        libcluster.restore_signal_handlers()
        for s, h in saved.items():
            signal.signal(s, h)
