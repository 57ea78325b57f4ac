"""examples/python/hello.py, the Python twin of examples/hello.c, across 3 workers."""

import os
import re
import signal
import sys

from conftest import ROOT, http_get, running

HELLO = ROOT / "examples" / "python" / "hello.py"


def next_match(p, regex, idx):
    m = p.wait(regex, start=idx)
    return m, p.last_index


def test_three_workers_each_answer_and_a_dead_one_is_replaced(procs):
    p = procs([sys.executable, HELLO], PORT="0", WORKERS="3")
    m, _ = next_match(p, r"^Primary (\d+) is running$", 0)
    assert int(m.group(1)) == p.pid

    started, idx = set(), 0
    while len(started) < 3:
        m, idx = next_match(p, r"^Worker (\d+) started$", idx)
        started.add(int(m.group(1)))
    listening, idx = {}, 0
    while len(listening) < 3:
        m, idx = next_match(p, r"^worker (\d+) listening on 127\.0\.0\.1:(\d+)$", idx)
        listening[int(m.group(1))] = int(m.group(2))
    assert set(listening) == started
    assert len(set(listening.values())) == 1, "PORT=0: every worker shares one random port"
    port = next(iter(listening.values()))

    # Each worker answers (sequential requests go round-robin; the count is only a bound).
    answered = set()
    for _ in range(30):
        status, body = http_get(port)
        assert status == 200
        m = re.fullmatch(r"hello from worker (\d+)\n", body)
        assert m, body
        answered.add(int(m.group(1)))
        if answered == started:
            break
    assert answered == started, p.output()

    # A worker killed from outside is reported and replaced; the new one serves too.
    victim = min(started)
    os.kill(victim, signal.SIGKILL)
    p.wait(rf"^worker {victim} died \(signal 9\)$")
    idx, new = 0, None
    while new is None:
        m, idx = next_match(p, r"^Worker (\d+) started$", idx)
        if int(m.group(1)) not in started:
            new = int(m.group(1))
    assert not running(victim)
    seen = set()
    for _ in range(30):
        status, body = http_get(port)
        assert status == 200
        seen.add(int(body.split()[-1]))
        if new in seen:
            break
    assert new in seen, p.output()
