"""An asyncio handler for tests/test_runner.py (`python -m libcluster --asyncio runner_aio:handler`).

GET /slow: prints {"slow_started": pid} on stdout and sleeps 1.5 s first. Answers
"aio worker <pid> <path>" with Connection: close.
"""
import asyncio
import json
import os


async def handler(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    path = head.split(b" ", 2)[1].decode()
    if path.startswith("/slow"):
        print(json.dumps({"slow_started": os.getpid()}), flush=True)
        await asyncio.sleep(1.5)
    body = f"aio worker {os.getpid()} {path}\n".encode()
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()
