"""The WSGI app of the Python rows of bench/run.py (`--scenario python`): the same module
served by `python -m libcluster` (py-runner) and by gunicorn's sync workers
(gunicorn-sync). The body ends with the worker's pid, which bench/loadgen.c counts."""
import os

BODY = f"hello from worker {os.getpid()}\n".encode()
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
