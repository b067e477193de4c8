"""Keep OpenBLAS single-threaded while we analyse tensors on our own threads.

The audit parallelises over tensors (engine.py). OpenBLAS would add its own threads to every
small matrix product (SVDs of a few hundred rows, gemv with 8 probes), and on a busy 2-core
machine its spinning threads oversubscribe the cores: measured on the benchmark's ONNX model,
8.8 s wall with OpenBLAS threads against 3.4 s without. This is what ``threadpoolctl`` does,
reduced to the one library numpy and scipy bundle, with no new dependency: the loaded OpenBLAS
copies are found in /proc/self/maps (Linux; elsewhere this is a no-op) and their
``*_set_num_threads`` is called through ctypes. The previous setting is restored afterwards.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")
_lock = threading.Lock()
_depth = 0
_saved: list[tuple[Callable[[int], None], int]] = []


_found: list[tuple[Callable[[], int], Callable[[int], None]]] = []


def _controls() -> list[tuple[Callable[[], int], Callable[[int], None]]]:
    """The loaded OpenBLAS copies' (get, set) thread controls: looked up once per process (a
    /proc/self/maps scan and a dlopen, per audited file before), again only while none is found
    (numpy not imported yet)."""
    if not _found:
        _found.extend(_scan())
    return _found


def _scan() -> list[tuple[Callable[[], int], Callable[[int], None]]]:
    paths: set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if "openblas" in line.lower() and "/" in line:
                    paths.add(line[line.index("/") :].strip())
    except OSError:
        return []
    out = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype = ctypes.c_int
                    put.argtypes = [ctypes.c_int]
                    out.append((get, put))
                    break
            else:
                continue
            break
    return out


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """OpenBLAS limited to one thread for the duration (re-entrant, thread-safe)."""
    global _depth
    with _lock:
        if _depth == 0:
            _saved.clear()
            try:
                for get, put in _controls():
                    _saved.append((put, int(get())))
                    put(1)
            except Exception:  # noqa: BLE001 - a speed knob must never break an audit
                pass
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for put, n in _saved:
                    try:
                        put(n)
                    except Exception:  # noqa: BLE001
                        pass
                _saved.clear()
