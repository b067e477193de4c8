"""Checkpoints read by byte ranges instead of from a local file (object stores, HTTP).

The loaders that can read a file by offsets (torch zip, GGUF, ONNX external data) accept a
:class:`ByteSource` in place of a path: ``pread(offset, length)`` returns exactly those bytes.
:mod:`initaudit.remote` implements it over fsspec (counting every byte fetched, keeping the
small regions it was asked to keep so that no byte is fetched twice); the loaders keep their
own parsing and only change where the bytes come from.

A source may ask for samples (``sample_seed`` set, ``--sample-only``): a tensor larger than
:data:`SMALL_TENSOR_BYTES` is then read as up to :data:`SAMPLE_BLOCKS` runs of whole rows
holding at most :data:`SAMPLE_ELEMENTS` values (:func:`sample_ranges`), and the engine leaves
out the rules that need every element (``settings.FULL_PASS_RULES``).
"""

from __future__ import annotations

import io
import math
from typing import Any, Protocol

import numpy as np

# per tensor in --sample-only: values fetched at most (a 64 Ki-value sample pins a std to ~0.5 %
# and an excess kurtosis to ~0.02, enough to tell the init families apart), in at most
# SAMPLE_BLOCKS ranged requests of whole rows; tensors up to SMALL_TENSOR_BYTES are read whole
SAMPLE_ELEMENTS = 1 << 16
SAMPLE_BLOCKS = 8
SMALL_TENSOR_BYTES = 64 * 1024
# a sequential reader (a GGUF header) asks for this much more than it needs, doubling while it
# keeps reading, up to READ_AHEAD_MAX: a header of N bytes costs ~log2(N / 64 KiB) requests and
# fetches at most ~N bytes past its end (kept, so the first tensor reuses them)
READ_AHEAD_MIN = 64 * 1024
READ_AHEAD_MAX = 16 * 2**20


class ByteSource(Protocol):
    """A file read by byte ranges. ``pread`` returns exactly ``length`` bytes or raises
    LoadError (one line); ``keep=True`` asks the source to hold the bytes for later reads."""

    name: str
    size: int
    sample_seed: int | None  # set: read tensors as samples (--sample-only)

    def pread(self, offset: int, length: int, *, keep: bool = False) -> bytes: ...


# LoadOptions.extra key under which initaudit.remote hands a loader the ByteSource of the file
SOURCE_KEY = "byte_source"


def byte_source(options: Any) -> ByteSource | None:
    """The ByteSource a loader was given instead of a local file, if any."""
    extra = getattr(options, "extra", None)
    return extra.get(SOURCE_KEY) if isinstance(extra, dict) else None


class SeekableReader(io.RawIOBase):
    """readable/seekable/tell/seek over ``[0, _extent)`` for a read-only file object: a subclass
    keeps ``_pos``, says how long it is (``_extent``) and reads in ``readinto`` (RangeIO here,
    loaders._shared.FileWindow)."""

    _pos = 0

    @property
    def _extent(self) -> int:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._extent}[whence]
        self._pos = max(0, base + offset)
        return self._pos


class RangeIO(SeekableReader):
    """A read-only, seekable file object over a :class:`ByteSource`, for parsers written against
    files (zipfile's central directory, the GGUF header reader). ``read_ahead``: fetch growing
    blocks and keep them (a sequential header); without it every read is exactly one range,
    kept by the source when ``keep`` (a zip's central directory read before the reader)."""

    def __init__(self, source: ByteSource, *, read_ahead: bool = False, keep: bool = False) -> None:
        super().__init__()
        self.source, self._pos, self._keep = source, 0, keep
        self._ahead = READ_AHEAD_MIN if read_ahead else 0
        self._buf, self._buf_start = b"", 0

    @property
    def _extent(self) -> int:
        return self.source.size

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.source.size - self._pos))
        if n == 0:
            return 0
        data = self._take(self._pos, n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _take(self, pos: int, n: int) -> bytes:
        if not self._ahead:
            return self.source.pread(pos, n, keep=self._keep)
        rel = pos - self._buf_start
        if 0 <= rel and rel + n <= len(self._buf):
            return self._buf[rel : rel + n]
        # a miss: fetch from pos on, at least the block, kept (the next range may start in it)
        want = min(self.source.size - pos, max(n, self._ahead))
        self._buf, self._buf_start = self.source.pread(pos, want, keep=True), pos
        self._ahead = min(READ_AHEAD_MAX, self._ahead * 2)
        return self._buf[:n]


def sample_ranges(
    shape: tuple[int, ...], itemsize: int, seed: int, budget: int = SAMPLE_ELEMENTS
) -> tuple[list[tuple[int, int]], tuple[int, ...]]:
    """Byte ranges (offset, length) to fetch for a sample of a C-ordered tensor, and the shape
    of what they hold once concatenated. Whole rows in up to SAMPLE_BLOCKS blocks, one per
    stratum of rows (spread over the tensor), so a unit's values stay together; a tensor whose
    rows exceed the budget is sampled as flat runs of elements."""
    size = math.prod(shape)
    rng = np.random.default_rng(seed)
    rows = shape[0] if len(shape) >= 2 else 0
    row_elems = size // rows if rows else 0
    if rows and row_elems <= budget // SAMPLE_BLOCKS:
        want = max(1, budget // row_elems)
        blocks = min(SAMPLE_BLOCKS, want, rows)
        per = max(1, want // blocks)
        stratum = rows // blocks
        out: list[tuple[int, int]] = []
        for b in range(blocks):
            lo, hi = b * stratum, (b + 1) * stratum if b < blocks - 1 else rows
            take = min(per, hi - lo)
            start = lo + int(rng.integers(0, hi - lo - take + 1))
            out.append((start * row_elems * itemsize, take * row_elems * itemsize))
        got = sum(length for _, length in out) // (row_elems * itemsize)
        return out, (got, *shape[1:])
    per = max(1, budget // SAMPLE_BLOCKS)
    blocks = max(1, min(SAMPLE_BLOCKS, size // per))
    stratum = size // blocks
    out = []
    for b in range(blocks):
        take = min(per, stratum)
        start = b * stratum + int(rng.integers(0, stratum - take + 1))
        out.append((start * itemsize, take * itemsize))
    return out, (sum(length for _, length in out) // itemsize,)


def read_items(
    source: ByteSource, offset: int, shape: tuple[int, ...], itemsize: int, *, per_item: int = 1
) -> tuple[bytes, tuple[int, ...]]:
    """The bytes of a C-ordered tensor of ``shape`` items at ``offset`` -- all of them, or
    (``source.sample_seed`` set and more than SMALL_TENSOR_BYTES) a sample of whole rows --
    and the shape of the items returned. ``per_item``: values per item (a quantized block
    holds 32 or 256), so a sample holds at most SAMPLE_ELEMENTS values either way."""
    nbytes = math.prod(shape) * itemsize
    seed = source.sample_seed
    if seed is None or nbytes <= SMALL_TENSOR_BYTES:
        return source.pread(offset, nbytes), shape
    ranges, got = sample_ranges(shape, itemsize, seed, budget=max(1, SAMPLE_ELEMENTS // per_item))
    return b"".join(source.pread(offset + off, n) for off, n in ranges), got


__all__ = [
    "SAMPLE_BLOCKS",
    "SAMPLE_ELEMENTS",
    "SMALL_TENSOR_BYTES",
    "SOURCE_KEY",
    "ByteSource",
    "RangeIO",
    "byte_source",
    "read_items",
    "sample_ranges",
]
