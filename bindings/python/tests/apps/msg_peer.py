"""A Python peer for the message round-trip tests (tests/message_roundtrip.rs,
bindings/node/test/roundtrip.test.js, tests/test_messages.py), either role.

Primary:  python3 msg_peer.py EXEC [ARG...] with RT_MESSAGES=<file>
    forks one worker running EXEC ARG... (any language), sends it each line of the file as
    one message (json.loads, then worker.send: Python's own serialization), prints every
    message that comes back as "GOT <json.dumps(message)>" (compact, ensure_ascii=False:
    key order, integers and strings as Python holds them), and once as many came back as
    were sent, kills the worker and exits 0 (124 if the 30 s watchdog fires).
Worker (started by any primary): prints each message as "RECV <json.dumps(message)>" and
    "RECV-TYPES <...>" (the Python type of each value, depth first), and sends it back.
"""
import json
import os
import sys
import threading

import libcluster


def dumps(message):
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def types(v):
    if isinstance(v, dict):
        return {k: types(x) for k, x in v.items()}
    if isinstance(v, list):
        return [types(x) for x in v]
    return type(v).__name__


def out(line):
    sys.stdout.buffer.write(line.encode("utf-8") + b"\n")
    sys.stdout.buffer.flush()


def primary():
    with open(os.environ["RT_MESSAGES"], encoding="utf-8") as f:
        messages = [json.loads(line) for line in f.read().split("\n") if line]
    got = []
    forked = []

    def watchdog():
        for w in forked:
            try:
                w.kill("SIGKILL")
            except OSError:
                pass
        os._exit(124)

    timer = threading.Timer(30, watchdog)
    timer.daemon = True
    timer.start()

    def on_online(w):
        for m in messages:
            w.send(m)

    def on_message(w, message, handle):
        assert handle is None
        out("GOT " + dumps(message))
        got.append(message)
        if len(got) == len(messages):
            w.kill("SIGKILL")

    libcluster.setup_primary(exec=sys.argv[1], args=sys.argv[2:])
    libcluster.on("online", on_online)
    libcluster.on("message", on_message)
    forked.append(libcluster.fork())
    libcluster.run()
    sys.exit(0 if len(got) == len(messages) else 1)


def worker():
    me = libcluster.worker

    def on_message(message, handle):
        out("RECV " + dumps(message))
        out("RECV-TYPES " + json.dumps(types(message), separators=(",", ":")))
        me.send(message)

    me.on("message", on_message)
    libcluster.run()


if __name__ == "__main__":
    worker() if libcluster.is_worker else primary()
