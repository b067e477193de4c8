"""libhdf5 is C code: on a corrupt file it can loop forever, allocate without bound or crash,
and none of that can be interrupted from Python in-process (found by the mutation fuzzer,
issue 11). Before the Keras loader opens an HDF5 file, this module runs the same library over
the same bytes in a child process with a time limit and an address-space limit: it opens the
file, walks every group, reads every attribute and reads every chunked dataset the loader would
read (slab by slab: chunk indexes and filters are where libhdf5 walks file-declared structure),
not following links. Only when the child finishes does the loader parse the
file in-process - the same deterministic library on the same bytes then finishes too.

The child is this file run as a script (``python -I``, given the parent's ``sys.path`` so a
``--user`` or ``PYTHONPATH`` h5py is found): it imports h5py and numpy only, never initaudit, so a checked file costs one small process start (~0.2 s) and not a second import of
the whole package.
"""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

# a corrupt file gets this long, plus time in proportion to its size (a normal file is read
# at hundreds of MB/s: the allowance is ten times slower than that)
_BASE_SECONDS = 20.0
_SECONDS_PER_GB = 60.0
# address space of the child: the interpreter with numpy and h5py maps ~0.2 GB; a slab read
# is at most _SLAB_BYTES; the rest is what libhdf5 may allocate for metadata and chunk caches
MEMORY_LIMIT = 1536 * 2**20
_SLAB_BYTES = 64 * 2**20
# datasets the loader refuses to read anyway (bombs: see keras_loader._dataset_problem)
_BOMB_BYTES = 64 * 2**20
_BOMB_RATIO = 50
_MAX_OBJECTS = 1_000_000

_EXIT_MEMORY = 3
_PATH_VAR = "INITAUDIT_H5GUARD_SYSPATH"


class H5Refused(Exception):
    """The child did not finish: the reason, in words."""


# files already checked in this process, by identity and version: a file audited again (the
# lazy tensor loads, a diff, a watch loop) costs no second child
_passed: dict[tuple[int, int, int, int, tuple[int, int] | None], None] = {}
_PASSED_MAX = 1024


def check(path: Path, window: tuple[int, int] | None = None) -> None:
    """Raise :class:`H5Refused` when libhdf5 hangs, crashes or exhausts memory on the file."""
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, window)
    if key in _passed:
        return
    _run(path, window, window[1] if window else st.st_size)
    if len(_passed) >= _PASSED_MAX:
        _passed.clear()
    _passed[key] = None


def _run(path: Path, window: tuple[int, int] | None, size: int) -> None:
    timeout = _BASE_SECONDS + _SECONDS_PER_GB * size / 2**30
    args = [sys.executable, "-I", __file__, str(MEMORY_LIMIT), os.fspath(path)]
    if window:
        args += [str(window[0]), str(window[1])]
    try:
        res = subprocess.run(
            args,
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            # -I drops PYTHONPATH and user site-packages: hand over where this process found
            # h5py (a --user or PYTHONPATH install), never the working directory
            env={**os.environ, _PATH_VAR: os.pathsep.join(p for p in sys.path if p)},
        )
    except subprocess.TimeoutExpired:
        raise H5Refused(
            f"libhdf5 did not finish reading the file's structure within {timeout:.0f} s "
            "(a corrupt HDF5 file can make it loop): not read"
        ) from None
    except OSError as exc:  # the child could not even start: check skipped would be unsafe
        raise H5Refused(f"the HDF5 safety check could not run ({exc.strerror})") from None
    if res.returncode == 0:
        return
    if res.returncode == _EXIT_MEMORY:
        raise H5Refused(
            f"libhdf5 needed more than {MEMORY_LIMIT // 2**20} MB to read the file's "
            "structure (a corrupt or hostile HDF5 file): not read"
        )
    if res.returncode < 0:
        raise H5Refused(
            f"libhdf5 crashed reading the file (signal {-res.returncode}): "
            "a corrupt HDF5 file, not read"
        )
    tail = res.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
    raise H5Refused(f"the HDF5 safety check failed ({tail[0][:120]})")


def _limit_memory(limit: int) -> None:
    # set by the child itself, first thing (a preexec_fn is unsafe in a threaded parent)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# --------------------------------------------------------------------------- the child


class _Window(io.RawIOBase):
    """[start, start+size) of a file (a stored member of a .keras zip), read-only.

    The same as loaders._shared.FileWindow, kept apart on purpose: this script runs in the
    child without importing initaudit (one small process start per checked file)."""

    def __init__(self, path: str, start: int, size: int) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - lives as long as the window
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _read_dataset(ds: Any) -> None:
    import math

    if ds.shape is None or ds.dtype.kind not in "fiub" or ds.dtype.fields is not None:
        return
    nbytes = math.prod(ds.shape) * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    if nbytes > _BOMB_BYTES and (stored == 0 or nbytes > _BOMB_RATIO * stored):
        return  # refused by the loader before any read
    if ds.chunks is None:
        return  # contiguous bytes: one bounded read, no index or filter for libhdf5 to walk
    if not ds.shape:
        ds[()]
        return
    row = max(1, nbytes // max(ds.shape[0], 1))
    step = max(1, _SLAB_BYTES // row)
    for i in range(0, ds.shape[0], step):
        ds[i : i + step]


class _OutOfMemory(Exception):
    pass


def _named(exc: Exception) -> None:
    # libhdf5 reports a refused malloc as an error ("memory allocation failed"); in-process,
    # without the limit, the same allocation would succeed and cost that memory
    if "allocat" in str(exc).lower():
        raise _OutOfMemory from None


def _walk(f: Any) -> None:
    import h5py

    stack: list[Any] = [f]
    seen = 0
    visited: set[int] = set()  # hard links can make cycles: each object is read once
    while stack:
        group = stack.pop()
        try:
            for _k, v in group.attrs.items():
                del v
            keys = list(group.keys())
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            _named(exc)
            continue
        for key in keys:
            seen += 1
            if seen > _MAX_OBJECTS:
                return  # the loader refuses the file at the same count
            try:
                link = group.get(key, getlink=True)
                if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                    continue
                obj = group[key]
                if hash(obj.id) in visited:
                    continue
                visited.add(hash(obj.id))
                if isinstance(obj, h5py.Group):
                    stack.append(obj)
                elif isinstance(obj, h5py.Dataset):
                    for _k, v in obj.attrs.items():
                        del v
                    if not obj.is_virtual and not obj.external:
                        _read_dataset(obj)
            except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
                _named(exc)  # otherwise an error the loader names itself


def _main(argv: list[str]) -> int:
    extra = [p for p in os.environ.get(_PATH_VAR, "").split(os.pathsep) if p]
    sys.path[:0] = [p for p in extra if p not in sys.path]
    try:
        _limit_memory(int(argv.pop(0)))
        import h5py

        src: Any = argv[0] if len(argv) == 1 else _Window(argv[0], int(argv[1]), int(argv[2]))
        try:
            with h5py.File(src, "r") as f:
                _walk(f)
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            _named(exc)
    except (MemoryError, _OutOfMemory):
        return _EXIT_MEMORY
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
