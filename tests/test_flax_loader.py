"""Flax / JAX checkpoints written by flax itself (linen and nnx), read without importing it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.loaders import detect_format, load
from initaudit.model import ActivationKind, Convention, Role

pytestmark = pytest.mark.frameworks

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
nn = pytest.importorskip("flax.linen")
serialization = pytest.importorskip("flax.serialization")


def _numpy_tree(tree: Any) -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) or hasattr(node, "items"):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            flat[prefix] = np.asarray(node)
    walk(tree, "")
    return flat


class _Net(nn.Module):
    @nn.compact
    def __call__(self, tokens: Any) -> Any:
        x = nn.Embed(100, 64)(tokens)
        x = nn.relu(nn.Dense(256)(x))
        x = nn.LayerNorm()(x)
        x = nn.Conv(32, (3,))(x)
        return nn.Dense(64)(x)


def _linen_variables(seed: int = 0) -> Any:
    return _Net().init(jax.random.key(seed), jnp.zeros((2, 5), jnp.int32))


def test_linen_msgpack_bit_identical_fans_and_lecun(tmp_path: Path) -> None:
    variables = _linen_variables()
    path = tmp_path / "model.msgpack"
    path.write_bytes(serialization.to_bytes(variables))
    assert detect_format(path) == "flax-msgpack"
    model = load(path)
    expected = _numpy_tree(variables)
    got = {t.name: t for t in model.tensors()}
    assert set(got) == set(expected)
    for name, arr in expected.items():
        assert got[name].load().tobytes() == arr.tobytes(), name
    assert {s.name for s in model.inventory or []} == set(expected)
    dense = got["params.Dense_0.kernel"]
    assert (dense.role, dense.fan_in, dense.fan_out, dense.convention) == (
        Role.KERNEL, 64, 256, Convention.JAX)
    conv = got["params.Conv_0.kernel"]  # (k, in, out) = (3, 256, 32)
    assert (conv.fan_in, conv.fan_out, conv.unit_axis) == (3 * 256, 3 * 32, 2)
    assert got["params.Embed_0.embedding"].role is Role.EMBEDDING
    assert got["params.LayerNorm_0.bias"].role is Role.NORM_SHIFT
    report = audit(str(path)).files[0]
    assert report.error is None and not report.findings
    schemes = {t.name: t.scheme for t in report.tensors if t.scheme is not None}
    for name in ("params.Dense_0.kernel", "params.Conv_0.kernel"):
        assert schemes[name].rule == "lecun" and schemes[name].distribution == "truncated_normal"


def test_read_without_importing_jax_flax_or_msgpack(tmp_path: Path) -> None:
    path = tmp_path / "model.msgpack"
    path.write_bytes(serialization.to_bytes(_linen_variables(1)))
    code = ("import sys, initaudit.api as a; r = a.audit(sys.argv[1]).files[0]; "
            "assert r.error is None, r.error; "
            "bad = [m for m in ('jax', 'flax', 'msgpack') if m in sys.modules]; "
            "assert not bad, bad; print(len(r.tensors))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(_numpy_tree(_linen_variables(1)))


def _torch_twin(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same weights in torch layout and names (Dense (in,out) -> Linear (out,in))."""
    out: dict[str, np.ndarray] = {}
    for name, arr in params.items():
        layer, _, leaf = name.removeprefix("params.").rpartition(".")
        if leaf == "kernel" and arr.ndim == 2:
            out[f"{layer}.weight"] = np.ascontiguousarray(arr.T)
        elif leaf == "kernel":  # Conv (k, in, out) -> (out, in, k)
            out[f"{layer}.weight"] = np.ascontiguousarray(np.moveaxis(arr, (-1, -2), (0, 1)))
        elif leaf in ("scale", "embedding"):
            out[f"{layer}.weight"] = arr
        else:
            out[f"{layer}.{leaf}"] = arr
    return out


def test_same_verdicts_as_the_torch_layout_twin(tmp_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    params = _numpy_tree(_linen_variables(2))
    params = {k: v.copy() for k, v in params.items()}
    params["params.Dense_1.kernel"][:] = 0.25  # constant kernel
    params["params.Conv_0.kernel"][0, 3, 1] = np.inf  # non-finite
    params["params.Dense_0.kernel"] *= 30  # exploded scale
    tree: dict[str, Any] = {}
    for name, arr in params.items():
        node = tree
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = arr
    flax_path = tmp_path / "broken.msgpack"
    flax_path.write_bytes(serialization.to_bytes(tree))
    torch_path = tmp_path / "broken.safetensors"
    safetensors_numpy.save_file(_torch_twin(params), str(torch_path))
    flax_report, torch_report = (audit(str(p)).files[0] for p in (flax_path, torch_path))

    def codes(report: Any) -> set[tuple[str, str]]:
        return {(f.code, (f.layer or f.tensor or "").removeprefix("params.").rsplit(".", 1)[0]
                 if f.tensor else f.layer or "") for f in report.findings}
    assert {c for c, _ in codes(torch_report)} >= {"IA201", "IA203"}
    assert {c for c, _ in codes(flax_report)} == {c for c, _ in codes(torch_report)}
    by_layer_flax = {f.code for f in flax_report.findings if "Dense_0" in (f.tensor or "")}
    by_layer_torch = {f.code for f in torch_report.findings if "Dense_0" in (f.tensor or "")}
    assert by_layer_flax == by_layer_torch and by_layer_flax


def test_nnx_state_msgpack(tmp_path: Path) -> None:
    nnx = pytest.importorskip("flax.nnx")

    class Block(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.conv = nnx.Conv(3, 16, (3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(16, rngs=rngs)
            self.fc = nnx.Linear(16 * 9, 10, rngs=rngs)

    block = Block(nnx.Rngs(0))
    state = nnx.to_pure_dict(nnx.state(block))
    path = tmp_path / "nnx.msgpack"
    path.write_bytes(serialization.to_bytes(state))
    model = load(path)
    got = {t.name: t for t in model.tensors()}
    expected = _numpy_tree(state)
    for name, arr in expected.items():
        assert got[name].load().tobytes() == arr.tobytes()
    assert (got["conv.kernel"].fan_in, got["conv.kernel"].fan_out) == (27, 144)
    assert (got["fc.kernel"].fan_in, got["fc.kernel"].fan_out) == (144, 10)
    assert got["bn.mean"].role is Role.NORM_STAT and got["bn.scale"].role is Role.NORM_SCALE
    report = audit(str(path)).files[0]
    assert not report.findings
    fc = next(t for t in report.tensors if t.name == "fc.kernel")
    assert fc.scheme.rule == "lecun"


def test_dense_general_attention_fans(tmp_path: Path) -> None:
    class Attn(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            return nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=128)(x)

    variables = Attn().init(jax.random.key(0), jnp.zeros((1, 6, 96)))
    path = tmp_path / "attn.msgpack"
    path.write_bytes(serialization.to_bytes(variables))
    got = {t.name: t for t in load(path).tensors()}
    q = got["params.MultiHeadDotProductAttention_0.query.kernel"]  # (embed, heads, head_dim)
    assert q.shape == (96, 4, 32) and (q.fan_in, q.fan_out) == (96, 128)
    out = got["params.MultiHeadDotProductAttention_0.out.kernel"]  # (heads, head_dim, embed)
    assert out.shape == (4, 32, 96) and (out.fan_in, out.fan_out) == (128, 96)
    report = audit(str(path)).files[0]
    assert not report.findings
    assert all(t.scheme.rule == "lecun" for t in report.tensors if t.name.endswith("kernel"))


def test_safetensors_written_from_flax_is_read_in_flax_layout(tmp_path: Path) -> None:
    """Before: torch layout, swapped fans and a false exploding-init on a Flax Dense kernel."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")

    class Wide(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            return nn.Dense(16)(nn.relu(nn.Dense(1024)(x)))

    variables = Wide().init(jax.random.key(3), jnp.zeros((1, 1024)))
    flat = _numpy_tree(variables["params"])
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(flat, str(path), metadata={"format": "flax"})
    model = load(path)
    k = {t.name: t for t in model.tensors()}["Dense_0.kernel"]  # (1024, 16): built first
    assert (k.fan_in, k.fan_out, k.convention) == (1024, 16, Convention.JAX)
    report = audit(str(path)).files[0]
    assert not report.findings, [f.message for f in report.findings]


def test_hf_flax_model_msgpack_gets_activations_from_config(tmp_path: Path) -> None:
    """transformers' Flax save_pretrained wrote ``to_bytes(params)`` with PyTorch-like names."""
    rng = np.random.default_rng(0)
    h, ff = 64, 256
    layer: dict[str, Any] = {
        "attention": {"self": {n: {"kernel": rng.normal(0, 0.02, (h, h)).astype(np.float32),
                                   "bias": np.zeros(h, np.float32)}
                               for n in ("query", "key", "value")}},
        "intermediate": {"dense": {"kernel": rng.normal(0, 0.02, (h, ff)).astype(np.float32),
                                   "bias": np.zeros(ff, np.float32)}},
        "output": {"dense": {"kernel": rng.normal(0, 0.02, (ff, h)).astype(np.float32),
                             "bias": np.zeros(h, np.float32)},
                   "LayerNorm": {"scale": np.ones(h, np.float32), "bias": np.zeros(h, np.float32)}},
    }
    params = {"bert": {"embeddings": {"word_embeddings": {
        "embedding": rng.normal(0, 0.02, (500, h)).astype(np.float32)}},
        "encoder": {"layer": {"0": layer}}}}
    (tmp_path / "flax_model.msgpack").write_bytes(serialization.to_bytes(params))
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "bert", "hidden_act": "gelu", "initializer_range": 0.02}))
    model = load(tmp_path / "flax_model.msgpack")
    acts = {lay.name: lay.activation.kind if lay.activation else None for lay in model.layers}
    assert acts["bert.encoder.layer.0.intermediate.dense"] is ActivationKind.GELU
    assert acts["bert.encoder.layer.0.attention.self.query"] is ActivationKind.LINEAR
    report = audit(str(tmp_path / "flax_model.msgpack")).files[0]
    assert not report.findings


def test_truncated_msgpack_is_a_one_line_error(tmp_path: Path) -> None:
    data = serialization.to_bytes(_linen_variables())
    path = tmp_path / "cut.msgpack"
    path.write_bytes(data[: len(data) // 2])
    report = audit(str(path)).files[0]
    assert report.error and "\n" not in report.error


def test_nnx_attention_and_linear_general_fans(tmp_path: Path) -> None:
    """Before: an nnx MultiHeadAttention under another name ('attn') had its output kernel read
    as a Conv1d (fan_out = heads * embed) and LinearGeneral(96, (4, 32)) got a false IA401."""
    nnx = pytest.importorskip("flax.nnx")

    class Block(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.attn = nnx.MultiHeadAttention(num_heads=4, in_features=96, qkv_features=128,
                                               decode=False, rngs=rngs)
            self.proj = nnx.LinearGeneral(96, (4, 32), rngs=rngs)

    state = nnx.to_pure_dict(nnx.state(Block(nnx.Rngs(0))))
    path = tmp_path / "block.msgpack"
    path.write_bytes(serialization.to_bytes(state))
    got = {t.name: t for t in load(path).tensors()}
    fans = {n: (t.op, t.fan_in, t.fan_out) for n, t in got.items() if n.endswith("kernel")}
    assert fans == {
        "attn.query.kernel": ("DenseGeneral", 96, 128),
        "attn.key.kernel": ("DenseGeneral", 96, 128),
        "attn.value.kernel": ("DenseGeneral", 96, 128),
        "attn.out.kernel": ("DenseGeneral", 128, 96),
        "proj.kernel": ("DenseGeneral", 96, 128),
    }
    report = audit(str(path)).files[0]
    assert not report.findings, [(f.code, f.tensor) for f in report.findings]
    assert all(t.scheme.rule == "lecun" for t in report.tensors if t.name.endswith("kernel"))
