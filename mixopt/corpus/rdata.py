"""Read the text out of R's lazy-load databases (``Rdata.rdb`` / ``Rdata.rdx``) without R.

Debian's r-cran-* data packages (janeaustenr's novels, for instance) store their data sets as a
lazy-load database: ``.rdx`` is a compressed serialised index ``{variables: {name: (offset,
length)}}`` and each entry of ``.rdb`` is a 4-byte length followed by a zlib stream of one
serialised R object. This module decodes R's XDR serialisation (format 2 and 3) for the types
such data sets use (character, integer, double and logical vectors, lists, pairlists for
attributes, symbols, references) and nothing more; anything else raises a ``ValueError``.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

_NIL, _SYM, _LIST, _CHAR, _LGL, _INT, _REAL, _STR, _VEC = 254, 1, 2, 9, 10, 13, 14, 16, 19
_REF, _GLOBALENV, _EMPTYENV, _BASEENV, _MISSING, _UNBOUND = 255, 253, 242, 241, 251, 252
_NA_INT = -(2**31)


@dataclass
class RObject:
    """A decoded R value: ``value`` (list of str/int/float/None, or list of RObject) and attributes."""

    kind: str
    value: Any
    attributes: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def take(self, n: int) -> bytes:
        if n < 0:  # a damaged length: read as is, it would step back and read the same bytes forever
            raise ValueError(f"a negative length ({n}) in the R serialisation")
        if self.pos + n > len(self.data):
            raise ValueError("truncated R serialisation")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def header(self) -> None:
        if self.take(2) != b"X\n":
            raise ValueError("not an XDR R serialisation")
        version = self.int()
        self.int()
        self.int()
        if version == 3:
            self.take(self.int())  # native encoding name
        elif version != 2:
            raise ValueError(f"R serialisation version {version} is not supported")

    def item(self) -> Any:
        flags = self.int()
        kind = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in (_NIL, _GLOBALENV, _EMPTYENV, _BASEENV, _MISSING, _UNBOUND):
            return None
        if kind == _REF:
            idx = flags >> 8 or self.int()
            return self.refs[idx - 1]
        if kind == _SYM:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == _CHAR:
            n = self.int()
            return None if n == -1 else self.take(n).decode("latin-1" if flags & (1 << 14) else "utf-8")
        if kind == _LIST:
            out: dict[str, Any] = {}
            while kind == _LIST:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out[tag if tag is not None else str(len(out))] = self.item()
                flags = self.int()
                kind = flags & 0xFF
                has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
            if kind != _NIL:
                raise ValueError(f"unsupported pairlist tail of R type {kind}")
            return out
        if kind in (_LGL, _INT):
            n = self.int()
            vals = struct.unpack(f">{n}i", self.take(4 * n))
            value: Any = [None if v == _NA_INT else (bool(v) if kind == _LGL else v) for v in vals]
        elif kind == _REAL:
            n = self.int()
            value = list(struct.unpack(f">{n}d", self.take(8 * n)))
        elif kind in (_STR, _VEC):
            value = [self.item() for _ in range(self.int())]
        else:
            raise ValueError(f"R type {kind} is not supported by this reader")
        obj = RObject(
            kind={_LGL: "logical", _INT: "integer", _REAL: "double", _STR: "character", _VEC: "list"}[kind],
            value=value,
        )
        if has_attr:
            obj.attributes = self.item() or {}
        return obj


def named(obj: RObject) -> dict[str, Any]:
    """An R list or vector with names, as a dict."""
    names = obj.attributes.get("names")
    if not isinstance(names, RObject):
        raise ValueError("R object has no names")
    return dict(zip(names.value, obj.value, strict=True))


def unserialize(data: bytes) -> Any:
    """Decode one XDR-serialised R object (already decompressed)."""
    r = _Reader(data)
    r.header()
    return r.item()


def _decompress_file(raw: bytes) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.decompress(raw)
    if raw[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(raw)
    return raw


def _decompress_entry(blob: bytes) -> bytes:
    """A lazy-load entry: 4-byte big-endian length, then zlib (or R's 'Z'/'2'/'0' typed) data."""
    body = blob[4:]
    tag = body[:1]
    if tag == b"Z":
        return lzma.decompress(body[1:])
    if tag == b"2":
        return bz2.decompress(body[1:])
    if tag == b"0":
        return body[1:]
    return zlib.decompress(body)


# What damaged bytes raise on the way (a compressed stream cut short, an index that is not the
# list it should be, a reference past those read): each is said as a ValueError, as the rest are.
_DAMAGED = (zlib.error, lzma.LZMAError, OSError, EOFError, struct.error, IndexError, KeyError, TypeError,
            AttributeError, RecursionError)


def read_lazyload_bytes(rdb: bytes, rdx: bytes) -> dict[str, Any]:
    """All variables of a lazy-load database, from the bytes of its ``.rdb`` and ``.rdx`` files.

    Raises:
        ValueError: the bytes are not such a database, or are damaged.
    """
    try:
        index = unserialize(_decompress_file(rdx) if rdx[:2] != b"\x00\x00" else _decompress_entry(rdx))
        out: dict[str, Any] = {}
        for name, pos in named(named(index)["variables"]).items():
            offset, length = (int(x) for x in pos.value)
            out[name] = unserialize(_decompress_entry(rdb[offset : offset + length]))
    except _DAMAGED as exc:
        what = "zlib" if isinstance(exc, zlib.error) else type(exc).__name__  # zlib's class is "error"
        raise ValueError(f"{what}: {exc}" if str(exc) else what) from exc
    return out
