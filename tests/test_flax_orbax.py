"""Orbax checkpoints as orbax writes them by default (OCDBT + zarr), read through tensorstore
in a process that never imports jax or orbax."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.loaders import LoadError, detect_format, load
from initaudit.model import Convention, Role

pytestmark = pytest.mark.frameworks

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
nn = pytest.importorskip("flax.linen")
ocp = pytest.importorskip("orbax.checkpoint")
pytest.importorskip("tensorstore")


def _save(path: Path, tree: Any) -> None:
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, tree)
    ckptr.wait_until_finished()


def _flat(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if hasattr(v, "items"):
            out.update(_flat(v, name))
        else:
            out[name] = np.asarray(v)
    return out


class _Cnn(nn.Module):
    @nn.compact
    def __call__(self, x: Any) -> Any:
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.BatchNorm(use_running_average=True)(x)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(10, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)(x)


def test_linen_orbax_step_bit_identical(tmp_path: Path) -> None:
    variables = _Cnn().init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    step = tmp_path / "ckpt" / "1"
    _save(step, variables)
    assert detect_format(step) == "orbax"
    expected = _flat(variables)
    # the reading process reports (dtype, sha256 of the bytes) per tensor
    code = ("import sys, json, hashlib, initaudit.loaders as L, numpy as np; m = L.load(sys.argv[1]); "
            "print(json.dumps({t.name: [str(t.load().dtype), hashlib.sha256("
            "np.ascontiguousarray(t.load()).tobytes()).hexdigest()] for t in m.tensors()})); "
            "bad = [x for x in ('jax', 'orbax', 'flax') if x in sys.modules]; assert not bad, bad")
    run = subprocess.run([sys.executable, "-c", code, str(step)],
                         capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got == {name: [str(arr.dtype), hashlib.sha256(arr.tobytes()).hexdigest()]
                   for name, arr in expected.items()}
    model = load(step)
    t = {x.name: x for x in model.tensors()}
    conv = t["params.Conv_0.kernel"]
    assert (conv.fan_in, conv.fan_out, conv.convention) == (27, 144, Convention.JAX)
    assert t["batch_stats.BatchNorm_0.mean"].role is Role.NORM_STAT
    assert t["params.Dense_0.kernel"].dtype == "bfloat16"
    assert {s.name for s in model.inventory or []} == set(expected)
    report = audit(str(step)).files[0]
    assert report.error is None and not report.findings


def test_nnx_orbax_and_manager_root(tmp_path: Path) -> None:
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(64, 32, rngs=nnx.Rngs(0))
    _, state = nnx.split(model)
    _save(tmp_path / "run" / "5", state)
    loaded = load(tmp_path / "run" / "5")
    kernel = next(t for t in loaded.tensors() if t.name == "kernel.value")  # nnx Variable wrapper
    assert (kernel.shape, kernel.fan_in, kernel.fan_out) == ((64, 32), 64, 32)
    report = audit(str(tmp_path / "run" / "5")).files[0]
    scheme = next(t.scheme for t in report.tensors if t.name == "kernel.value")
    assert scheme.rule == "lecun"
    with pytest.raises(LoadError, match="give one step"):
        load(tmp_path / "run")
