"""The tensors of one file in forked worker processes: same results, same order, same errors as
the serial path; no child outlives the audit; never used where a fork is unsafe.

The forking runs in a fresh interpreter (as the CLI does): this test process has imported jax
and torch, whose native thread pools are exactly why ``forkpool.usable`` refuses to fork here."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="forked workers are used on Linux only"
)
ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    return proc.stdout


CHILDREN = """
import os
def children():
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as fh:
        return fh.read().split()
"""


def test_results_in_order_errors_at_their_place_and_every_child_reaped() -> None:
    out = _run(CHILDREN + """
from initaudit import forkpool

def square(x):
    if x == 7:
        raise ValueError("seven")
    return x * x

def die(x):
    if x == 3:
        os._exit(3)
    return x

assert list(forkpool.forked_map(square, list(range(7)), 3)) == [i * i for i in range(7)]
got = []
try:
    for v in forkpool.forked_map(square, list(range(12)), 2):
        got.append(v)
except ValueError as exc:
    assert str(exc) == "seven"
assert got == [i * i for i in range(7)], got  # everything before the failing item, in order
try:
    list(forkpool.forked_map(die, list(range(6)), 2))
    raise AssertionError("a dying worker must be an error")
except forkpool.WorkerError as exc:
    assert "exited with code 3" in str(exc), exc
assert children() == [], children()
print("ok")
""")
    assert out.strip() == "ok"


def test_not_used_with_other_threads_or_threaded_frameworks() -> None:
    out = _run("""
import sys, threading
from initaudit import forkpool
print(forkpool.usable(2, 10), forkpool.usable(1, 10), forkpool.usable(2, 1))
stop = threading.Event()
t = threading.Thread(target=stop.wait)
t.start()
print(forkpool.usable(2, 10))
stop.set(); t.join()
sys.modules["torch"] = object()  # a framework with native thread pools is loaded
print(forkpool.usable(2, 10))
""")
    assert out.split() == ["True", "False", "False", "False", "False"]


def _write_safetensors(path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(6):
        w = rng.standard_normal((256, 128)) * (2 / 128) ** 0.5
        tensors[f"layers.{i}.fc.weight"] = w.astype(np.float32)
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
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))


FORKED_EQUALS_SERIAL = CHILDREN + """
import json, sys
from initaudit import engine, forkpool
from initaudit.settings import AuditConfig

serial = engine.audit_path(sys.argv[1], AuditConfig(workers=1)).to_dict()
used = []
real = forkpool.forked_map
def spy(fn, items, workers):
    used.append(workers)
    return real(fn, items, workers)
forkpool.forked_map = spy
engine.FORK_MIN_BYTES = 0  # the files are small: fork anyway
forked = engine.audit_path(sys.argv[1], AuditConfig(workers=2)).to_dict()
assert used == [2], used  # the forked path ran
assert children() == []
assert forked["status"] == "ok", forked
assert json.dumps(forked, sort_keys=True) == json.dumps(serial, sort_keys=True)
print(json.dumps({"tensors": len(forked["tensors"]),
                  "findings": sorted({(f["code"], f["tensor"]) for f in forked["findings"]})}))
"""


def _forked_equals_serial(path: Path) -> dict:
    """Audit ``path`` on one worker and on two forked ones in a fresh interpreter: the reports
    must be byte-identical; returns the tensor count and the (code, tensor) findings."""
    return json.loads(_run(FORKED_EQUALS_SERIAL, str(path)))


def test_forked_audit_equals_the_serial_one(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    _write_safetensors(path)
    got = _forked_equals_serial(path)
    found = {tuple(x) for x in got["findings"]}
    assert any(t == "layers.3.fc.weight" for _, t in found)  # the duplicated unit is reported
    assert any(t == "layers.4.fc.weight" for _, t in found)  # the constant kernel is reported


def test_forked_onnx_with_external_data_equals_the_serial_one(tmp_path: Path) -> None:
    """ONNX (embedded and external initializers, a graph with activations) through forked
    workers: the same report as one worker."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes, inits, prev = [], [], "x"
    for i in range(4):
        w = (rng.standard_normal((64, 64)) * (2 / 64) ** 0.5).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"r{i}"]))
        prev = f"r{i}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 64])], inits)
    model = helper.make_model(graph)
    path = tmp_path / "mlp.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="mlp.data", size_threshold=4096 * 4)  # w0..w3: 16 KB each, external
    assert (tmp_path / "mlp.data").stat().st_size >= 4 * 64 * 64 * 4
    got = _forked_equals_serial(path)
    assert got["tensors"] == 4


def test_forked_torch_zip_equals_the_serial_one(tmp_path: Path) -> None:
    """A torch.save'd checkpoint (zip, memmapped storages) through forked workers: the same
    report as one worker (audited in a process that imports no torch)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(4)], torch.nn.ReLU())
    with torch.no_grad():
        model[2].weight[3] = model[2].weight[7]  # a duplicated unit
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    got = _forked_equals_serial(path)
    assert any(t == "2.weight" for _, t in got["findings"])  # the duplicated unit is reported


@pytest.mark.parametrize("compressed", [False, True])
def test_forked_npz_equals_the_serial_one(tmp_path: Path, compressed: bool) -> None:
    """numpy's own npz writer, stored members (memory-mapped) and deflated ones (np.load per
    tensor): forked workers give the report one worker gives."""
    rng = np.random.default_rng(2)
    arrays = {f"layers.{i}.weight": (rng.standard_normal((64, 64)) * (2 / 64) ** 0.5)
              .astype(np.float32) for i in range(4)}
    arrays["layers.1.weight"][5] = arrays["layers.1.weight"][9]  # a duplicated unit
    path = tmp_path / "weights.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    got = _forked_equals_serial(path)
    assert got["tensors"] == 4
    assert any(t == "layers.1.weight" for _, t in got["findings"])


@pytest.mark.frameworks
def test_forked_flax_msgpack_equals_the_serial_one(tmp_path: Path) -> None:
    """A Flax checkpoint written by flax.serialization (msgpack, memory-mapped arrays) through
    forked workers: the same report as one worker (audited in a process that imports no jax)."""
    serialization = pytest.importorskip("flax.serialization")
    rng = np.random.default_rng(3)
    params = {"params": {f"Dense_{i}": {
        "kernel": (rng.standard_normal((64, 64)) * (1 / 64) ** 0.5).astype(np.float32),
        "bias": np.zeros(64, np.float32)} for i in range(4)}}
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(serialization.to_bytes(params))
    got = _forked_equals_serial(path)
    assert got["tensors"] == 8


def test_a_killed_worker_makes_the_file_an_error_of_one_line(tmp_path: Path) -> None:
    """A worker killed mid-audit (the kernel's OOM killer sends SIGKILL): the file is reported as
    an error with one line saying so, no traceback, no hang, no child left behind."""
    path = tmp_path / "model.safetensors"
    _write_safetensors(path)
    out = _run(CHILDREN + """
import os, signal, sys
from initaudit import engine, forkpool
from initaudit.settings import AuditConfig

real = forkpool.forked_map
def killing(fn, items, workers):
    def work(t):
        if t.name == "layers.2.fc.weight":
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(t)
    return real(work, items, workers)
forkpool.forked_map = killing
engine.FORK_MIN_BYTES = 0
r = engine.audit_path(sys.argv[1], AuditConfig(workers=2))
assert children() == []
print(r.status.value)
print(r.error)
""", str(path))
    status, error = out.strip().split("\n")
    assert status == "error"
    assert error == (
        "could not be analysed: a worker process was killed by signal 9 (out of memory?) "
        "before returning its result"
    )
