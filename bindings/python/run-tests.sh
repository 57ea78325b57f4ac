#!/usr/bin/env bash
# Runs the Python binding's tests against target/debug/libcluster.so.
#
#   bindings/python/run-tests.sh [pytest args...] [tests/test_x.py ...]
#
# With no test path among the arguments it runs all of tests/ (tests/test_packaging.py
# builds the sdist and wheel and installs them into fresh venvs: about 90 s;
# LIBCLUSTER_DIST_TEST=fast leaves out the sdist's install, =off skips it).
#
# Uses (creating it if needed) the venv target/pyvenv with pytest from PyPI, builds the
# library with `cargo build` unless LIBCLUSTER_LIBRARY is already set, and runs pytest with
# LIBCLUSTER_LIBRARY=<root>/target/debug/libcluster.so. Needs python3 (with venv) and,
# for the interop tests, node.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${LIBCLUSTER_PYVENV:-$root/target/pyvenv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pytest, mypy' 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet pytest mypy
fi

if [ -z "${LIBCLUSTER_LIBRARY:-}" ]; then
    (cd "$root" && cargo build --quiet --lib)
    export LIBCLUSTER_LIBRARY="$root/target/debug/libcluster.so"
fi

cd "$here"
paths=(tests)
for arg in "$@"; do
    case "$arg" in tests/*) paths=() ;; esac
done
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@" ${paths[@]+"${paths[@]}"}
