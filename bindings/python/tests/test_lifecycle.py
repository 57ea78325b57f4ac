"""Exit codes and signals, graceful disconnects (both sides and cluster-wide)."""

from conftest import http_get


def exit_of(p, id):
    return p.wait(lambda o: o.get("event") == "exit" and o["id"] == id)


def test_exit_code(driver):
    p = driver()
    p.cmd('fork {"DRIVER_WORKER": "exit", "EXIT_CODE": "7"}')
    e = exit_of(p, 1)
    assert (e["code"], e["signal"], e["ead"]) == (7, None, False)
    assert (e["state"], e["dead"], e["connected"]) == ("dead", True, False)


def test_exit_by_signal(driver):
    p = driver()
    p.cmd('fork {"DRIVER_WORKER": "idle"}')
    p.cmd('fork {"DRIVER_WORKER": "idle"}')
    p.wait_all(lambda o: o.get("event") == "message" and "ready" in o["message"], 2)
    p.cmd("kill 1 SIGKILL")
    p.cmd("kill 2")  # Node's default: SIGTERM
    e1, e2 = exit_of(p, 1), exit_of(p, 2)
    assert (e1["code"], e1["signal"], e1["ead"]) == (None, "SIGKILL", False)
    assert (e2["code"], e2["signal"], e2["ead"]) == (None, "SIGTERM", False)
    assert e1["dead"] and e2["dead"]


def test_primary_disconnects_a_serving_worker(driver):
    p = driver()
    p.cmd("fork {}")
    listening = p.wait(lambda o: o.get("event") == "listening")
    p.wait(lambda o: o.get("event") == "message" and "ready" in o["message"])
    assert (listening["address"], listening["addressType"]) == ("127.0.0.1", 4)
    status, body = http_get(listening["port"], "/before")
    assert (status, body) == (200, f"py worker {listening['pid']} /before\n")
    p.cmd("disconnect 1")
    d = p.wait(lambda o: o.get("event") == "disconnect")
    e = exit_of(p, 1)
    assert d["ead"] is True
    assert (e["code"], e["signal"], e["ead"]) == (0, None, True)
    # The worker saw its own 'disconnect' and left serve_forever on its own.
    p.wait(lambda o: o.get("worker_event") == "disconnect" and o["pid"] == listening["pid"])
    p.wait(lambda o: o.get("worker_event") == "done" and o["pid"] == listening["pid"])


def test_worker_disconnects_itself(driver):
    p = driver()
    p.cmd('fork {"SELF_DISCONNECT": "1"}')
    e = exit_of(p, 1)
    assert (e["code"], e["signal"], e["ead"]) == (0, None, True)
    p.wait(lambda o: o.get("event") == "disconnect" and o["ead"] is True)


def test_cluster_disconnect_runs_the_callback_once_workers_is_empty(driver):
    p = driver()
    p.cmd("fork {}")
    p.cmd("fork {}")
    # Ready (not just listening): a worker disconnected before its own send would fail it.
    p.wait_all(lambda o: o.get("event") == "message" and "ready" in o["message"], 2)
    p.cmd("workers")
    assert len(p.wait(lambda o: o.get("event") == "workers")["workers"]) == 2
    p.cmd("disconnect_all")
    assert p.wait(lambda o: o.get("event") == "disconnecting")["count"] == 2
    assert p.wait(lambda o: o.get("event") == "drained")["workers"] == 0
    exits = p.wait_all(lambda o: o.get("event") == "exit", 2)
    assert all((e["code"], e["ead"]) == (0, True) for e in exits), p.output()


def test_silent_workers_stdio_is_piped_to_the_primary(driver):
    p = driver()
    p.cmd('setup {"silent": true}')
    p.cmd('fork {"DRIVER_WORKER": "print"}')
    pid = p.wait(lambda o: o.get("event") == "forked")["pid"]
    out = p.wait(lambda o: o.get("event") == "stdout")
    err = p.wait(lambda o: o.get("event") == "stderr")
    assert out["data"] == f"to stdout from {pid}\n"
    assert err["data"] == f"to stderr from {pid}\n"
    e = exit_of(p, 1)
    assert (e["code"], e["signal"]) == (3, None)


def test_run_in_a_worker_returns_once_disconnected(driver):
    p = driver()
    p.cmd('fork {"DRIVER_WORKER": "idle"}')
    ready = p.wait(lambda o: o.get("event") == "message" and "ready" in o["message"])
    p.cmd('send 1 {"ping": 1}')
    p.wait(lambda o: o.get("event") == "message" and o["message"].get("echo") == {"ping": 1})
    p.cmd("disconnect 1")
    p.wait(lambda o: o.get("worker_event") == "done" and o["pid"] == ready["pid"])
    e = exit_of(p, 1)
    assert (e["code"], e["signal"], e["ead"]) == (0, None, True)


def test_reuseport_policy_serves_and_loses_nothing_when_a_worker_dies(driver):
    p = driver(NODE_CLUSTER_SCHED_POLICY="reuseport")
    p.cmd("fork {}")
    p.cmd("fork {}")
    ls = p.wait_all(lambda o: o.get("event") == "listening", 2)
    p.wait_all(lambda o: o.get("event") == "message" and "ready" in o["message"], 2)
    port = ls[0]["port"]
    assert ls[1]["port"] == port
    pids = {l["pid"] for l in ls}
    seen = set()
    for i in range(40):
        status, body = http_get(port, f"/{i}")
        assert status == 200
        seen.add(int(body.split()[2]))
        if seen == pids:
            break
    assert seen == pids, "the kernel deals to each worker's own listener"
    # Worker 1 dies: what the kernel hashes to its listener is served by worker 2.
    p.cmd("kill 1 SIGKILL")
    exit_of(p, 1)
    survivor = next(l["pid"] for l in ls if l["id"] == 2)
    for i in range(20):
        assert http_get(port, f"/after{i}") == (200, f"py worker {survivor} /after{i}\n")


def test_python_workers_take_the_fast_lane_unless_it_is_off(driver):
    for env, kind in (({}, "seqpacket"), ({"LIBCLUSTER_FAST_LANE": "0"}, "not-socket")):
        p = driver(**env)
        p.cmd("fork {}")
        ready = p.wait(lambda o: o.get("event") == "message" and "ready" in o["message"])["message"]
        assert ready["fd_kind"] == kind, (env, ready)
        status, body = http_get(ready["port"], "/lane")
        assert (status, body) == (200, f"py worker {ready['ready']} /lane\n")
        p.cmd("kill 1 SIGKILL")
        exit_of(p, 1)
