# libcluster: the C-side steps around cargo.
#   make demo      build and run the clustered HTTP demo on 127.0.0.1:$(PORT)
#   make test      every test (Rust, C, Node interop; Python and Node bindings when present),
#                  after the gates: fmt, clippy, rustdoc, the header, the ABI, the links
#   make examples  build target/examples/hello
#   make header    regenerate include/cluster.h from src/capi (a build never writes it)
#   make install   PREFIX=/usr/local: the release library (libcluster.so.<version>, its
#                  links libcluster.so.0 and libcluster.so, libcluster.a), header, pkg-config file
#   make uninstall PREFIX=/usr/local: removes exactly what install installed

PREFIX  ?= /usr/local
PROFILE ?= debug
PORT    ?= 8000
CC      ?= cc
CFLAGS  ?= -std=c11 -Wall -Wextra -Werror -pedantic -O2 -g
CARGO   ?= cargo

LIBDIR   := target/$(PROFILE)
LIB      := $(LIBDIR)/libcluster.so
CARGOFLAGS := $(if $(filter release,$(PROFILE)),--release,)
# Debug examples go to target/examples (what the tests use), release ones beside them.
EXDIR    := $(if $(filter release,$(PROFILE)),target/examples-release,target/examples)
EXAMPLES := $(EXDIR)/hello

.PHONY: all lib lib-release uninstall test-install examples demo multihost-demo test test-deps test-rust header check-header check-rust check-abi install clean bench bench-short bench-slow bench-python bench-bins test-valgrind test-python test-python-dist python-dist test-node npm-pack test-npm

all: lib examples

lib:
	$(CARGO) build $(CARGOFLAGS)

lib-release:
	$(CARGO) build --release --lib

$(LIB): lib

$(EXDIR)/%: examples/%.c include/cluster.h $(LIB)
	@mkdir -p $(EXDIR)
	$(CC) $(CFLAGS) -Iinclude $< -o $@ -L$(LIBDIR) -lcluster -Wl,-rpath,$(abspath $(LIBDIR))

examples: lib $(EXAMPLES)

demo:
	$(MAKE) PROFILE=release examples
	@echo "demo: http://127.0.0.1:$(PORT)/  (kill -HUP <primary pid>: rolling restart; -TTIN/-TTOU: one worker more/less; -TERM: graceful stop; -USR2: hot upgrade of the primary; Ctrl-C: fast stop)"
	PORT=$(PORT) ./target/examples-release/hello

# Past one host: two demo hosts behind HAProxy (agent-check) in network namespaces, a
# rolling restart and a SIGTERM of one host under load with retries off; root; not part of
# `make test` (docs/deployment.md).
multihost-demo:
	scripts/multihost-demo

# What the tests need beyond Rust, gcc and node: curl and pkg-config (tests/install.rs)
# from Debian's packages.
test-deps:
	@command -v curl >/dev/null || (apt-get update -qq && apt-get install -y -qq curl)
	@command -v pkg-config >/dev/null || (apt-get update -qq && apt-get install -y -qq pkg-config)

# The release library first: tests/install.rs installs it (`make install`), and building it
# there would compete with the other tests for the CPU.
test-rust: lib examples lib-release
	$(CARGO) test -- --test-threads=2

# The header: build.rs generates it into cargo's OUT_DIR (a build never writes into the
# source tree); include/cluster.h is the committed copy. `make header` replaces it with the
# generated one; check-header (part of `make test`) fails when it is stale.
header:
	CARGO="$(CARGO)" CARGOFLAGS="$(CARGOFLAGS)" scripts/header write

check-header: lib
	CARGO="$(CARGO)" CARGOFLAGS="$(CARGOFLAGS)" scripts/header check

# Rust hygiene: formatting (rustfmt.toml), clippy on every target, rustdoc, all without
# warnings. Cheap next to the tests (the dependencies are checked once, then reused).
check-rust:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

# Every export goes through ffi_guard! (no panic crosses the ABI).
check-abi:
	./scripts/check-abi

# Every link in a tracked Markdown file stays inside the repository and names a file that exists.
check-links:
	./scripts/check-links

# Python binding (pytest in target/pyvenv, installed from PyPI when missing), with the
# package test (about 80 s; LIBCLUSTER_DIST_TEST=fast leaves out the sdist's install).
test-python: lib
	LIBCLUSTER_LIBRARY=$(abspath $(LIB)) bindings/python/run-tests.sh

# Only the package test: `python -m build`, auditwheel, installs outside the tree (the wheel
# without cargo, the sdist with it), a 3-worker server from each.
test-python-dist: lib
	LIBCLUSTER_LIBRARY=$(abspath $(LIB)) bindings/python/run-tests.sh tests/test_packaging.py

# The Python package `libcluster-py`: target/python-dist/ gets the sdist and a manylinux
# wheel (`python -m build`, from PyPI into target/pybuild when missing).
PYTHON ?= python3
python-dist:
	@test -x target/pybuild/bin/python || $(PYTHON) -m venv target/pybuild
	@target/pybuild/bin/python -c 'import build' 2>/dev/null || target/pybuild/bin/python -m pip install --quiet build
	target/pybuild/bin/python -m build bindings/python --outdir target/python-dist

# Node addon (npm install builds it against the local Node headers; node --test).
test-node: lib examples
	bindings/node/run-tests.sh

# The npm package `libcluster-node`: target/npm/libcluster-node-<version>.tgz, holding a
# prebuilt binary for this platform and the crate's sources (bindings/node/scripts/prepack.js).
npm-pack:
	@mkdir -p target/npm
	cd bindings/node && npm pack --pack-destination $(abspath target/npm)

# Only the package's test (also part of test-node): pack, install into temporary projects
# outside the tree (prebuilt without cargo; from source), a clustered server; publish --dry-run.
test-npm:
	cd bindings/node && node --test test/pack-install.test.js

test: test-deps check-rust check-header check-abi test-rust test-python test-node check-links

# The benchmark: release library and demo, the load generator and the SO_REUSEPORT server.
bench-bins:
	$(MAKE) PROFILE=release examples
	@mkdir -p target/bench
	$(CC) -O2 -Wall -Wextra -o target/bench/loadgen bench/loadgen.c
	$(CC) -O2 -Wall -Wextra -o target/bench/reuseport bench/reuseport.c
	$(CC) -O2 -Wall -Wextra -o target/bench/handoff_model bench/handoff_model.c
	$(CC) -O2 -Wall -Wextra -Iinclude -o target/bench/cluster_server bench/cluster_server.c -Ltarget/release -lcluster -Wl,-rpath,$(abspath target/release)
	@# The addon row is optional: without node/npm the benchmark skips it with a warning.
	cd bindings/node && LIBCLUSTER_LIBRARY=$(abspath target/release/libcluster.so) npm install --no-audit --no-fund --loglevel=error \
		|| echo "warning: the Node addon did not build; bench/run.py will skip node-addon-libcluster"

# The C tests under valgrind (memcheck; valgrind lacks pidfd_open, which exercises the
# library's waitpid(pid) fallback too).
test-valgrind: lib
	VALGRIND=1 $(CARGO) test --test c_api -- --test-threads=1

# The main table, then the slow-worker scenario (one of 2 workers takes 5 ms per request).
bench: bench-bins
	python3 bench/run.py --out target/bench/table.md
	python3 bench/run.py --scenario slow --out target/bench/slow.md

bench-short: bench-bins
	python3 bench/run.py --short
	python3 bench/run.py --scenario slow --short

bench-slow: bench-bins
	python3 bench/run.py --scenario slow --out target/bench/slow.md

# The Python runner (python -m libcluster) against gunicorn's sync workers: the release
# library, the load generator, and target/benchvenv with gunicorn from PyPI.
bench-python:
	$(MAKE) PROFILE=release lib
	@mkdir -p target/bench
	$(CC) -O2 -Wall -Wextra -o target/bench/loadgen bench/loadgen.c
	test -x target/benchvenv/bin/gunicorn || (python3 -m venv target/benchvenv && target/benchvenv/bin/pip install --quiet gunicorn)
	python3 bench/run.py --scenario python --out target/bench/python.md

# What `make install` puts under $(DESTDIR)$(PREFIX): the release build (stripped of its
# debug info; STRIP=true keeps it), under its full version with the SONAME link and the
# development link beside it, the static library, the header and libcluster.pc.
# `ldconfig` after installing into a system directory refreshes the loader's cache.
libdir     ?= $(PREFIX)/lib
includedir ?= $(PREFIX)/include
STRIP      ?= strip
VERSION    := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n1)
# The SONAME's number: build.rs's ABI_MAJOR (one source).
ABI_MAJOR  := $(shell sed -n 's/^const ABI_MAJOR: u32 = \([0-9]*\);$$/\1/p' build.rs)
RELDIR     := $(or $(CARGO_TARGET_DIR),target)/release
REALNAME   := libcluster.so.$(VERSION)
SONAME     := libcluster.so.$(ABI_MAJOR)
INSTALLED  := $(libdir)/$(REALNAME) $(libdir)/$(SONAME) $(libdir)/libcluster.so $(libdir)/libcluster.a \
              $(includedir)/cluster.h $(libdir)/pkgconfig/libcluster.pc

install: lib-release
	@test -n "$(VERSION)" -a -n "$(ABI_MAJOR)" || (echo "install: no version in Cargo.toml or no ABI_MAJOR in build.rs" && exit 1)
	install -d $(DESTDIR)$(libdir) $(DESTDIR)$(includedir) $(DESTDIR)$(libdir)/pkgconfig
	install -m 0755 $(RELDIR)/libcluster.so $(DESTDIR)$(libdir)/$(REALNAME)
	$(STRIP) --strip-debug $(DESTDIR)$(libdir)/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(libdir)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(libdir)/libcluster.so
	install -m 0644 $(RELDIR)/libcluster.a $(DESTDIR)$(libdir)/libcluster.a
	$(STRIP) --strip-debug $(DESTDIR)$(libdir)/libcluster.a
	install -m 0644 include/cluster.h $(DESTDIR)$(includedir)/cluster.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(libdir))|g' \
		-e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(includedir))|g' \
		-e 's|@VERSION@|$(VERSION)|g' libcluster.pc.in > $(DESTDIR)$(libdir)/pkgconfig/libcluster.pc

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# Only the install test: `make install` into a temporary prefix, a program built with
# pkg-config against it (shared and static), its exported symbols, `make uninstall`.
test-install: lib-release
	$(CARGO) test --test install

clean:
	$(CARGO) clean
