"""Small pieces more than one loader needs: a windowed view of a file, and the per-thread list
of models under construction (so a parse error raised deep in a reader keeps the unsafe-content
findings already made: the framework would have run them before failing)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..model import LoadedModel, LoadError, UnsafeLoadError
from ._ranged import SeekableReader


class FileWindow(SeekableReader):
    """A read-only, seekable view of ``[start, start+size)`` of a file: a stored zip member handed
    to h5py, one embedded archive of a ``.distcp`` file; nothing is extracted or read ahead."""

    def __init__(self, path: Path, start: int, size: int) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close(), lives with the window
        self._start, self._size, self._pos = start, size, 0

    @property
    def _extent(self) -> int:
        return self._size

    # a writable buffer (bytearray/memoryview from io): typed Any since the Buffer protocol
    # declares neither len() nor slice assignment
    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()


class UnderConstruction:
    """The models one loader is building, per thread (API callers may load files concurrently)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self) -> list[LoadedModel]:
        models: list[LoadedModel] | None = getattr(self._local, "models", None)
        if models is None:
            models = self._local.models = []
        return models

    @contextmanager
    def keeping_findings(self) -> Iterator[None]:
        """One load: starts with no model under construction and, when it fails with a LoadError,
        re-raises it as an UnsafeLoadError carrying the unsafe content already found (the
        framework would have acted on it before failing: issue 11, fail closed)."""
        self().clear()
        try:
            yield
        except LoadError as exc:
            found = [u for m in self() for u in m.unsafe]
            if found and not isinstance(exc, UnsafeLoadError):
                raise UnsafeLoadError(str(exc), found) from None
            raise
        finally:
            self().clear()


def read_json(path: Path, *, limit: int, what: str) -> Any:
    """A JSON file beside a checkpoint (an index, a metadata file), size-checked before it is
    read; every failure is one LoadError naming ``what``."""
    try:
        if path.stat().st_size > limit:
            raise LoadError(f"{what} is larger than {limit} bytes")
        return json.loads(path.read_text(encoding="utf-8"))
    except LoadError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise LoadError(f"{what} is not valid JSON ({detail})") from None


# what a bare exception class means in a damaged file, in words (issue 11: no user ever sees
# "(struct.error)" or "(IndexError)")
_MEANING = {
    "error": "corrupt compressed data",  # zlib.error, struct.error
    "UnicodeDecodeError": "text that is not valid UTF-8",
    "RecursionError": "nesting too deep to follow",
    "OverflowError": "a number out of range",
    "MemoryError": "a size too large to hold in memory",
    "IndexError": "a reference past the end of its table",
    "KeyError": "a reference to an entry that does not exist",
    "EOFError": "data that ends too early",
    "BadZipFile": "a damaged zip structure",
    "JSONDecodeError": "malformed JSON",
    "NotImplementedError": "a feature this reader does not support",
    "TypeError": "a value of the wrong kind",
    "ValueError": "an invalid value",
}


def describe(exc: BaseException) -> str:
    """A failure inside a damaged file as one short line of words: the exception's own message
    when it has one (first line, cut), else what its class means."""
    text = " ".join(str(exc).split())
    meaning = _MEANING.get(type(exc).__name__, "malformed data")
    if not text or isinstance(exc, KeyError):
        return meaning
    if type(exc).__name__ == "error":  # struct/zlib messages are terse: say what they mean
        return f"{meaning}: {text[:100]}"
    return text if len(text) <= 120 else text[:117] + "..."
