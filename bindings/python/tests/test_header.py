"""libcluster/_header.py against the real include/cluster.h: every constant, enum value,
struct size and field offset equals what the C compiler says; plus the parser's corners
and where the header is looked for."""

import ctypes
import shutil
import subprocess
import sys

import pytest

import libcluster
from libcluster import _ffi, _header
from conftest import ROOT, child_env

HEADER = ROOT / "include" / "cluster.h"


def compiler_facts(h, tmp_path):
    """Runs a C program, generated from the parsed names, that prints every value and
    layout as the compiler sees them: {"NAME": value, "sizeof struct": n, "struct.field": offset}."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "cluster.h"', "int main(void) {"]
    for name in h.defines:
        lines.append(f'  printf("%s %lld\\n", "{name}", (long long)({name}));')
    for members in h.enums.values():
        for name in members:
            lines.append(f'  printf("%s %lld\\n", "{name}", (long long)({name}));')
    for tag, fields in h.struct_fields.items():
        lines.append(f'  printf("sizeof:{tag} %zu\\n", sizeof(struct {tag}));')
        for field, _ in fields:
            lines.append(f'  printf("{tag}.{field} %zu\\n", offsetof(struct {tag}, {field}));')
    lines += ["  return 0;", "}"]
    src = tmp_path / "facts.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "facts"
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", str(HEADER.parent), str(src), "-o", str(exe)],
                   check=True, timeout=60)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=10).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_the_loaded_header_is_the_checkouts():
    assert _ffi.header.path == str(HEADER)


def test_constants_and_layouts_equal_the_compilers(tmp_path):
    h = _header.load(str(HEADER))
    facts = compiler_facts(h, tmp_path)
    for name, value in h.defines.items():
        assert facts[name] == value, name
    for members in h.enums.values():
        for name, value in members.items():
            assert facts[name] == value, name
    assert {"cluster_event", "cluster_settings", "cluster_server_options"} <= set(h.struct_fields)
    for tag, fields in h.struct_fields.items():
        cls = h.struct(tag)
        assert ctypes.sizeof(cls) == facts[f"sizeof:{tag}"], tag
        assert [f[0] for f in cls._fields_] == [name for name, _ in fields]
        for field, _ in fields:
            assert getattr(cls, field).offset == facts[f"{tag}.{field}"], f"{tag}.{field}"


def test_the_binding_uses_the_parsed_values():
    h = _ffi.header
    assert _ffi.E_CLOSED == h.defines["CLUSTER_E_CLOSED"]
    assert _ffi.EVENT_EXIT == h.enums["cluster_event_type"]["CLUSTER_EVENT_EXIT"]
    assert libcluster.SCHED_RR == h.defines["CLUSTER_SCHED_RR"]
    assert _ffi.WORKER_STATES[h.enums["cluster_worker_state"]["CLUSTER_WORKER_DEAD"]] == "dead"
    assert _ffi.Settings is h.struct("cluster_settings")
    assert ctypes.sizeof(_ffi.Event) == ctypes.sizeof(h.struct("cluster_event"))
    assert _ffi.lib.cluster_poll_event.argtypes[0] is ctypes.POINTER(_ffi.Event)


def test_settings_come_from_the_init_calls():
    s = _ffi.Settings.unchanged()
    assert s.size == ctypes.sizeof(_ffi.Settings)
    assert (s.silent, s.uid, s.gid, s.least_loaded) == (-1, -1, -1, -1)
    assert not s.exec and not s.args and s.sched_policy == 0
    o = _ffi.ServerOptions.defaults()
    assert o.size == ctypes.sizeof(_ffi.ServerOptions) and o.backlog == 0 and o.nonblocking == 0


def test_parser_corners():
    h = _header.parse("""
        #define N 4  /* a size */
        #define NEG (-3)
        #define HEX 0x10
        #define NOT_A_NUMBER "text"
        typedef enum e { A = 2, B, C = N } e;
        typedef struct opaque opaque;
        typedef struct s {
          uint8_t a;
          int32_t b, c;
          const char *const *argv;
          struct opaque *o;
          enum e kind;
          uint64_t big[N];
        } s;
        typedef int (*cb)(const struct s *x, void *u);
        const char *name(struct s *out, size_t n, cb f);
        void nothing(void);
    """)
    assert h.defines == {"N": 4, "NEG": -3, "HEX": 16}
    assert h.enums["e"] == {"A": 2, "B": 3, "C": 4}
    S = h.struct("s")
    assert [f[0] for f in S._fields_] == ["a", "b", "c", "argv", "o", "kind", "big"]
    assert S.c.offset == 8 and S.argv.offset == 16 and S.big.offset == 40
    assert dict(S._fields_)["argv"] is ctypes.POINTER(ctypes.c_char_p)
    assert dict(S._fields_)["o"] is ctypes.c_void_p
    ret, args = h.functions["name"]
    assert ret is ctypes.c_char_p and args[0] is ctypes.POINTER(S) and args[2] is h.callbacks["cb"]
    assert h.functions["nothing"] == (None, [])
    with pytest.raises(_header.HeaderError):
        _header.parse("typedef struct t { float128 x; } t;")
    with pytest.raises(KeyError):
        h.struct("opaque")


def test_where_the_header_is_looked_for(monkeypatch):
    monkeypatch.delenv("LIBCLUSTER_INCLUDE", raising=False)
    c = _ffi.header_candidates("/r/target/debug/libcluster.so")
    assert c[0] == "/r/target/debug/cluster.h" and "/r/include/cluster.h" in c
    assert "/usr/include/cluster.h" in _ffi.header_candidates("/usr/lib/libcluster.so")
    monkeypatch.setenv("LIBCLUSTER_INCLUDE", "/somewhere")
    assert _ffi.header_candidates("/r/target/debug/libcluster.so") == ["/somewhere/cluster.h"]


def test_a_missing_header_fails_the_import_clearly(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import libcluster"], capture_output=True, text=True,
                       env=child_env(LIBCLUSTER_INCLUDE=str(tmp_path)), timeout=30)
    assert r.returncode != 0
    assert "HeaderError" in r.stderr and "LIBCLUSTER_INCLUDE" in r.stderr, r.stderr
    shutil.copy(HEADER, tmp_path / "cluster.h")
    r = subprocess.run([sys.executable, "-c", "import libcluster; print(libcluster._ffi.header.path)"],
                       capture_output=True, text=True, env=child_env(LIBCLUSTER_INCLUDE=str(tmp_path)), timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == str(tmp_path / "cluster.h"), r.stderr
