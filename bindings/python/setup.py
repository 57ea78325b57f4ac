"""Builds libcluster.so with cargo and bundles it in the package.

`pip install ./bindings/python` runs `cargo build --release` on the repository two levels
up (the Rust crate) and copies target/release/libcluster.so next to libcluster/__init__.py.
Only crates.io is needed (cargo fetches the locked crates). Set LIBCLUSTER_CARGO_FLAGS to
pass extra flags (e.g. "--offline"), or LIBCLUSTER_PREBUILT=/path/libcluster.so to bundle a
library built beforehand instead of running cargo.
"""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the Rust crate: bindings/python -> repository root


def build_library() -> Path:
    prebuilt = os.environ.get("LIBCLUSTER_PREBUILT")
    if prebuilt:
        return Path(prebuilt)
    manifest = ROOT / "Cargo.toml"
    if not manifest.exists():
        raise SystemExit(
            f"libcluster: {manifest} not found; build from a checkout of the repository "
            "(pip install ./bindings/python) or set LIBCLUSTER_PREBUILT"
        )
    cargo = os.environ.get("CARGO") or shutil.which("cargo") or str(Path.home() / ".cargo/bin/cargo")
    cmd = [cargo, "build", "--release", "--lib", "--manifest-path", str(manifest)]
    cmd += shlex.split(os.environ.get("LIBCLUSTER_CARGO_FLAGS", ""))
    env = dict(os.environ)
    env["LIBCLUSTER_NO_HEADER_COPY"] = "1"  # leave include/cluster.h alone
    print("libcluster: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    target = Path(env.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / "libcluster.so"


class BuildPyWithCargo(build_py):
    """build_py that also builds and copies libcluster.so into the package."""

    def run(self):
        super().run()
        lib = build_library()
        if not lib.exists():
            raise SystemExit(f"libcluster: {lib} was not built")
        dest = Path(self.build_lib) / "libcluster" / "libcluster.so"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest)


class BinaryDistribution(Distribution):
    """The wheel holds a native library: make it platform-specific."""

    def has_ext_modules(self):
        return True


cmdclass = {"build_py": BuildPyWithCargo}

try:  # tag the wheel py3-none-<platform>: ctypes, so any CPython 3 on this platform
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel

    class BdistWheel(bdist_wheel):
        def get_tag(self):
            _python, _abi, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = BdistWheel
except ImportError:
    pass

setup(cmdclass=cmdclass, distclass=BinaryDistribution)
