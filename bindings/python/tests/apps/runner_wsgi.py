"""A WSGI app for tests/test_runner.py (served by `python -m libcluster runner_wsgi:app`).

GET /anything      "wsgi worker <pid> <path>"
GET /env           JSON: the environ values a test checks
POST /echo         the request body (read by CONTENT_LENGTH)
GET /slow?until=F  prints {"slow_started": pid} on stdout, waits until the file F exists
                   (20 s at most), answers "slow done <pid>"
GET /boom          raises (the server answers 500)
GET /const         a fixed body, with one header list reused for every response
`validated` is `app` wrapped by wsgiref.validate, which asserts on both sides of the
WSGI contract (a non-compliant server makes it raise, hence a 500).
"""
import json
import os
import sys
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

ENV_KEYS = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
            "SERVER_PROTOCOL", "REMOTE_ADDR", "HTTP_X_TEST", "wsgi.multiprocess",
            "wsgi.multithread", "wsgi.run_once", "wsgi.url_scheme")

CONST_BODY = b"constant\n"
CONST_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(CONST_BODY)))]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    pid = os.getpid()
    if path == "/const":  # the server must not add its own headers to the app's list
        start_response("200 OK", CONST_HEADERS)
        return [CONST_BODY]
    if path == "/env":
        body = json.dumps({k: environ.get(k) for k in ENV_KEYS} | {"pid": pid}).encode()
    elif path == "/echo":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n)
    elif path == "/slow":
        until = parse_qs(environ.get("QUERY_STRING", ""))["until"][0]
        print(json.dumps({"slow_started": pid}), flush=True)
        deadline = time.monotonic() + 20
        while not os.path.exists(until) and time.monotonic() < deadline:
            time.sleep(0.02)
        body = f"slow done {pid}\n".encode()
    elif path == "/boom":
        raise RuntimeError("boom")
    else:
        body = f"wsgi worker {pid} {path}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


validated = validator(app)
