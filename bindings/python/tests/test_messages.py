"""Messages both ways, as JSON, with and without socket handles."""

import json

import pytest


PAYLOAD = {"text": "héllo ✓ \"quoted\"\nline", "n": [1, -2, 3.5, 1e100], "none": None, "yes": True,
           "nested": {"deep": [{"a": []}, {}]}, "big": "x" * 100_000}


@pytest.fixture
def one_worker(driver):
    p = driver()
    p.cmd("fork {}")
    ready = p.wait(lambda o: o.get("event") == "message" and "ready" in o["message"])
    return p, ready


def test_worker_to_primary_and_back(one_worker):
    p, ready = one_worker
    assert ready["message"]["ready"] == ready["pid"]
    assert ready["message"]["id"] == ready["id"] == 1
    for msg in (PAYLOAD, [1, 2, 3], "a string", 42, None):
        p.cmd("send 1 " + json.dumps(msg))
        echo = p.wait(lambda o: o.get("event") == "message" and "echo" in o["message"]
                      and o["message"]["echo"] == msg)
        assert echo["message"]["had_handle"] is False
        assert echo["handle"] is None


def test_handles_both_ways(one_worker):
    p, ready = one_worker
    pid = ready["pid"]
    # Primary -> worker: the worker gets a socket.socket, writes to it and closes it.
    p.cmd('sendsock 1 {"sock": 1}')
    data = p.wait(lambda o: o.get("event") == "sock_data")
    assert data["data"] == f"handle {pid}\n"
    echo = p.wait(lambda o: o.get("event") == "message" and o["message"].get("echo") == {"sock": 1})
    assert echo["message"]["had_handle"] is True
    # Worker -> primary: the primary's 'message' listener gets (worker, message, socket).
    p.cmd('send 1 {"cmd": "give_sock"}')
    got = p.wait(lambda o: o.get("event") == "message" and "sock_from_worker" in o["message"])
    assert got["message"]["sock_from_worker"] == pid
    assert got["handle"] == f"from worker {pid}\n"


def test_wrong_role_is_a_cluster_error_in_the_worker(one_worker):
    p, _ = one_worker
    p.cmd('send 1 {"cmd": "try_fork"}')
    got = p.wait(lambda o: o.get("event") == "message" and "try_fork" in o["message"])
    assert got["message"]["try_fork"] == {"type": "WrongRoleError", "code": -10002, "is_oserror": True}


def test_send_to_a_dead_worker_raises_process_lookup_error(driver):
    p = driver()
    p.cmd('fork {"DRIVER_WORKER": "exit", "EXIT_CODE": "0"}')
    p.wait(lambda o: o.get("event") == "exit")
    p.cmd('send 1 {"late": true}')
    err = p.wait(lambda o: o.get("event") == "command_error")
    assert (err["type"], err["errno"]) == ("ProcessLookupError", 3), p.output()
    assert err["message"]  # libcluster's message
