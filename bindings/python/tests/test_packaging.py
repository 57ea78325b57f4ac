"""The published package, as a user gets it: `python -m build` makes the sdist and a
manylinux wheel; each installs into its own fresh venv in an empty folder outside the
repository (the wheel with no cargo on PATH, offline; the sdist with cargo, crates and build
requirements from their registries) and runs a 3-worker clustered server that answers from
every worker.

Slow (two release builds of the crate, venvs, PyPI: about 80 s; `make test-python-dist`
runs only this file). `LIBCLUSTER_DIST_TEST`: `full` (the default), `fast` (everything but
the sdist's own install, about 30 s; the wheel is still built from the sdist), `off` (skips
the file, e.g. offline).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

import build_support  # bindings/python/build_support.py (conftest puts it on sys.path)
from conftest import APPS, PKG, ROOT, Proc, http_get, stop

MODE = os.environ.get("LIBCLUSTER_DIST_TEST", "full")
pytestmark = pytest.mark.skipif(MODE == "off", reason="LIBCLUSTER_DIST_TEST=off")

BUILD_TIMEOUT = 600  # seconds: a release build of the crate and its build requirements
APP = APPS / "pkg_app.py"
# Every module of the package (one file per concept), as the sdist and the wheel must hold it.
MODULES = sorted(f"libcluster/{p.name}" for p in (PKG / "libcluster").glob("*.py"))


def crate_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)


def run(argv: List[str], timeout: float = BUILD_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """Runs a command to completion; fails the test with its output when it fails."""
    started = time.monotonic()
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)
    took = time.monotonic() - started
    print(f"[{took:5.1f}s] {' '.join(str(a) for a in argv)}")
    if r.returncode != 0:
        pytest.fail(f"{argv} exited {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def clean_env(path: str) -> Dict[str, str]:
    """The environment of a user's shell: nothing of the repository's test setup."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIBCLUSTER_", "NODE_", "PYTHON", "VIRTUAL_ENV", "CARGO_TARGET"))}
    env["PATH"] = path
    return env


def path_without_cargo() -> str:
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "cargo").exists() and not (Path(d) / "rustc").exists()]
    path = os.pathsep.join(dirs)
    assert shutil.which("cargo", path=path) is None
    return path


@pytest.fixture(scope="module")
def outside():
    """A temporary folder outside the repository, removed at the end."""
    d = Path(tempfile.mkdtemp(prefix="libcluster-pkg-"))
    assert ROOT not in d.parents
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tools(outside):
    """A venv with `build` and `auditwheel` from PyPI."""
    venv = outside / "tools"
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "build", "auditwheel"])
    return venv / "bin"


@pytest.fixture(scope="module")
def dist(outside, tools):
    """`python -m build bindings/python`: {"sdist": path, "wheel": path}."""
    out = outside / "dist"
    run([tools / "python", "-m", "build", PKG, "--outdir", out],
        env=clean_env(os.environ["PATH"]), cwd=str(outside))
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def fresh_venv(outside: Path, name: str) -> Path:
    """An empty folder with a new venv in it (no packages but pip)."""
    home = outside / name
    home.mkdir()
    run([sys.executable, "-m", "venv", home / "venv"])
    return home


def serve_from_three_workers(home: Path, env: Dict[str, str]) -> Dict[str, object]:
    """Runs tests/apps/pkg_app.py (copied into `home`) with the venv's python: 3 workers,
    each answering; returns the primary's line. Every process is stopped by pid."""
    app = home / "app.py"
    shutil.copy(APP, app)
    python = home / "venv" / "bin" / "python"
    procs: List[Proc] = []
    try:
        p = Proc([str(python), str(app)], dict(env, WORKERS="3"), cwd=home)
        procs.append(p)
        primary = p.wait(lambda o: o.get("event") == "primary")
        listening = p.wait_all(lambda o: o.get("event") == "listening", 3)
        pids = {o["pid"] for o in listening}
        ports = {o["port"] for o in listening}
        assert len(pids) == 3 and len(ports) == 1, p.output()
        port = ports.pop()
        answered = set()
        for _ in range(60):
            status, body = http_get(port)
            assert status == 200, body
            m = re.fullmatch(r"worker (\d+)\n", body)
            assert m, body
            answered.add(int(m.group(1)))
            if answered == pids:
                break
        assert answered == pids, f"answered by {answered}, workers {pids}\n{p.output()}"
        return primary
    finally:
        stop(procs)


def wheel_tag(wheel: Path) -> str:
    return wheel.name[:-len(".whl")].split("-", 2)[2]


def test_sdist_carries_the_crate_one_version_and_license(dist):
    version = crate_version()
    sdist = dist["sdist"]
    assert sdist.name == f"libcluster_py-{version}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = tar.extractfile(f"libcluster_py-{version}/PKG-INFO").read().decode()
    for f in ["rust/Cargo.toml", "rust/Cargo.lock", "rust/build.rs", "rust/cbindgen.toml",
              "rust/src/lib.rs", "rust/src/capi/mod.rs", "rust/include/cluster.h",
              "setup.py", "pyproject.toml", "build_support.py", "LICENSE", "README.md",
              "libcluster/py.typed", *MODULES]:
        assert f in names, f"{f} missing from {sdist.name}"
    assert not any(n.startswith(("rust/target", "tests/")) or n.endswith(".so") for n in names), names
    assert f"\nVersion: {version}\n" in pkg_info
    assert "\nName: libcluster-py\n" in pkg_info
    assert "\nLicense-Expression: MIT\n" in pkg_info
    assert "\nLicense-File: LICENSE\n" in pkg_info
    assert "License :: " not in pkg_info  # PEP 639: no license classifier beside the expression


def test_wheel_is_manylinux_stripped_and_ships_the_header(dist, tools, outside):
    wheel = dist["wheel"]
    assert wheel.name.startswith(f"libcluster_py-{crate_version()}-py3-none-manylinux_"), wheel.name
    shown = run([tools / "auditwheel", "show", wheel]).stdout
    m = re.search(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s+"([^"]+)"', shown)
    assert m, shown
    assert m.group(1) == wheel_tag(wheel).split("-")[-1], shown
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        lib = z.read("libcluster/libcluster.so")
        header = z.read("libcluster/cluster.h")
    assert header == (ROOT / "include" / "cluster.h").read_bytes()
    assert "libcluster/py.typed" in names
    missing = [m for m in MODULES if m not in names]
    assert not missing, f"{missing} missing from {wheel.name}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    (outside / "libcluster.so").write_bytes(lib)
    sections = build_support.elf_sections(outside / "libcluster.so")
    assert ".dynsym" in sections, sections
    assert not [s for s in sections if s == ".symtab" or s.startswith(".debug")], sections
    assert len(lib) < 3_000_000, len(lib)
    for path in (str(ROOT), str(Path.home() / ".cargo")):
        assert path.encode() not in lib, f"the library embeds the build path {path}"


def test_wheel_installs_without_cargo_and_serves_from_three_workers(dist, outside):
    home = fresh_venv(outside, "from-wheel")
    env = clean_env(path_without_cargo())
    run([home / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index",
         "--only-binary", ":all:", dist["wheel"]], env=env, cwd=str(home))
    primary = serve_from_three_workers(home, env)
    site = home / "venv" / "lib"
    assert Path(primary["package"]).is_relative_to(site), primary
    assert primary["library"] == str(Path(primary["package"]) / "libcluster.so"), primary
    assert primary["header"] == str(Path(primary["package"]) / "cluster.h"), primary


@pytest.mark.skipif(MODE == "fast", reason="LIBCLUSTER_DIST_TEST=fast (make test-python-dist runs it)")
def test_sdist_installs_with_cargo_and_serves_from_three_workers(dist, outside):
    home = fresh_venv(outside, "from-sdist")
    env = clean_env(os.environ["PATH"])
    if shutil.which("cargo", path=env["PATH"]) is None:
        env["PATH"] += os.pathsep + str(Path.home() / ".cargo" / "bin")
    run([home / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", dist["sdist"]], env=env, cwd=str(home))
    primary = serve_from_three_workers(home, clean_env(path_without_cargo()))
    assert Path(primary["package"]).is_relative_to(home / "venv" / "lib"), primary
    assert primary["library"] == str(Path(primary["package"]) / "libcluster.so"), primary
    assert primary["header"] == str(Path(primary["package"]) / "cluster.h"), primary
