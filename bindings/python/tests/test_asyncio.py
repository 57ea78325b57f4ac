"""asyncio in a worker: loop.add_reader on the server fd and on libcluster.fileno()."""

import re

from conftest import http_get


def test_asyncio_workers_serve_and_answer_messages(driver):
    p = driver()
    for _ in range(2):
        p.cmd('fork {"DRIVER_WORKER": "asyncio"}')
    ready = p.wait_all(lambda o: o.get("event") == "message" and "ready" in o["message"], 2)
    pids = {r["pid"] for r in ready}
    ports = {r["message"]["port"] for r in ready}
    assert len(ports) == 1
    port = ports.pop()
    answered = set()
    for _ in range(30):
        status, body = http_get(port)
        assert status == 200
        m = re.fullmatch(r"asyncio worker (\d+)\n", body)
        assert m, body
        answered.add(int(m.group(1)))
        if answered == pids:
            break
    assert answered == pids
    # Events reach the worker through loop.add_reader(libcluster.fileno(), libcluster.dispatch).
    p.cmd('send 2 {"via": "asyncio"}')
    echo = p.wait(lambda o: o.get("event") == "message" and o["message"].get("echo") == {"via": "asyncio"})
    assert echo["id"] == 2
    # A disconnect closes the server: the worker's accept sees EBADF and it exits 0.
    p.cmd("disconnect_all")
    exits = p.wait_all(lambda o: o.get("event") == "exit", 2)
    assert all((e["code"], e["ead"]) == (0, True) for e in exits), p.output()
    assert len(p.wait_all(lambda o: o.get("worker_event") == "done", 2)) == 2


def test_start_server_helper(procs):
    import sys

    from conftest import APPS

    p = procs([sys.executable, APPS / "aio_app.py"])
    listening = p.wait_all(lambda o: o.get("event") == "listening", 2)
    port = listening[0]["port"]
    pids = {o["pid"] for o in listening}
    answered = set()
    for _ in range(30):
        _, body = http_get(port, "/x")
        answered.add(int(body.split()[-1]))
        if answered == pids:
            break
    assert answered == pids
    p.send("disconnect")
    exits = p.wait_all(lambda o: o.get("event") == "exit", 2)
    assert all((e["code"], e["ead"]) == (0, True) for e in exits), p.output()
    assert p.exit_code() == 0
