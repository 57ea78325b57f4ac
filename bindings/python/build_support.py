"""Build-time helpers for setup.py (not part of the installed package).

- where the Rust crate is: ``rust/`` inside an unpacked sdist, else the repository root;
- the version, read from the crate's Cargo.toml (the one place it is written);
- the crate's files an sdist carries (copied under ``rust/``);
- the wheel's platform tag: the newest ``GLIBC_x.y`` symbol version the library needs
  gives ``manylinux_x_y_<arch>`` (PEP 600), read from its ELF version-needs section.

``python build_support.py path/to/libcluster.so`` prints what the library needs and its tag.
"""

from __future__ import annotations

import re
import shutil
import struct
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

# What an sdist carries of the crate: everything `cargo build --lib` reads.
CRATE_FILES = ("Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml", "src", "include/cluster.h")

# Libraries every manylinux policy lets a wheel need from the system (PEP 600: those of
# manylinux2014, the glibc family and libgcc_s).
SYSTEM_LIBS = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libresolv.so.2", "libgcc_s.so.1", "libstdc++.so.6",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux.so.2",
}


def crate_dir(pkg_dir: Path) -> Path:
    """The crate to build: ``<pkg>/rust`` in an sdist, else the repository root."""
    vendored = pkg_dir / "rust"
    if (vendored / "Cargo.toml").exists():
        return vendored
    root = pkg_dir.parent.parent
    if (root / "Cargo.toml").exists() and (root / "src").is_dir():
        return root
    raise SystemExit(
        f"libcluster: no Rust crate at {vendored} (an sdist) nor at {root} (a checkout)"
    )


def crate_version(cargo_toml: Path) -> str:
    """``version`` of the ``[package]`` table of `cargo_toml`."""
    section = None
    for line in cargo_toml.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
            continue
        m = re.fullmatch(r'version\s*=\s*"([^"]+)"', line)
        if m and section == "package":
            return m.group(1)
    raise SystemExit(f"libcluster: no [package] version in {cargo_toml}")


def copy_crate(crate: Path, dest: Path) -> None:
    """Copies the crate's files (CRATE_FILES) from `crate` into `dest`."""
    for name in CRATE_FILES:
        src, dst = crate / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("target", "*.orig", "*.rej"))
        else:
            shutil.copy2(src, dst)


def _elf_needs(path: Path) -> Tuple[List[str], Dict[str, Set[str]]]:
    """(DT_NEEDED libraries, {library: symbol versions needed from it}) of an ELF file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise ValueError(f"{path}: not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        shfmt = end + "IIQQQQIIQQ"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        shfmt = end + "IIIIIIIIII"
    sections = [struct.unpack_from(shfmt, data, shoff + i * shentsize) for i in range(shnum)]

    def cstr(strtab: int, off: int) -> str:
        start = sections[strtab][4] + off
        return data[start:data.index(b"\0", start)].decode()

    needed: List[str] = []
    versions: Dict[str, Set[str]] = {}
    for _name, sh_type, _flags, _addr, off, size, link, info, _align, entsize in sections:
        if sh_type == 6:  # SHT_DYNAMIC: DT_NEEDED (1) entries
            step = 16 if is64 else 8
            fmt = end + ("qQ" if is64 else "iI")
            for pos in range(off, off + size, step):
                tag, val = struct.unpack_from(fmt, data, pos)
                if tag == 0:
                    break
                if tag == 1:
                    needed.append(cstr(link, val))
        elif sh_type == 0x6FFFFFFE:  # SHT_GNU_verneed: Elf_Verneed / Elf_Vernaux chains
            pos = off
            for _ in range(info):
                _ver, cnt, file_off, aux, nxt = struct.unpack_from(end + "HHIII", data, pos)
                lib = cstr(link, file_off)
                apos = pos + aux
                for _ in range(cnt):
                    _hash, _flags2, _other, name_off, anext = struct.unpack_from(end + "IHHII", data, apos)
                    versions.setdefault(lib, set()).add(cstr(link, name_off))
                    apos += anext
                pos += nxt
    return needed, versions


def elf_sections(path: Path) -> List[str]:
    """The section names of an ELF file (e.g. to check it carries no .symtab, no .debug_*)."""
    data = path.read_bytes()
    is64, end = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
        shfmt = end + "IIQQQQIIQQ"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x2E)
        shfmt = end + "IIIIIIIIII"
    sections = [struct.unpack_from(shfmt, data, shoff + i * shentsize) for i in range(shnum)]
    names = sections[shstrndx][4]
    return [data[names + s[0]:data.index(b"\0", names + s[0])].decode() for s in sections]


def _vkey(v: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def glibc_floor(path: Path) -> Optional[Tuple[int, int]]:
    """The newest GLIBC_x.y symbol version `path` needs, as (x, y); None if none."""
    _needed, versions = _elf_needs(path)
    found = [v[len("GLIBC_"):] for vs in versions.values() for v in vs
             if re.fullmatch(r"GLIBC_\d+(\.\d+)+", v)]
    if not found:
        return None
    top = max(found, key=_vkey)
    major, minor = _vkey(top)[:2]
    return major, minor


def manylinux_tag(path: Path, fallback: str) -> str:
    """``manylinux_<x>_<y>_<arch>`` for the library at `path` (glibc Linux), else `fallback`
    (with a warning) when it needs a library outside the manylinux policies or no glibc."""
    platform = sysconfig.get_platform()  # e.g. linux-x86_64
    if not platform.startswith("linux-"):
        return fallback
    arch = platform.split("-", 1)[1].replace("-", "_").replace(".", "_")
    needed, _versions = _elf_needs(path)
    foreign = [n for n in needed if n not in SYSTEM_LIBS]
    floor = glibc_floor(path)
    if foreign or floor is None:
        print(f"libcluster: {path} needs {foreign or 'no glibc'}: wheel tagged {fallback}", file=sys.stderr)
        return fallback
    return f"manylinux_{floor[0]}_{floor[1]}_{arch}"


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        needed, versions = _elf_needs(Path(arg))
        print(f"{arg}: needs {', '.join(needed)}")
        for lib, vs in sorted(versions.items()):
            print(f"  {lib}: {' '.join(sorted(vs, key=lambda v: (re.sub(r'[0-9.]+$', '', v), _vkey(re.sub(r'^[^0-9]*', '', v) or '0'))))}")
        print(f"  tag: {manylinux_tag(Path(arg), 'linux')}")
