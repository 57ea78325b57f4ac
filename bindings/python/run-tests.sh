#!/usr/bin/env bash
# Runs the Python binding's tests against target/debug/libcluster.so.
#
#   bindings/python/run-tests.sh [pytest args...]
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
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@" tests
