"""What a Python user expects: a clean namespace, docstrings, positive errnos and messages
without Rust's "(os error N)", a logger, and type hints that mypy --strict accepts."""

import errno
import inspect
import logging
import pickle
import socket
import subprocess
import sys

import pytest

import libcluster
from libcluster import _ffi
from conftest import PKG, ROOT


def test_public_namespace_is_all_and_only_all():
    public = {n for n in dir(libcluster) if not n.startswith("_")}
    assert public == set(libcluster.__all__), public ^ set(libcluster.__all__)
    for leaked in ("Any", "Dict", "annotations", "Optional", "TYPE_CHECKING"):
        assert leaked not in dir(libcluster)


def test_every_public_name_is_documented():
    undocumented = []
    for name in libcluster.__all__:
        obj = getattr(libcluster, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj):
            if not inspect.getdoc(obj):
                undocumented.append(name)
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and callable(member) and not inspect.getdoc(member):
                        undocumented.append(f"{name}.{attr}")
        elif f"``{name}``" not in (libcluster.__doc__ or ""):
            undocumented.append(name)  # data: described in the module's docstring
    assert not undocumented, undocumented


def test_errno_is_positive_and_the_message_has_no_rust_suffix():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError) as info:
            libcluster.get_server("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    e = info.value
    assert e.errno == errno.EADDRINUSE > 0
    assert "os error" not in str(e) and "already in use" in e.strerror.lower(), str(e)


def test_errno_picks_the_standard_subclass():
    for code, cls in [(errno.ECONNREFUSED, ConnectionRefusedError), (errno.ENOENT, FileNotFoundError),
                      (errno.EACCES, PermissionError), (errno.ESRCH, ProcessLookupError),
                      (errno.EAGAIN, BlockingIOError)]:
        e = _ffi.error_for(-code, "m")
        assert type(e) is cls and e.errno == code and e.strerror == "m"


def test_cluster_errors_keep_the_code_apart_from_errno():
    e = _ffi.error_for(_ffi.E_CLOSED, "IPC channel is closed")
    assert isinstance(e, libcluster.ChannelClosedError) and isinstance(e, OSError)
    assert e.errno is None and e.code == _ffi.E_CLOSED < 0
    assert str(e) == e.strerror == "IPC channel is closed"
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is type(e) and back.code == e.code and str(back) == str(e)
    assert type(_ffi.error_for(-10999, "future")) is libcluster.ClusterError


def test_unhandled_error_events_go_to_the_logger(caplog):
    with caplog.at_level(logging.ERROR, logger="libcluster"):
        libcluster._dispatch._report_unhandled(_ffi.error_for(_ffi.E_PROTOCOL, "bad line"))
    assert [r.name for r in caplog.records] == ["libcluster"] and "bad line" in caplog.text
    assert libcluster.log is logging.getLogger("libcluster")


def test_py_typed_is_shipped():
    assert (PKG / "libcluster" / "py.typed").exists()


def test_mypy_strict_accepts_the_examples_and_the_package():
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed (bindings/python/run-tests.sh installs it)")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        str(PKG / "libcluster"), str(ROOT / "examples" / "python")],
                       capture_output=True, text=True, timeout=300, cwd=str(PKG),
                       env={**__import__("os").environ, "MYPYPATH": str(PKG)})
    assert r.returncode == 0, r.stdout + r.stderr
