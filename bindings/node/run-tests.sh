#!/bin/sh
# Builds the Node addon and runs its tests (node --test, real processes).
#
#   bindings/node/run-tests.sh            (from anywhere)
#
# Steps: the debug library, the C demo and the Rust fixture the mixed-language tests use
# (`make examples`, `cargo build --example fixture`: no-ops when `make test` built them),
# then `npm install` here (builds build/Release/cluster_addon.node against the library;
# nothing is downloaded: the package has no dependencies and node-gyp uses the local Node
# headers), then `node --test`. PROFILE=release links the addon to target/release instead
# (`npm install` alone does that by default, building it if missing). test/pack-install.test.js
# packs the npm package (building target/npm) and installs it outside the tree, so this takes
# about a minute more than the rest.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
profile=${PROFILE:-debug}

make -C "$root" --no-print-directory examples
(cd "$root" && cargo build --example fixture)
if [ "$profile" = release ]; then
  (cd "$root" && cargo build --release)
fi

cd "$here"
LIBCLUSTER_LIBRARY="$root/target/$profile/libcluster.so" npm install --no-audit --no-fund --loglevel=error
exec node --test test/*.test.js
