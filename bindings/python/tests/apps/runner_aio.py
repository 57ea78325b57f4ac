"""An asyncio handler for tests/test_runner.py (`python -m libcluster --asyncio runner_aio:handler`).

GET /slow?until=F: prints {"slow_started": pid} on stdout, then waits until the file F
exists (20 s at most). Answers
"aio worker <pid> <path>" with Connection: close.
"""
import asyncio
import json
import os
from urllib.parse import unquote


async def handler(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    path = head.split(b" ", 2)[1].decode()
    if path.startswith("/slow?until="):
        until = unquote(path.split("=", 1)[1])
        print(json.dumps({"slow_started": os.getpid()}), flush=True)
        for _ in range(1000):
            if os.path.exists(until):
                break
            await asyncio.sleep(0.02)
    body = f"aio worker {os.getpid()} {path}\n".encode()
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()
