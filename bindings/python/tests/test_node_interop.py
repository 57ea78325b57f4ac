"""Both directions with real Node.js: a Python primary running an unmodified Node worker
script, and a Node primary (node:cluster) running Python workers."""

import json
import re
import sys

import pytest

from conftest import NODE, ROOT, http_get, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="needs node on PATH")


def test_python_primary_runs_node_workers(driver):
    p = driver()
    p.cmd("setup " + json.dumps({"exec": "node", "args": [str(NODE / "worker.js")]}))
    p.cmd('fork {"PORT": "0"}')
    p.cmd('fork {"PORT": "0"}')
    assert not [o for o in p.objects() if o.get("event") == "command_error"], p.output()
    online = p.wait_all(lambda o: o.get("event") == "online", 2)
    listening = p.wait_all(lambda o: o.get("event") == "listening", 2)
    pids = {o["pid"] for o in listening}
    assert pids == {o["pid"] for o in online}
    assert {(o["address"], o["addressType"]) for o in listening} == {("127.0.0.1", 4)}
    ports = {o["port"] for o in listening}
    assert len(ports) == 1
    port = ports.pop()
    answered = set()
    for _ in range(30):
        status, body = http_get(port)
        assert status == 200
        m = re.fullmatch(r"node worker (\d+)\n", body)
        assert m, body
        answered.add(int(m.group(1)))
        if answered == pids:
            break
    assert answered == pids
    p.cmd("kill 1")
    p.cmd("disconnect 2")
    e1 = p.wait(lambda o: o.get("event") == "exit" and o["id"] == 1)
    e2 = p.wait(lambda o: o.get("event") == "exit" and o["id"] == 2)
    assert (e1["code"], e1["signal"], e1["ead"]) == (None, "SIGTERM", False)
    assert (e2["code"], e2["signal"], e2["ead"]) == (0, None, True)


def test_node_primary_runs_python_workers(procs):
    hello = ROOT / "examples" / "python" / "hello.py"
    p = procs(["node", NODE / "primary.js", sys.executable, hello, "2"])
    listening = p.wait_all(lambda o: o.get("event") == "listening", 2)
    online = p.wait_all(lambda o: o.get("event") == "online", 2)
    pids = {o["pid"] for o in listening}
    assert pids == {o["pid"] for o in online}
    assert {(o["address"], o["addressType"]) for o in listening} == {("127.0.0.1", 4)}
    ports = {o["port"] for o in listening}
    assert len(ports) == 1
    port = ports.pop()
    answered = set()
    for _ in range(30):
        status, body = http_get(port)
        assert status == 200
        m = re.fullmatch(r"hello from worker (\d+)\n", body)
        assert m, body
        answered.add(int(m.group(1)))
        if answered == pids:
            break
    assert answered == pids
    p.cmd("disconnect")
    exits = p.wait_all(lambda o: o.get("event") == "exit", 2)
    assert all((e["code"], e["signal"], e["ead"]) == (0, None, True) for e in exits), p.output()
    p.wait(lambda o: o.get("event") == "done")
    assert p.exit_code() == 0
