"""The read-ahead advice is given only where it helps: a memory-mapped tensor whose pages are in
the page cache is left alone (the advice would only walk them), one evicted from it is
prefetched. Checked through the page cache itself (posix_fadvise DONTNEED evicts a file we
wrote: no root needed), not through timings."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from initaudit import engine

pytestmark = pytest.mark.skipif(
    not (hasattr(os, "RWF_NOWAIT") and hasattr(os, "posix_fadvise")),
    reason="needs preadv2(RWF_NOWAIT) and posix_fadvise (Linux)",
)


def _mapped(tmp_path: Path) -> np.memmap:
    path = tmp_path / "w.bin"
    np.arange(1 << 18, dtype=np.float32).tofile(path)
    return np.memmap(path, dtype=np.float32, mode="r", offset=4096, shape=(1 << 16,))


def _evict(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are not dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class _Advice:
    """Stands in for the tensor's mapping: records the advice given to it."""

    def __init__(self) -> None:
        self.given: list[tuple[int, ...]] = []

    def madvise(self, *args: int) -> None:
        self.given.append(args)


def test_a_cached_tensor_is_not_advised(tmp_path: Path) -> None:
    values = _mapped(tmp_path)
    float(values.sum())  # read: every page is now cached
    assert engine._in_page_cache(values)
    values._mmap = advice = _Advice()
    engine._prefetch(values)
    assert advice.given == []


def test_an_evicted_tensor_is_prefetched(tmp_path: Path) -> None:
    values = _mapped(tmp_path)
    _evict(str(values.filename))
    if engine._in_page_cache(values):
        pytest.skip("this filesystem kept the pages cached after POSIX_FADV_DONTNEED")
    real, values._mmap = values._mmap, (advice := _Advice())
    engine._prefetch(values)
    assert advice.given == [(mmap.MADV_WILLNEED,)]
    values._mmap = real
    assert float(values[-1]) == float((1 << 16) + 1024 - 1)  # and the mapping reads the file


def test_unknown_residency_means_prefetch(tmp_path: Path) -> None:
    plain = np.zeros(16, dtype=np.float32)  # no file behind it: nothing to ask
    assert not engine._in_page_cache(plain)
