"""A bounded msgpack walker that records where array bytes sit instead of copying them.

msgpack (https://github.com/msgpack/msgpack/blob/master/spec.md) is a documented byte layout;
walking it by hand lets a Flax ``.msgpack`` checkpoint be mapped lazily (each array a memmap of
its own bytes) and keeps hostile inputs bounded (depth, entry counts, lengths checked against
the file size before anything is allocated). Nothing is executed: ext types other than Flax's
ndarray/npscalar stay opaque.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ..model import LoadError

MAX_DEPTH = 64
MAX_ENTRIES = 10_000_000


@dataclass(frozen=True)
class Ext:
    """An ext value: its type code and where its payload sits in the buffer."""

    code: int
    offset: int
    length: int


class Walker:
    def __init__(self, buf: memoryview | bytes, base: int = 0) -> None:
        self.buf = buf
        self.pos = 0
        self.base = base  # absolute file offset of buf[0] (for Ext offsets)
        self.entries = 0

    def _take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise LoadError("msgpack data is truncated (a length runs past the end of the file)")
        self.pos = start + n
        return start

    def _u(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        start = self._take(size)
        return struct.unpack_from(fmt, self.buf, start)[0]

    def _bytes(self, n: int) -> bytes:
        start = self._take(n)
        return bytes(self.buf[start : start + n])

    def _count(self, n: int) -> int:
        self.entries += n
        if self.entries > MAX_ENTRIES:
            raise LoadError(f"msgpack data has more than {MAX_ENTRIES} entries")
        return n

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise LoadError(f"msgpack data is nested deeper than {MAX_DEPTH} levels")
        b = self._u("B")
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self._map(b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return self._array(b & 0x0F, depth)
        if 0xA0 <= b <= 0xBF:
            return self._bytes(b & 0x1F).decode("utf-8", errors="replace")
        simple: dict[int, Any] = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        if b in (0xC4, 0xC5, 0xC6):  # bin 8/16/32: kept as a location, never copied
            n = self._u({0xC4: "B", 0xC5: ">H", 0xC6: ">I"}[b])
            start = self._take(n)
            return Ext(-1, self.base + start, n)
        if b in (0xC7, 0xC8, 0xC9):
            n = self._u({0xC7: "B", 0xC8: ">H", 0xC9: ">I"}[b])
            code = self._u("b")
            start = self._take(n)
            return Ext(code, self.base + start, n)
        if b in (0xD4, 0xD5, 0xD6, 0xD7, 0xD8):
            n = 1 << (b - 0xD4)
            code = self._u("b")
            start = self._take(n)
            return Ext(code, self.base + start, n)
        fixed = {
            0xCA: ">f",
            0xCB: ">d",
            0xCC: "B",
            0xCD: ">H",
            0xCE: ">I",
            0xCF: ">Q",
            0xD0: "b",
            0xD1: ">h",
            0xD2: ">i",
            0xD3: ">q",
        }
        if b in fixed:
            return self._u(fixed[b])
        if b in (0xD9, 0xDA, 0xDB):
            n = self._u({0xD9: "B", 0xDA: ">H", 0xDB: ">I"}[b])
            return self._bytes(n).decode("utf-8", errors="replace")
        if b in (0xDC, 0xDD):
            return self._array(self._u(">H" if b == 0xDC else ">I"), depth)
        if b in (0xDE, 0xDF):
            return self._map(self._u(">H" if b == 0xDE else ">I"), depth)
        raise LoadError(f"msgpack byte 0x{b:02x} is not a valid type marker")

    def _array(self, n: int, depth: int) -> list[Any]:
        self._count(n)
        if n > len(self.buf) - self.pos:  # every element takes at least one byte
            raise LoadError("msgpack array declares more elements than the file holds")
        return [self.value(depth + 1) for _ in range(n)]

    def _map(self, n: int, depth: int) -> dict[Any, Any]:
        self._count(n)
        if 2 * n > len(self.buf) - self.pos:
            raise LoadError("msgpack map declares more entries than the file holds")
        out: dict[Any, Any] = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if isinstance(key, (list, dict, Ext)):
                raise LoadError("msgpack map has a non-scalar key")
            out[key] = self.value(depth + 1)
        return out


def walk(buf: memoryview | bytes, base: int = 0) -> Any:
    w = Walker(buf, base)
    value = w.value()
    if w.pos != len(buf):
        raise LoadError(f"msgpack data has {len(buf) - w.pos} trailing bytes after the top value")
    return value
