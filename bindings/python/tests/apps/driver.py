"""Test driver: a libcluster primary steered by commands on stdin, and its workers.

Primary: prints one JSON line per cluster event and per command result on stdout; runs
its own selectors loop over libcluster.fileno() and stdin (the "caller's own loop" API).
Commands (one per line, each acknowledged with {"ack": line}):
    setup <json kwargs>     setup_primary(**kwargs)
    fork [json env]         fork(env); with silent settings, its stdout/stderr are read to EOF
    send <id> <json>        worker.send(message)
    sendsock <id> <json>    send(message, one end of a socketpair); print what comes back
    kill <id> [signal]      workers[id].kill(signal)
    disconnect <id>         workers[id].disconnect()
    disconnect_all          libcluster.disconnect(callback)
    workers                 print libcluster.workers
    quit                    SIGKILL the workers left and exit
Stdin EOF or the 60 s watchdog also kill every worker.

Worker (DRIVER_WORKER): "http" (default, a ClusterHTTPServer), "asyncio" (a server driven
by loop.add_reader on the server fd), "exit" (exits with EXIT_CODE), "idle" (run()),
"print" (writes to stdout and stderr, exits 3).
"""
import asyncio
import json
import os
import selectors
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler

import libcluster


def say(**kw):
    sys.stdout.write(json.dumps(kw, sort_keys=True) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- primary


def primary():
    forked = {}

    def kill_all(sig=signal.SIGKILL):
        for w in forked.values():
            try:
                w.kill(sig)
            except OSError:
                pass

    def watchdog():
        say(event="watchdog")
        kill_all()
        os._exit(3)

    timer = threading.Timer(float(os.environ.get("DRIVER_WATCHDOG", "60")), watchdog)
    timer.daemon = True
    timer.start()

    libcluster.on("fork", lambda w: say(event="fork", id=w.id, pid=w.pid))
    libcluster.on("online", lambda w: say(event="online", id=w.id, pid=w.pid))
    libcluster.on("listening", lambda w, a: say(event="listening", id=w.id, pid=w.pid, **a))
    libcluster.on("disconnect", lambda w: say(event="disconnect", id=w.id, pid=w.pid, ead=w.exited_after_disconnect))
    libcluster.on("error", lambda w, e: say(event="error", id=w and w.id, message=str(e)))

    def on_message(w, message, handle):
        data = None
        if handle is not None:
            handle.settimeout(10)
            data = b""
            while True:
                chunk = handle.recv(4096)
                if not chunk:
                    break
                data += chunk
            data = data.decode()
            handle.close()
        say(event="message", id=w.id, pid=w.pid, message=message, handle=data)

    libcluster.on("message", on_message)

    def on_exit(w, code, sig):
        say(event="exit", id=w.id, pid=w.pid, code=code, signal=sig.name if sig else None,
            ead=w.exited_after_disconnect, state=w.state, dead=w.is_dead(), connected=w.is_connected())

    libcluster.on("exit", on_exit)

    def capture(w):  # a silent worker's stdout and stderr, read to EOF
        for name, f in (("stdout", w.stdout), ("stderr", w.stderr)):
            def pump(name=name, f=f):
                with f:
                    say(event=name, id=w.id, data=f.read().decode())
            threading.Thread(target=pump, daemon=True).start()

    def command(line):
        parts = line.split(" ", 2)
        cmd = parts[0]
        if cmd == "setup":
            libcluster.setup_primary(**json.loads(line[len("setup "):]))
        elif cmd == "fork":
            env = json.loads(line[len("fork "):]) if len(parts) > 1 else None
            w = libcluster.fork(env)
            forked[w.id] = w
            if libcluster.settings.get("silent"):
                capture(w)  # at once: the pipes can only be had while the worker is in the table
            say(event="forked", id=w.id, pid=w.pid)
        elif cmd == "send":
            forked[int(parts[1])].send(json.loads(parts[2]))
        elif cmd == "sendsock":
            a, b = socket.socketpair()
            with a:
                forked[int(parts[1])].send(json.loads(parts[2]), a)
            b.settimeout(10)
            data = b""
            while True:
                chunk = b.recv(4096)
                if not chunk:
                    break
                data += chunk
            b.close()
            say(event="sock_data", id=int(parts[1]), data=data.decode())
        elif cmd == "kill":
            forked[int(parts[1])].kill(parts[2] if len(parts) > 2 else signal.SIGTERM)
        elif cmd == "disconnect":
            forked[int(parts[1])].disconnect()
        elif cmd == "disconnect_all":
            n = libcluster.disconnect(lambda: say(event="drained", workers=len(libcluster.workers)))
            say(event="disconnecting", count=n)
        elif cmd == "workers":
            say(event="workers", workers={str(i): w.pid for i, w in libcluster.workers.items()})
        elif cmd == "quit":
            return False
        else:
            say(event="bad_command", line=line)
        return True

    sel = selectors.DefaultSelector()
    sel.register(libcluster.fileno(), selectors.EVENT_READ, "cluster")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    buf = b""
    running = True
    while running:
        for key, _ in sel.select():
            if key.data == "cluster":
                libcluster.dispatch()
                continue
            chunk = os.read(sys.stdin.fileno(), 65536)
            if not chunk:
                running = False
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode().strip()
                if not line:
                    continue
                say(ack=line)
                try:
                    if not command(line):
                        running = False
                except Exception as e:  # reported, the driver goes on
                    say(event="command_error", line=line, type=type(e).__name__,
                        errno=getattr(e, "errno", None), message=str(e))
    kill_all()
    say(event="bye")


# --------------------------------------------------------------------------- workers


def try_fork():
    try:
        libcluster.fork()
    except libcluster.ClusterError as e:
        return {"type": type(e).__name__, "code": e.code, "is_oserror": isinstance(e, OSError)}
    return {"type": None}


def handle_message(message, handle):
    me = libcluster.worker
    if handle is not None:
        handle.sendall(f"handle {os.getpid()}\n".encode())
        handle.close()
    if isinstance(message, dict) and message.get("cmd") == "disconnect":
        me.disconnect()
    elif isinstance(message, dict) and message.get("cmd") == "exit":
        os._exit(int(message.get("code", 0)))
    elif isinstance(message, dict) and message.get("cmd") == "give_sock":
        a, b = socket.socketpair()
        with a:
            me.send({"sock_from_worker": os.getpid()}, a)
        b.sendall(f"from worker {os.getpid()}\n".encode())
        b.close()
    elif isinstance(message, dict) and message.get("cmd") == "try_fork":
        me.send({"try_fork": try_fork()})
    else:
        me.send({"echo": message, "had_handle": handle is not None})


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"py worker {os.getpid()} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def fd_kind(fd):
    """What the server's fd is: 'seqpacket' (libcluster's fast lane), 'stream' (a
    listener), or 'not-socket' (the eventfd of Node's path)."""
    dup = os.dup(fd)
    try:
        s = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return "not-socket"
    with s:
        return {socket.SOCK_SEQPACKET: "seqpacket", socket.SOCK_STREAM: "stream"}.get(s.type, str(s.type))


def http_worker():
    me = libcluster.worker
    me.on("message", handle_message)
    me.on("disconnect", lambda: say(worker_event="disconnect", pid=os.getpid()))
    port = int(os.environ.get("PORT") or 0)
    with libcluster.ClusterHTTPServer(("127.0.0.1", port), Handler) as httpd:
        me.send({"ready": os.getpid(), "id": me.id, "port": httpd.server_address[1],
                 "fd_kind": fd_kind(httpd.socket.fileno())})
        if os.environ.get("SELF_DISCONNECT") == "1":
            me.disconnect()
        httpd.serve_forever()
    say(worker_event="done", pid=os.getpid(), connected=me.is_connected())


async def asyncio_worker():
    loop = asyncio.get_running_loop()
    me = libcluster.worker
    me.on("message", handle_message)
    closed = loop.create_future()
    port = int(os.environ.get("PORT") or 0)
    server = libcluster.get_server("127.0.0.1", port, nonblocking=True)
    conns = set()

    async def serve_conn(sock):
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = f"asyncio worker {os.getpid()}\n".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def on_readable():
        while True:
            try:
                sock, _addr = server.accept()
            except BlockingIOError:
                return
            except OSError:  # EBADF: the primary disconnected us
                loop.remove_reader(fd)
                if not closed.done():
                    closed.set_result(None)
                return
            task = loop.create_task(serve_conn(sock))
            conns.add(task)
            task.add_done_callback(conns.discard)

    fd = server.fileno()
    loop.add_reader(fd, on_readable)
    loop.add_reader(libcluster.fileno(), libcluster.dispatch)
    me.send({"ready": os.getpid(), "id": me.id, "port": server.port})
    await closed
    server.close()
    if conns:
        await asyncio.wait(list(conns), timeout=10)
    say(worker_event="done", pid=os.getpid())


def worker():
    mode = os.environ.get("DRIVER_WORKER", "http")
    if mode == "http":
        http_worker()
    elif mode == "asyncio":
        asyncio.run(asyncio_worker())
    elif mode == "print":
        print(f"to stdout from {os.getpid()}", flush=True)
        print(f"to stderr from {os.getpid()}", file=sys.stderr, flush=True)
        sys.exit(3)
    elif mode == "exit":
        sys.exit(int(os.environ.get("EXIT_CODE", "0")))
    elif mode == "idle":
        libcluster.worker.on("message", handle_message)
        libcluster.worker.send({"ready": os.getpid(), "id": libcluster.worker.id})
        libcluster.run()
        say(worker_event="done", pid=os.getpid())


if __name__ == "__main__":
    primary() if libcluster.is_primary else worker()
