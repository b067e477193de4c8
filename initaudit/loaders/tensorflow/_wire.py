"""Byte layouts TensorFlow files use, decoded with the standard library only.

- protobuf wire format (https://protobuf.dev/programming-guides/encoding/): enough to walk the
  few messages we need (BundleEntryProto, TrackableObjectGraph) field by field;
- the LevelDB table format TensorFlow's ``.index`` files use (tensorflow/core/lib/io/table*;
  leveldb doc/table_format.md): data blocks of prefix-compressed key/value entries, an index
  block, a 48-byte footer ending in the magic 0xdb4775248b80fb57.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ...model import LoadError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
MAX_BLOCK = 256 * 2**20


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise LoadError("protobuf varint is truncated or too long")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
            yield number, wire, value
        elif wire == 1:
            if pos + 8 > len(buf):
                raise LoadError("protobuf fixed64 is truncated")
            yield number, wire, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            n, pos = varint(buf, pos)
            if pos + n > len(buf):
                raise LoadError("protobuf field runs past the end of its message")
            yield number, wire, bytes(buf[pos : pos + n])
            pos += n
        elif wire == 5:
            if pos + 4 > len(buf):
                raise LoadError("protobuf fixed32 is truncated")
            yield number, wire, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise LoadError(f"protobuf wire type {wire} is not supported")


def _block_handle(buf: bytes, pos: int) -> tuple[int, int, int]:
    offset, pos = varint(buf, pos)
    size, pos = varint(buf, pos)
    return offset, size, pos


def _read_block(data: bytes, offset: int, size: int) -> bytes:
    if size > MAX_BLOCK or offset + size + 5 > len(data):
        raise LoadError("TensorFlow index block runs past the end of the file")
    kind = data[offset + size]
    if kind != 0:  # 1 = snappy; TensorFlow's tensor bundles are written uncompressed
        raise LoadError(f"TensorFlow index block compression {kind} is not supported")
    return data[offset : offset + size]


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise LoadError("TensorFlow index block is too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    if end < 0:
        raise LoadError("TensorFlow index block restart array is corrupt")
    pos, key = 0, b""
    while pos < end:
        shared, pos = varint(block, pos)
        non_shared, pos = varint(block, pos)
        value_len, pos = varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > end:
            raise LoadError("TensorFlow index entry is corrupt")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def read_table(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB-format table held in ``data``, in key order."""
    if len(data) < FOOTER_SIZE:
        raise LoadError("TensorFlow index file is shorter than its footer")
    footer = data[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0] != TABLE_MAGIC:
        raise LoadError("TensorFlow index file has no table magic (not a tf.train checkpoint?)")
    _, _, pos = _block_handle(footer, 0)  # metaindex handle (unused)
    index_offset, index_size, _ = _block_handle(footer, pos)
    out: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(_read_block(data, index_offset, index_size)):
        offset, size, _ = _block_handle(handle, 0)
        out.extend(_block_entries(_read_block(data, offset, size)))
    return out
