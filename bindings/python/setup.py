"""Builds the Rust library with setuptools-rust and bundles it as ``libcluster/libcluster.so``.

libcluster is a plain cdylib that the package loads with ctypes (not a CPython extension),
so the extension is declared with ``Binding.NoBinding`` and installed under the name
``_ffi.py`` looks for; the wheel is tagged ``py3-none-manylinux_<glibc floor>_<arch>`` (any
CPython 3, this platform), read from the library's own symbol versions.

Where the crate is: in the repository, two levels up; in an sdist, ``rust/`` (the sdist
command copies the crate's files there). The version is the crate's (Cargo.toml). The
header ``include/cluster.h`` is shipped beside the library as ``libcluster/cluster.h``.

Environment: ``LIBCLUSTER_CARGO_FLAGS`` adds flags to cargo (e.g. ``--offline``);
``CARGO_TARGET_DIR`` is honoured (default in a checkout: ``<repo>/target/python``).
"""

import os
import shlex
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension, build_rust

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build_support  # noqa: E402  (beside this file; not part of the package)

CRATE = build_support.crate_dir(HERE)
VERSION = build_support.crate_version(CRATE / "Cargo.toml")


def cargo_env():
    """cargo's environment: no debug info and a stripped library (the release profile keeps
    debug=1 for the repository's own builds), no build path embedded (panic locations).
    A build leaves the checked-in header alone (build.rs writes it only into OUT_DIR)."""
    env = dict(os.environ)
    env["CARGO_PROFILE_RELEASE_DEBUG"] = "0"
    env["CARGO_PROFILE_RELEASE_STRIP"] = "symbols"
    if CRATE != HERE / "rust":  # a checkout: its own target dir, so target/release stays as is
        env.setdefault("CARGO_TARGET_DIR", str(CRATE / "target" / "python"))
    cargo_home = env.get("CARGO_HOME") or str(Path.home() / ".cargo")
    remap = f"--remap-path-prefix={CRATE}=libcluster --remap-path-prefix={cargo_home}=cargo"
    env["RUSTFLAGS"] = f"{env.get('RUSTFLAGS', '')} {remap}".strip()
    if not shutil.which("cargo", path=env.get("PATH")) and (Path(cargo_home) / "bin" / "cargo").exists():
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), str(Path(cargo_home) / "bin")])
    return env


class BuildRust(build_rust):
    """Installs the cdylib as ``libcluster/libcluster.so`` (the name ctypes loads), not
    under a CPython extension suffix."""

    def get_dylib_ext_path(self, ext, target_fname):
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(path), "libcluster.so")


class BuildPy(build_py):
    """Also puts the crate's header beside the library: ``libcluster/cluster.h``."""

    def run(self):
        super().run()
        dest = Path(self.build_lib) / "libcluster" / "cluster.h"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CRATE / "include" / "cluster.h", dest)


class Sdist(sdist):
    """Carries the crate's sources under ``rust/``, so the sdist builds on its own."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        dest = Path(base_dir) / "rust"
        if dest.exists():
            shutil.rmtree(dest)
        build_support.copy_crate(CRATE, dest)


cmdclass = {"build_rust": BuildRust, "build_py": BuildPy, "sdist": Sdist}

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel


class BdistWheel(bdist_wheel):
    """``py3-none-<platform>``: ctypes, so any CPython 3; on glibc Linux the platform is
    ``manylinux_<x>_<y>_<arch>`` from the newest GLIBC_x.y the built library needs."""

    def get_tag(self):
        _python, _abi, plat = super().get_tag()
        if plat.startswith("linux_"):
            built = sorted(Path(self.bdist_dir).rglob("libcluster/libcluster.so"))
            if built:
                plat = build_support.manylinux_tag(built[0], plat)
            else:
                print(f"libcluster: no built library under {self.bdist_dir}; wheel tagged {plat}", file=sys.stderr)
        return "py3", "none", plat


cmdclass["bdist_wheel"] = BdistWheel

setup(
    version=VERSION,
    cmdclass=cmdclass,
    rust_extensions=[
        RustExtension(
            "libcluster.libcluster",
            path=str(CRATE / "Cargo.toml"),
            binding=Binding.NoBinding,
            args=["--locked", *shlex.split(os.environ.get("LIBCLUSTER_CARGO_FLAGS", ""))],
            env=cargo_env(),
        )
    ],
    zip_safe=False,
)
