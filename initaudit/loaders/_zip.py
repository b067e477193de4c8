"""Safe access to the members of a zip checkpoint (torch archives, TorchScript, .pt2, .keras).

``zipfile`` parses the central directory (zip64 included); this module adds what a checkpoint
reader needs on top of it and what ``zipfile`` does not check:

* every member's local header is read and compared with its central-directory entry (name and
  compression method), because readers that trust one and writers that fill the other are the
  classic way to smuggle different content past a scanner;
* encrypted members and members that run past the end of the file are refused; duplicate names
  (exact or differing only in case) resolve as torch's reader does (case-insensitive, the last
  entry wins) and are listed in ``ambiguous`` so the loader can report them;
* tensor data must be *stored* (uncompressed) so it can be memory-mapped; its sizes come from the
  central directory because torch sets flag bit 3 (sizes in a trailing data descriptor);
* small text/pickle members may be compressed (TorchScript deflates its code files) and are read
  with a hard cap on the decompressed size.

The archive is a local file or a :class:`._ranged.ByteSource` (an object in a remote store): the
same checks then run over ranged reads -- the end of the file (the central directory), each
member's local header, and each member's bytes when they are read, none of them twice.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from ..model import LoadError
from ._ranged import ByteSource, RangeIO
from ._shared import describe

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_MAGIC = b"PK\x03\x04"
_FLAG_ENCRYPTED = 0x1
# members we read into memory (pickles, JSON, code) are small; a bigger one is a bomb or a mistake
DEFAULT_READ_CAP = 256 * 2**20
# deflate tops out near 1032:1; a member declaring more is a bomb (sizes are checked again on read)
MAX_RATIO = 1100
# a remote archive's tail fetched first: the end-of-central-directory record (and a comment of
# up to 64 KiB) and, for a checkpoint of a few hundred members, the whole central directory
REMOTE_TAIL = 64 * 1024 + 22


@dataclass(frozen=True)
class Member:
    """One validated zip member."""

    name: str
    data_offset: int  # absolute file offset of the member's first data byte
    size: int  # uncompressed size (central directory)
    compressed_size: int
    stored: bool  # compress_type == ZIP_STORED
    info: zipfile.ZipInfo = field(compare=False, repr=False, default=None)  # type: ignore[assignment]


class SafeZip:
    """A zip archive whose members are validated once, on open."""

    def __init__(self, path: Path, source: ByteSource | None = None) -> None:
        self.path = Path(path)
        # a remote archive: every read is a ranged request (path is then only its name)
        self.source = source
        self._memo: dict[tuple[str, int], bytes] = {}
        try:
            if source is not None:
                tail = min(source.size, REMOTE_TAIL)
                source.pread(source.size - tail, tail, keep=True)  # zipfile's reads land in it
                self._zf = zipfile.ZipFile(RangeIO(source))
            else:
                self._zf = zipfile.ZipFile(self.path)
        except LoadError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
            raise LoadError(f"corrupt or truncated zip archive ({exc})") from None
        except Exception as exc:  # zipfile raises odd things (struct.error, IndexError) on garbage
            raise LoadError(f"corrupt zip archive ({describe(exc)})") from None
        self.file_size = source.size if source is not None else self.path.stat().st_size
        self.members: dict[str, Member] = {}
        # every entry of the central directory, duplicates included, in directory order
        self.entries: list[Member] = []
        # names that resolve to more than one entry (exact or case-insensitive): the framework
        # reads one of them (torch/miniz and zipfile: the last), a scanner must look at all
        self.ambiguous: list[str] = []
        self._folded: dict[str, Member] = {}
        try:
            with self._reader() as pread:
                for info in self._zf.infolist():
                    member = self._validate(pread, info)
                    self.entries.append(member)
                    key = member.name.casefold()
                    if key in self._folded:
                        first = self._folded[key].name
                        what = (
                            f"{member.name!r} twice"
                            if first == member.name
                            else f"{first!r} and {member.name!r} (same name but for case)"
                        )
                        self.ambiguous.append(what)
                    self.members[member.name] = member  # the last entry wins, as in zipfile
                    self._folded[key] = member
        except LoadError:
            self._zf.close()
            raise

    def _reader(self) -> _Reader:
        return _Reader(self.path, self.source)

    @property
    def sample_seed(self) -> int | None:
        """Set when a remote archive is read as samples (--sample-only)."""
        return self.source.sample_seed if self.source is not None else None

    # -- validation -------------------------------------------------------------------------
    def _validate(self, pread: Callable[[int, int], bytes], info: zipfile.ZipInfo) -> Member:
        name = info.filename
        if info.flag_bits & _FLAG_ENCRYPTED:
            raise LoadError(f"zip member {name!r} is encrypted")
        if info.header_offset < 0 or info.header_offset + _LOCAL_HEADER.size > self.file_size:
            raise LoadError(f"zip member {name!r} points past the end of the file (truncated?)")
        central_name = info.orig_filename.encode(
            "utf-8" if info.flag_bits & 0x800 else "cp437", errors="replace"
        )
        # the fixed header and the name in one read (one ranged request for a remote archive)
        want = min(_LOCAL_HEADER.size + len(central_name), self.file_size - info.header_offset)
        raw = pread(info.header_offset, want)
        if len(raw) < _LOCAL_HEADER.size:
            raise LoadError(f"zip member {name!r}: truncated local header")
        (magic, _ver, flags, method, _t, _d, _crc, _csize, _usize, nlen, elen) = (
            _LOCAL_HEADER.unpack(raw[: _LOCAL_HEADER.size])
        )
        if magic != _LOCAL_MAGIC:
            raise LoadError(f"zip member {name!r}: bad local header signature")
        local_name = raw[_LOCAL_HEADER.size : _LOCAL_HEADER.size + nlen]
        if nlen != len(central_name) or local_name != central_name:
            raise LoadError(
                f"zip member {name!r}: local header names {local_name[:60]!r} "
                "(mismatched local/central headers)"
            )
        if method != info.compress_type:
            raise LoadError(
                f"zip member {name!r}: local and central headers disagree on compression"
            )
        if flags & _FLAG_ENCRYPTED:
            raise LoadError(f"zip member {name!r} is encrypted")
        data_offset = info.header_offset + _LOCAL_HEADER.size + nlen + elen
        if data_offset + info.compress_size > self.file_size:
            raise LoadError(
                f"zip member {name!r} runs past the end of the file (truncated archive)"
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise LoadError(f"zip member {name!r}: stored member with different sizes")
        return Member(
            name,
            data_offset,
            info.file_size,
            info.compress_size,
            info.compress_type == zipfile.ZIP_STORED,
            info,
        )

    # -- access -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.members)

    def get(self, name: str) -> Member | None:
        """Exact name first, then case-insensitively (torch's miniz reader ignores case)."""
        return self.members.get(name) or self._folded.get(name.casefold())

    def member(self, name: str) -> Member:
        m = self.get(name)
        if m is None:
            raise LoadError(f"zip archive has no member {name!r}")
        return m

    def read(self, name: str | Member, cap: int = DEFAULT_READ_CAP) -> bytes:
        """The bytes of a (small) member; compressed members are inflated up to ``cap``."""
        m = name if isinstance(name, Member) else self.member(name)
        name = m.name
        if m.size > cap:
            raise LoadError(f"zip member {name!r} is {m.size} bytes (limit {cap})")
        memo = self._memo.get((m.name, m.data_offset))
        if memo is not None:  # a remote pickle the scanner read already: not fetched twice
            return memo
        if m.stored:
            with self._reader() as pread:
                data = pread(m.data_offset, m.size)
            if len(data) != m.size:
                raise LoadError(f"zip member {name!r} is truncated")
            if self.source is not None:
                self._memo[(m.name, m.data_offset)] = data
            return data
        if m.compressed_size and m.size // m.compressed_size > MAX_RATIO and m.size > 2**20:
            raise LoadError(
                f"zip member {name!r} declares a {m.size // m.compressed_size}:1 "
                "compression ratio (zip bomb?)"
            )
        try:
            with self._zf.open(m.info) as fh:
                data = fh.read(cap + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise LoadError(f"zip member {name!r} cannot be inflated ({exc})") from None
        except Exception as exc:  # zlib.error and friends
            raise LoadError(f"zip member {name!r} cannot be inflated ({describe(exc)})") from None
        if len(data) > cap:
            raise LoadError(f"zip member {name!r} inflates beyond {cap} bytes (zip bomb?)")
        if self.source is not None:
            self._memo[(m.name, m.data_offset)] = data
        return data

    def head(self, m: Member, n: int) -> bytes:
        """At most the first ``n`` inflated bytes of a member (a peek, or a capped read: the
        caller compares the length with ``m.size``)."""
        memo = self._memo.get((m.name, m.data_offset))
        if memo is not None:
            return memo[:n]
        if self.source is not None and m.stored and n >= m.size and m.size <= DEFAULT_READ_CAP:
            return self.read(m)  # whole, through read(): a remote member is fetched once
        if m.stored:
            with self._reader() as pread:
                return pread(m.data_offset, min(n, m.size))
        try:
            with self._zf.open(m.info) as fh:
                return fh.read(n)
        except Exception as exc:  # noqa: BLE001 - zipfile/zlib raise many types on garbage
            raise LoadError(f"zip member {m.name!r} cannot be inflated ({exc})") from None

    def memmap(self, name: str) -> np.ndarray:
        """A read-only uint8 memory map of a stored member (tensor data is never inflated)."""
        m = self.member(name)
        return self.window(name, 0, m.size)

    def window(self, name: str, offset: int, length: int) -> np.ndarray:
        """``length`` bytes of a stored member from ``offset`` as read-only uint8: a memory map
        of the local file, or one ranged request of a remote one."""
        m = self.member(name)
        if not m.stored:
            raise LoadError(f"zip member {name!r} is compressed: tensor data must be stored")
        if offset < 0 or length < 0 or offset + length > m.size:
            raise LoadError(f"zip member {name!r}: range {offset}+{length} outside its {m.size}")
        if length == 0:
            return np.empty(0, dtype=np.uint8)
        if self.source is not None:
            return np.frombuffer(self.source.pread(m.data_offset + offset, length), np.uint8)
        return np.memmap(
            self.path, dtype=np.uint8, mode="r", offset=m.data_offset + offset, shape=(length,)
        )

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Reader:
    """``pread(offset, n)`` over the local file (one handle for a batch of reads) or the remote
    source (exactly one ranged request per call)."""

    def __init__(self, path: Path, source: ByteSource | None) -> None:
        self.path, self.source = path, source
        self._fh: IO[bytes] | None = None

    def __enter__(self) -> Callable[[int, int], bytes]:
        if self.source is not None:
            return self.source.pread
        self._fh = open(self.path, "rb")  # noqa: SIM115 - closed in __exit__
        fh = self._fh

        def pread(offset: int, n: int) -> bytes:
            fh.seek(offset)
            return fh.read(n)

        return pread

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
