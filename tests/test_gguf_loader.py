"""GGUF loader: files written by the ``gguf`` package's GGUFWriter (what llama.cpp's converters
use), read back without importing it; dequantization checked bit for bit against the package's
own reference port of ggml-quants.c."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.loaders import LoadError, detect_format, load
from initaudit.loaders.gguf_loader import dequantize, read_header
from initaudit.model import ActivationKind, Role, SkipReason

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, quants

pytestmark = pytest.mark.frameworks

# types the package can quantize (written from real values); the others it only decodes
# (quantize raises NotImplementedError): written as random blocks with finite scales
ENCODABLE = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.TQ1_0, Q.TQ2_0,
             Q.MXFP4]
DECODE_ONLY = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS, Q.NVFP4]
# not decoded, each with the reason initaudit gives
NOT_DECODED = {Q.Q8_1, Q.Q8_K, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.IQ3_XXS, Q.IQ3_S, Q.IQ1_S, Q.IQ1_M,
               Q.Q1_0}
# byte range of each block's float16 scale(s) (ggml-common.h block layouts)
F16_SCALES = {Q.Q2_K: slice(-4, None), Q.Q3_K: slice(-2, None), Q.Q4_K: slice(0, 4),
              Q.Q5_K: slice(0, 4), Q.Q6_K: slice(-2, None), Q.IQ4_NL: slice(0, 2),
              Q.IQ4_XS: slice(0, 2)}


def _write(path: Path, tensors: dict[str, tuple[np.ndarray, Q]], arch: str = "llama",
           block_count: int | None = None) -> None:
    w = GGUFWriter(str(path), arch)
    if block_count is not None:
        w.add_block_count(block_count)
    for name, (data, qt) in tensors.items():
        w.add_tensor(name, data, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _random_blocks(qt: Q, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Random blocks of ``qt`` whose float16 scales are finite (the rest of each block is bits)."""
    block, size = gguf.GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    where = F16_SCALES.get(qt)
    if where is not None:
        width = len(range(size)[where])
        scale = rng.uniform(1e-4, 1e-3, size=(raw.shape[0], width // 2)).astype(np.float16)
        raw[:, where] = scale.view(np.uint8)
    return raw.reshape(rows, cols // block * size)


def test_every_decoded_type_is_bit_identical_to_the_reference(tmp_path: Path) -> None:
    from initaudit.loaders.gguf_loader import TYPES

    decoded = {t.name for t in TYPES.values() if t.decode is not None or t.plain is not None}
    assert {qt.name for qt in ENCODABLE + DECODE_ONLY} <= decoded
    assert decoded.isdisjoint(qt.name for qt in NOT_DECODED)
    rng = np.random.default_rng(0)
    stored: dict[str, tuple[np.ndarray, Q]] = {}
    for qt in ENCODABLE:
        values = (rng.standard_normal((64, 512)) * 0.02).astype(np.float32)
        stored[f"blk.0.t_{qt.name}.weight"] = (quants.quantize(values, qt), qt)
    for qt in DECODE_ONLY:
        stored[f"blk.0.t_{qt.name}.weight"] = (_random_blocks(qt, 64, 512, rng), qt)
    path = tmp_path / "types.gguf"
    _write(path, stored)
    header = read_header(path)
    assert len(header.tensors) == len(stored)
    for info in header.tensors:
        data, qt = stored[info.name]
        ours = np.asarray(dequantize(path, info))
        ref = quants.dequantize(data, qt)
        assert ours.shape == ref.shape == (64, 512), info.name
        assert np.isfinite(ref).all(), info.name  # the comparison is of real numbers
        assert ours.tobytes() == ref.astype(ours.dtype).tobytes(), info.name


def test_not_decoded_types_say_why(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    stored = {f"blk.0.t_{qt.name}.weight": (_random_blocks(qt, 4, 256, rng), qt)
              for qt in sorted(NOT_DECODED, key=lambda q: q.value)
              if 256 % gguf.GGML_QUANT_SIZES[qt][0] == 0}
    path = tmp_path / "iq.gguf"
    _write(path, stored)
    inv = {s.name: s for s in load(path).inventory or []}
    assert set(inv) == set(stored)
    for name, stored_tensor in inv.items():
        assert stored_tensor.skip is SkipReason.QUANTIZED_NOT_DECODED, name
        assert stored_tensor.detail and ": " in stored_tensor.detail, name
    assert "lattice codebooks" in (inv["blk.0.t_IQ2_XXS.weight"].detail or "")


def test_undecoded_type_is_inventoried_and_skipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "iq2.gguf"
    _write(path, {"blk.0.ffn_up.weight": (_random_blocks(Q.Q4_K, 32, 256, rng), Q.Q4_K),
                  "blk.0.ffn_down.weight": (rng.integers(0, 256, (32, 74), dtype=np.uint8), Q.IQ2_XS)})
    model = load(path)
    inv = {s.name: s for s in model.inventory or []}
    assert inv["blk.0.ffn_down.weight"].skip is SkipReason.QUANTIZED_NOT_DECODED
    assert inv["blk.0.ffn_down.weight"].weight_like and inv["blk.0.ffn_down.weight"].shape == (32, 256)
    assert inv["blk.0.ffn_up.weight"].skip is None
    assert [t.name for t in model.tensors()] == ["blk.0.ffn_up.weight"]
    report = audit(str(path)).files[0]
    assert any(s["name"] == "blk.0.ffn_down.weight" for s in report.skipped)


def _llama_like(rng: np.random.Generator, d: int = 64, ff: int = 256, vocab: int = 128
                ) -> dict[str, np.ndarray]:
    """A 2-block LLaMA-shaped state dict, GGUF names, torch (out, in) layout."""
    w: dict[str, np.ndarray] = {"token_embd.weight": rng.normal(0, 1, (vocab, d))}
    for i in range(2):
        for n, shape in (("attn_q", (d, d)), ("attn_k", (d, d)), ("attn_v", (d, d)),
                         ("attn_output", (d, d)), ("ffn_gate", (ff, d)), ("ffn_up", (ff, d)),
                         ("ffn_down", (d, ff))):
            w[f"blk.{i}.{n}.weight"] = rng.normal(0, 1 / np.sqrt(shape[1]), shape)
        w[f"blk.{i}.attn_norm.weight"] = np.ones(d)
        w[f"blk.{i}.ffn_norm.weight"] = np.ones(d)
    w["output_norm.weight"] = np.ones(d)
    w["output.weight"] = rng.normal(0, 1 / np.sqrt(d), (vocab, d))
    return {k: v.astype(np.float32) for k, v in w.items()}


def test_llama_layout_fans_activations_and_state(tmp_path: Path) -> None:
    weights = _llama_like(np.random.default_rng(2))
    path = tmp_path / "tiny-llama.gguf"
    _write(path, {k: (v, Q.F32) for k, v in weights.items()}, block_count=2)
    assert detect_format(path) == "gguf"
    model = load(path)
    assert model.format == "gguf" and model.metadata["gguf"]["general.architecture"] == "llama"
    assert model.metadata["n_layer"] == 2
    assert model.metadata["declared_state"]["state"] == "trained"
    t = {x.name: x for x in model.tensors()}
    for name, arr in weights.items():
        assert t[name].load().tobytes() == arr.tobytes()
    gate = t["blk.0.ffn_gate.weight"]
    assert (gate.role, gate.fan_in, gate.fan_out, gate.unit_axis) == (Role.KERNEL, 64, 256, 0)
    assert t["token_embd.weight"].role is Role.EMBEDDING
    acts = {layer.name: layer.activation.kind if layer.activation else None for layer in model.layers}
    assert acts["blk.0.ffn_gate"] is ActivationKind.SILU
    assert acts["blk.0.ffn_up"] is ActivationKind.LINEAR  # gated MLP: the up projection is linear
    assert acts["blk.1.attn_q"] is ActivationKind.LINEAR
    assert len(model.inventory or []) == len(weights)
    report = audit(str(path)).files[0]
    assert report.state is not None and report.state["state"] == "trained"
    assert "GGUF" in report.state["reason"]


def _codes(report) -> set[tuple[str, str | None]]:
    return {(f.code, f.tensor) for f in report.findings}


@pytest.mark.parametrize("qt", [Q.Q8_0, Q.Q5_1, Q.Q4_0])
def test_same_verdicts_as_the_safetensors_equivalent(tmp_path: Path, qt: Q) -> None:
    """Broken tensors are found through quantization as they are in the float original."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(3)
    weights = _llama_like(rng)
    weights["blk.0.ffn_down.weight"][:] = 0.05  # constant
    weights["blk.1.attn_v.weight"][3, 5] = np.nan  # non-finite
    weights["blk.1.ffn_up.weight"][:] *= 40  # exploded scale
    f32 = tmp_path / "m-f32.gguf"
    quantized = tmp_path / f"m-{qt.name}.gguf"
    st = tmp_path / "m.safetensors"
    _write(f32, {k: (v, Q.F32) for k, v in weights.items()}, block_count=2)
    # 2-D tensors quantized (the NaN one stays F32: a NaN in a block poisons its scale)
    _write(quantized, {k: ((quants.quantize(v, qt), qt) if v.ndim == 2 and np.isfinite(v).all()
                           else (v, Q.F32)) for k, v in weights.items()}, block_count=2)
    # the torch-side name of the embedding, so the state_dict reader knows it is one
    renamed = {"tok_embeddings.weight" if k == "token_embd.weight" else k: v
               for k, v in weights.items()}
    safetensors_numpy.save_file(renamed, str(st))
    r_st, r_f32, r_q = (audit(str(p)).files[0] for p in (st, f32, quantized))
    codes = {(c, "token_embd.weight" if t == "tok_embeddings.weight" else t)
             for c, t in _codes(r_st)}
    assert codes, "the broken tensors must produce findings"
    assert _codes(r_f32) == codes
    if qt is Q.Q8_0:
        assert _codes(r_q) == codes
    else:  # 4-5 bit blocks are too coarse to name the init scheme (IA401, info): the defects stand
        assert {c for c in _codes(r_q) if c[0] != "IA401"} == codes
    assert r_q.coverage.tensors_analysed == r_st.coverage.tensors_analysed == len(weights)
    assert r_q.coverage.complete
    tensors = {t for _, t in codes}
    assert {"blk.0.ffn_down.weight", "blk.1.attn_v.weight"} <= tensors


def test_audited_without_importing_gguf(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    weights = _llama_like(np.random.default_rng(4))
    _write(path, {k: (quants.quantize(v, Q.Q8_0), Q.Q8_0) for k, v in weights.items() if v.ndim == 2})
    code = ("import sys, initaudit.api as a; r = a.audit(sys.argv[1]).files[0]; "
            "assert r.error is None, r.error; assert 'gguf' not in sys.modules; print(len(r.tensors))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == sum(1 for v in weights.values() if v.ndim == 2)


@pytest.mark.parametrize("cut", [3, 20, 200, -100])
def test_truncated_file_is_one_line_error(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "m.gguf"
    weights = _llama_like(np.random.default_rng(5))
    _write(path, {k: (v, Q.F32) for k, v in weights.items()})
    data = path.read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[:cut])
    if cut == 3:  # not even the magic: not recognised as GGUF at all
        with pytest.raises(LoadError):
            load(bad)
        return
    with pytest.raises(LoadError) as exc:
        load(bad)
    assert "GGUF" in str(exc.value) and "\n" not in str(exc.value)
