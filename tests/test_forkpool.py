"""The tensors of one file in forked worker processes: same results, same order, same errors as
the serial path; no child outlives the audit; never used where a fork is unsafe."""

from __future__ import annotations

import json
import os
import sys
import threading

import numpy as np
import pytest

from initaudit import engine, forkpool
from initaudit.settings import AuditConfig

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="forked workers are used on Linux only"
)


def _square(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x * x


def _children() -> set[int]:
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as fh:
            return {int(p) for p in fh.read().split()}
    except OSError:
        return set()


def test_results_in_order_and_errors_at_their_place() -> None:
    before = _children()
    assert list(forkpool.forked_map(_square, list(range(7)), 3)) == [i * i for i in range(7)]
    out = []
    with pytest.raises(ValueError, match="seven"):
        for v in forkpool.forked_map(_square, list(range(12)), 2):
            out.append(v)
    assert out == [i * i for i in range(7)]  # everything before the failing item, in order
    assert _children() == before  # every child reaped, also after the error


def test_a_dying_worker_is_an_error_not_a_hang() -> None:
    def die(x: int) -> int:
        if x == 3:
            os._exit(3)
        return x

    with pytest.raises(forkpool.WorkerError):
        list(forkpool.forked_map(die, list(range(6)), 2))


def test_not_used_with_other_threads_alive() -> None:
    assert forkpool.usable(2, 10) is True
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert forkpool.usable(2, 10) is False  # a fork would copy the other thread's locks
    finally:
        stop.set()
        t.join()
    assert forkpool.usable(1, 10) is False and forkpool.usable(2, 1) is False


def _write_safetensors(path: str) -> None:

    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(6):
        tensors[f"layers.{i}.fc.weight"] = (rng.standard_normal((256, 128)) * (2 / 128) ** 0.5).astype(np.float32)
        tensors[f"layers.{i}.fc.bias"] = np.zeros(256, np.float32)
    tensors["layers.3.fc.weight"][5] = tensors["layers.3.fc.weight"][9]  # a duplicated unit
    tensors["layers.4.fc.weight"][:] = 0.5  # a constant kernel
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fh:
        fh.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def test_forked_audit_equals_the_serial_one(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "model.safetensors")
    _write_safetensors(path)
    serial = engine.audit_path(path, AuditConfig(workers=1))
    used = []
    real = forkpool.forked_map

    def spy(fn, items, workers):  # type: ignore[no-untyped-def]
        used.append(workers)
        return real(fn, items, workers)

    monkeypatch.setattr(engine, "FORK_MIN_BYTES", 0)
    monkeypatch.setattr(forkpool, "forked_map", spy)
    before = _children()
    forked = engine.audit_path(path, AuditConfig(workers=2))
    assert used == [2]
    assert _children() == before
    assert json.dumps(forked.to_dict(), sort_keys=True) == json.dumps(serial.to_dict(), sort_keys=True)
    codes = {(f.code, f.tensor) for f in forked.findings}
    assert any(t == "layers.3.fc.weight" for _, t in codes)  # the duplicated unit is reported
    assert any(t == "layers.4.fc.weight" for _, t in codes)  # the constant kernel is reported
