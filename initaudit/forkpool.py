"""The tensors of one file across forked worker processes (Linux), results in model order.

Why processes: the per-tensor analysis after the streaming pass (identification on the sample,
the trained/initialized block, the unit checks, thousands of small numpy calls) holds the GIL
most of the time, so threads do not overlap it: measured on the benchmark's 1.74 GB checkpoint,
two threads took as long as one (issue 14). Forked children share the parent's loaded model (its
tensor index, already-imported modules, mapped files) copy-on-write and start in ~1 ms, where a
spawned worker would re-import initaudit and re-parse the file.

When (``usable``): only on Linux, only when the loader says its tensors are read by mapping the
file by path or decoded from what it already parsed (local safetensors, GGUF, ONNX, torch.save,
npz and Flax msgpack files) (``LoadedModel.fork_safe``: no shared file offsets, sockets or
library handles a child could race on), only while this process runs no other Python thread (a fork copies locks
held by other threads; the caller's progress bar or a dask worker keeps the threaded path), and
never once a framework with its own native thread pools is imported (jax, torch, tensorflow:
``audit()`` called from a training script). The CLI imports none of them.

How: each child gets tensor indices over its own pipe, one at a time (the parent hands the next
index to whichever child answers first, so a large tensor does not hold up the rest), runs the
work function it inherited, and sends back the pickled result: a few small frozen dataclasses per
tensor, never the data. A child that dies or cannot pickle its result makes the map raise; the
parent kills and reaps every child on any exit, so none outlives the audit.
"""

from __future__ import annotations

import gc
import os
import pickle
import selectors
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_LEN = struct.Struct("<Q")
_IDX = struct.Struct("<q")
_STOP = -1


class WorkerError(RuntimeError):
    """A forked worker died or could not return its result."""


# imported, these run native thread pools a fork would copy mid-operation (jax warns, and
# deadlocks are documented for each): their presence keeps the threaded path
_THREADED_RUNTIMES = ("jax", "torch", "tensorflow")


def usable(workers: int, items: int) -> bool:
    return (
        workers > 1
        and items > 1
        and sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and threading.active_count() == 1
        and not any(name in sys.modules for name in _THREADED_RUNTIMES)
    )


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _child(fn: Callable[[Any], Any], items: Sequence[Any], tasks: int, results: int) -> None:
    """Runs in the forked child: never returns (os._exit, so no parent atexit/stdio runs)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, we just go
        while True:
            raw = _read_exact(tasks, _IDX.size)
            if raw is None:
                break
            (i,) = _IDX.unpack(raw)
            if i == _STOP:
                break
            try:
                payload = pickle.dumps((i, True, fn(items[i])), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # noqa: BLE001 - handed to the parent to re-raise
                try:
                    payload = pickle.dumps((i, False, exc), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # noqa: BLE001 - an unpicklable exception: its text
                    payload = pickle.dumps((i, False, WorkerError(f"{type(exc).__name__}: {exc}")))
            _write_all(results, _LEN.pack(len(payload)) + payload)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return
        code = 1
    finally:
        os._exit(code)


def _fate(pid: int) -> str:
    """What became of a child that closed its pipe without a result, in words."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "a worker process ended without returning its result"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = " (out of memory?)" if sig == signal.SIGKILL else ""
        return f"a worker process was killed by signal {sig}{why} before returning its result"
    return f"a worker process exited with code {os.WEXITSTATUS(status)} before returning its result"


def forked_map(fn: Callable[[Any], T], items: Sequence[Any], workers: int) -> Iterator[T]:
    """``map(fn, items)`` computed by ``workers`` forked children, yielded in order.

    ``fn`` and ``items`` are inherited by the fork, never pickled; each result is pickled once.
    An exception raised by ``fn`` is re-raised here, at its item's place in the order.
    """
    n = len(items)
    workers = max(1, min(workers, n))
    children: list[tuple[int, int, int]] = []  # (pid, task write end, result read end)
    reaped: set[int] = set()
    sel = selectors.DefaultSelector()
    gc.freeze()  # the children's collector leaves the inherited objects (and their pages) alone
    try:
        for _ in range(workers):
            task_r, task_w = os.pipe()
            res_r, res_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: its own ends only
                os.close(task_w)
                os.close(res_r)
                for _, other_w, other_r in children:
                    os.close(other_w)
                    os.close(other_r)
                _child(fn, items, task_r, res_w)
            os.close(task_r)
            os.close(res_w)
            children.append((pid, task_w, res_r))
            sel.register(res_r, selectors.EVENT_READ, len(children) - 1)
        gc.unfreeze()

        def send(k: int, index: int) -> None:
            try:
                _write_all(children[k][1], _IDX.pack(index))
            except BrokenPipeError:  # the child is gone: say how, as for a missing result
                reaped.add(children[k][0])
                raise WorkerError(_fate(children[k][0])) from None

        next_item = 0
        for k in range(len(children)):  # one item each to start with
            if next_item < n:
                send(k, next_item)
                next_item += 1
        done: dict[int, tuple[bool, Any]] = {}
        want = 0
        while want < n:
            while want in done:
                ok, value = done.pop(want)
                want += 1
                if not ok:
                    raise value
                yield value
            if want >= n:
                break
            for key, _ in sel.select():
                k = key.data
                res_r = children[k][2]
                head = _read_exact(res_r, _LEN.size)
                body = _read_exact(res_r, _LEN.unpack(head)[0]) if head is not None else None
                if body is None:
                    reaped.add(children[k][0])  # its pid may be reused: never signal it again
                    raise WorkerError(_fate(children[k][0]))
                # our own child's pickle of our own result types, never bytes from a checkpoint
                i, ok, value = pickle.loads(body)
                done[i] = (ok, value)
                if next_item < n:
                    send(k, next_item)
                    next_item += 1
                else:  # nothing left for this child: it exits, its pipe's end is not an error
                    sel.unregister(res_r)
                    send(k, _STOP)
    finally:
        gc.unfreeze()
        sel.close()
        for pid, task_w, res_r in children:
            for fd in (task_w, res_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if pid in reaped:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
