"""libcluster.start_server (the cluster's asyncio.start_server), with an asyncio primary.

Primary: forks 2 workers, dispatches events with libcluster.add_reader(loop), prints JSON
lines; on "disconnect" from stdin, libcluster.disconnect(); exits when both have exited.
Worker: serves "aio worker <pid>" until disconnected, then exits 0.
"""
import asyncio
import json
import os
import sys

import libcluster


def say(**kw):
    print(json.dumps(kw), flush=True)


async def primary():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    alive = set()

    def on_exit(w, code, sig):
        say(event="exit", id=w.id, pid=w.pid, code=code, signal=sig and sig.name, ead=w.exited_after_disconnect)
        alive.discard(w.id)
        if not alive and not done.done():
            done.set_result(None)

    libcluster.on("listening", lambda w, a: say(event="listening", pid=w.pid, port=a["port"]))
    libcluster.on("exit", on_exit)
    libcluster.add_reader(loop)
    for _ in range(2):
        alive.add(libcluster.fork().id)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.readline() and libcluster.disconnect())
    loop.call_later(60, lambda: [w.kill(9) for w in libcluster.workers.values()])  # watchdog
    await done
    libcluster.remove_reader(loop)


async def worker():
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        body = f"aio worker {os.getpid()}\n".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async with await libcluster.start_server(handle, "127.0.0.1", 0) as server:
        await server.serve_forever()  # returns when the primary disconnects us


asyncio.run(primary() if libcluster.is_primary else worker())
