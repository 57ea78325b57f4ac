"""Reads ``cluster.h`` (the header shipped with the library) into Python values.

Private. The binding takes every constant, enum value, struct layout and function
prototype from here, so nothing in it is copied by hand from the header. The parser
understands the subset of C that cbindgen writes into ``cluster.h``:

- ``#define NAME <integer>`` (decimal or hex, optionally negative or parenthesised);
- ``typedef enum name { A = 0, B, ... } name;``;
- ``typedef struct name { <type> <field>[, <field>]; <type> <field>[N]; ... } name;``
  and opaque ``typedef struct name name;``;
- ``typedef <ret> (*name)(<params>);`` (a callback type);
- ``<ret> name(<params>);`` (a function prototype).

C types map to ctypes: ``int`` and enums to ``c_int``, ``size_t``/``intN_t``/``uintN_t``
and the other integer spellings to their ctypes twins, ``char *`` to ``c_char_p``,
``T *`` to ``POINTER(T)`` (``void *`` and pointers to opaque structs to ``c_void_p``),
``T name[N]`` to ``T * N``. ``const`` is ignored. Anything else raises
:class:`HeaderError`, so a header the parser does not understand fails loudly at import.
"""

import ctypes
import os
import re
import typing as _t

__all__ = ["Header", "HeaderError", "parse", "load"]

CType = _t.Any  # a ctypes type (c_int, POINTER(...), a Structure subclass, ...)


class HeaderError(ImportError):
    """``cluster.h`` is missing or holds a construct the parser does not know."""


_BASE_TYPES: _t.Dict[str, CType] = {
    "void": None,
    "char": ctypes.c_char,
    "signed char": ctypes.c_byte,
    "unsigned char": ctypes.c_ubyte,
    "short": ctypes.c_short,
    "unsigned short": ctypes.c_ushort,
    "int": ctypes.c_int,
    "signed": ctypes.c_int,
    "signed int": ctypes.c_int,
    "unsigned": ctypes.c_uint,
    "unsigned int": ctypes.c_uint,
    "long": ctypes.c_long,
    "unsigned long": ctypes.c_ulong,
    "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong,
    "bool": ctypes.c_bool,
    "_Bool": ctypes.c_bool,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "size_t": ctypes.c_size_t,
    "ssize_t": ctypes.c_ssize_t,
    "int8_t": ctypes.c_int8,
    "int16_t": ctypes.c_int16,
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "uint8_t": ctypes.c_uint8,
    "uint16_t": ctypes.c_uint16,
    "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64,
    "intptr_t": ctypes.c_ssize_t,
    "uintptr_t": ctypes.c_size_t,
}

_IDENT = r"[A-Za-z_]\w*"
_INT = re.compile(r"^\(?\s*(-?)\s*(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\s*\)?$")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _int(value: str) -> _t.Optional[int]:
    m = _INT.match(value.strip())
    if not m:
        return None
    return int(m.group(1) + m.group(2), 0)


class Header:
    """What :func:`parse` found: ``defines``, ``enums``, ``structs`` (ctypes classes),
    ``callbacks`` (``CFUNCTYPE`` types) and ``functions`` (``(restype, argtypes)``)."""

    def __init__(self, path: str) -> None:
        #: Where the header was read from.
        self.path = path
        #: Integer ``#define``s by name.
        self.defines: _t.Dict[str, int] = {}
        #: ``{enum name: {member: value}}``.
        self.enums: _t.Dict[str, _t.Dict[str, int]] = {}
        #: ``{struct name: ctypes.Structure subclass}``; an opaque struct maps to None.
        self.structs: _t.Dict[str, _t.Optional[_t.Type[ctypes.Structure]]] = {}
        #: ``{struct name: [(field, C type text)]}``, in declaration order.
        self.struct_fields: _t.Dict[str, _t.List[_t.Tuple[str, str]]] = {}
        #: ``{typedef name: CFUNCTYPE}`` for callback typedefs.
        self.callbacks: _t.Dict[str, CType] = {}
        #: ``{function: (restype, [argtypes])}``.
        self.functions: _t.Dict[str, _t.Tuple[CType, _t.List[CType]]] = {}
        self._typedefs: _t.Dict[str, CType] = {}

    def constant(self, name: str) -> int:
        """A ``#define`` or an enum member by name (``KeyError`` if the header has none)."""
        if name in self.defines:
            return self.defines[name]
        for members in self.enums.values():
            if name in members:
                return members[name]
        raise KeyError(f"{name} is not in {self.path}")

    def struct(self, name: str) -> _t.Type[ctypes.Structure]:
        """The ctypes class of ``struct name`` (``KeyError`` if absent or opaque)."""
        cls = self.structs.get(name)
        if cls is None:
            raise KeyError(f"struct {name} is not defined in {self.path}")
        return cls

    # ----------------------------------------------------------------- types

    def ctype(self, text: str) -> CType:
        """The ctypes type for a C type spelled ``text`` (e.g. ``const char *const *``)."""
        text = re.sub(r"\bconst\b", " ", text)
        stars = text.count("*")
        base = " ".join(text.replace("*", " ").split())
        if base.startswith("struct ") or base.startswith("enum "):
            kind, _, tag = base.partition(" ")
            if kind == "enum":
                if tag not in self.enums:
                    raise HeaderError(f"{self.path}: unknown enum {tag}")
                t: CType = ctypes.c_int
            elif tag not in self.structs:
                raise HeaderError(f"{self.path}: unknown struct {tag}")
            else:
                t = self.structs[tag]  # None: opaque
        elif base in self._typedefs:
            t = self._typedefs[base]
        elif base in _BASE_TYPES:
            t = _BASE_TYPES[base]
        else:
            raise HeaderError(f"{self.path}: unknown C type {text.strip()!r}")
        if stars == 0:
            if t is None:
                raise HeaderError(f"{self.path}: {text.strip()!r} has no size")
            return t
        # The innermost pointer: char * is a C string, void * / opaque * an address.
        if t is ctypes.c_char:
            t = ctypes.c_char_p
        elif t is None:
            t = ctypes.c_void_p
        else:
            t = ctypes.POINTER(t)
        for _ in range(stars - 1):
            t = ctypes.POINTER(t)
        return t

    def _decl(self, decl: str) -> _t.Tuple[str, CType, str]:
        """``"const char *const *args"`` -> (name, ctype, C type text); arrays too."""
        decl = " ".join(decl.split())
        m = re.match(rf"^(.*?)\b({_IDENT})\s*(?:\[\s*([^\]]+)\s*\])?$", decl)
        if not m or not m.group(1).strip():
            raise HeaderError(f"{self.path}: cannot read declaration {decl!r}")
        ctext, name, dim = m.group(1).strip(), m.group(2), m.group(3)
        t = self.ctype(ctext)
        if dim is not None:
            n = _int(dim)
            if n is None:
                n = self.defines.get(dim.strip())
            if n is None:
                raise HeaderError(f"{self.path}: array size {dim!r} of {name}")
            t = t * n
            ctext = f"{ctext}[{n}]"
        return name, t, ctext

    def _params(self, params: str) -> _t.List[CType]:
        params = " ".join(params.split())
        if params in ("", "void"):
            return []
        return [self._decl(p)[1] for p in params.split(",")]


Bases = _t.Optional[_t.Mapping[str, _t.Type[ctypes.Structure]]]


def parse(text: str, path: str = "cluster.h", bases: Bases = None) -> Header:
    """Parses header ``text`` (see the module's docstring for what it understands).

    ``bases``: ``{struct name: class}`` to derive a struct's class from (a
    ``ctypes.Structure`` subclass without ``_fields_``, e.g. to add constructors); the
    function prototypes then take that class.
    """
    h = Header(path)
    for d in re.finditer(rf"^[ \t]*#[ \t]*define[ \t]+({_IDENT})[ \t]+([^\n]*)$",
                         _strip_comments(text), flags=re.M):
        v = _int(_strip_comments(d.group(2)))
        if v is not None:
            h.defines[d.group(1)] = v
    body = _strip_comments(re.sub(r"^[ \t]*#[^\n]*$", " ", text, flags=re.M))
    body = re.sub(r'extern\s+"C"\s*\{', " ", body)
    # Top-level statements: split on ';' outside braces.
    statements: _t.List[str] = []
    depth = 0
    cur: _t.List[str] = []
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == ";" and depth == 0:
            statements.append(" ".join("".join(cur).split()))
            cur = []
        elif depth >= 0:
            cur.append(ch)
        else:  # the closing brace of extern "C"
            depth = 0
    for st in statements:
        if not st:
            continue
        st = st.lstrip("} ").strip()
        m: "_t.Optional[re.Match[str]]" = re.match(rf"^typedef enum ({_IDENT}) \{{(.*)\}} ({_IDENT})$", st)
        if m:
            members: _t.Dict[str, int] = {}
            nxt = 0
            for item in m.group(2).split(","):
                item = item.strip()
                if not item:
                    continue
                name, _, value = item.partition("=")
                if value:
                    v = _int(value)
                    if v is None:
                        v = h.constant(value.strip())
                    nxt = v
                members[name.strip()] = nxt
                nxt += 1
            h.enums[m.group(1)] = members
            continue
        m = re.match(rf"^typedef struct ({_IDENT}) \{{(.*)\}} ({_IDENT})$", st)
        if m:
            tag = m.group(1)
            fields, described = [], []
            for decl in m.group(2).split(";"):
                decl = decl.strip()
                if not decl:
                    continue
                # "int uid, gid" declares two fields of one type.
                first, *more = decl.split(",")
                name, t, ctext = h._decl(first)
                fields.append((name, t))
                described.append((name, ctext))
                first_type = ctext.rstrip("*[]0123456789 ")
                for extra in more:
                    name, t, ctext = h._decl(f"{first_type} {extra.strip()}")
                    fields.append((name, t))
                    described.append((name, ctext))
            base = (bases or {}).get(tag, ctypes.Structure)
            doc = f"``struct {tag}`` as {path} declares it."
            h.structs[tag] = _t.cast(_t.Type[ctypes.Structure],
                                     type(tag, (base,), {"_fields_": fields, "__doc__": doc,
                                                         "__module__": base.__module__}))
            h.struct_fields[tag] = described
            h._typedefs[m.group(3)] = h.structs[tag]
            continue
        m = re.match(rf"^typedef struct ({_IDENT}) ({_IDENT})$", st)
        if m:
            h.structs.setdefault(m.group(1), None)
            h._typedefs[m.group(2)] = h.structs[m.group(1)]
            continue
        m = re.match(rf"^typedef (.+?)\(\s*\*\s*({_IDENT})\s*\)\s*\((.*)\)$", st)
        if m:
            ret = h.ctype(m.group(1)) if m.group(1).strip() != "void" else None
            h.callbacks[m.group(2)] = ctypes.CFUNCTYPE(ret, *h._params(m.group(3)))
            h._typedefs[m.group(2)] = h.callbacks[m.group(2)]
            continue
        m = re.match(rf"^(.+?)\b({_IDENT})\s*\((.*)\)$", st)
        if m and not st.startswith("typedef"):
            ret_text = m.group(1).strip()
            ret = None if ret_text == "void" else h.ctype(ret_text)
            h.functions[m.group(2)] = (ret, h._params(m.group(3)))
            continue
        raise HeaderError(f"{path}: cannot read {st[:80]!r}")
    return h


def load(path: str, bases: Bases = None) -> Header:
    """Reads and parses the header at ``path`` (``bases``: see :func:`parse`)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise HeaderError(f"cannot read libcluster's header {path}: {e.strerror}") from e
    return parse(text, os.path.abspath(path), bases)
