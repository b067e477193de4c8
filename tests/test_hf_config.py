"""Hugging Face config.json: activations per model family, metadata, GPT-2 Conv1D fans."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from initaudit.loaders import load
from initaudit.model import ActivationKind as K
from initaudit.model import Role

ROOT = Path(__file__).resolve().parents[1]


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    header, data = {}, b""
    rng = np.random.default_rng(0)
    for name, shape in shapes.items():
        raw = rng.normal(0, 0.02, shape).astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def kinds(model) -> dict[str, K | None]:
    return {layer.name: (layer.activation.kind if layer.activation else None) for layer in model.layers}


def test_bert_config(tmp_path: Path) -> None:
    p = "bert.encoder.layer.0."
    write_safetensors(tmp_path / "model.safetensors", {
        "bert.embeddings.word_embeddings.weight": (30, 8),
        p + "attention.self.query.weight": (8, 8), p + "attention.self.key.weight": (8, 8),
        p + "attention.self.value.weight": (8, 8), p + "attention.output.dense.weight": (8, 8),
        p + "intermediate.dense.weight": (32, 8), p + "output.dense.weight": (8, 32),
        "bert.pooler.dense.weight": (8, 8), "classifier.weight": (2, 8), "mystery.proj.weight": (8, 8)})
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "bert", "hidden_act": "gelu", "initializer_range": 0.02}))
    model = load(tmp_path / "model.safetensors")
    got = kinds(model)
    assert model.framework == "transformers"
    assert model.metadata["initializer_range"] == 0.02
    assert model.metadata["hf_config"]["model_type"] == "bert"
    assert got[p + "intermediate.dense"] is K.GELU
    assert got[p + "attention.self.query"] is K.LINEAR
    assert got[p + "output.dense"] is K.LINEAR
    assert got["bert.pooler.dense"] is K.TANH
    assert got["classifier"] is K.LINEAR
    assert got["mystery.proj"] is None  # unmapped: unknown, not guessed
    layer = model.layer(p + "intermediate.dense")
    assert layer.activation.source == "hf-config"


def test_gpt2_config_and_conv1d_fans(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {
        "h.0.attn.c_attn.weight": (16, 48), "h.0.attn.c_proj.weight": (16, 16),
        "h.0.mlp.c_fc.weight": (16, 64), "h.0.mlp.c_proj.weight": (64, 16), "wte.weight": (50, 16)})
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "activation_function": "gelu_new", "n_layer": 1}))
    model = load(tmp_path / "model.safetensors")
    got = kinds(model)
    assert got["h.0.mlp.c_fc"] is K.GELU
    assert model.layer("h.0.mlp.c_fc").activation.raw == "gelu_new"
    assert got["h.0.attn.c_attn"] is K.LINEAR and got["h.0.mlp.c_proj"] is K.LINEAR
    fc = next(t for t in model.layer("h.0.mlp.c_fc").tensors if t.role is Role.KERNEL)
    assert (fc.fan_in, fc.fan_out, fc.unit_axis) == (16, 64, 1)
    proj = next(t for t in model.layer("h.0.mlp.c_proj").tensors if t.role is Role.KERNEL)
    assert (proj.fan_in, proj.fan_out) == (64, 16)


def test_llama_swiglu_config(tmp_path: Path) -> None:
    p = "model.layers.0."
    write_safetensors(tmp_path / "model.safetensors", {
        p + "self_attn.q_proj.weight": (8, 8), p + "self_attn.o_proj.weight": (8, 8),
        p + "mlp.gate_proj.weight": (16, 8), p + "mlp.up_proj.weight": (16, 8),
        p + "mlp.down_proj.weight": (8, 16), "lm_head.weight": (40, 8)})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_act": "silu"}))
    got = kinds(load(tmp_path / "model.safetensors"))
    assert got[p + "mlp.gate_proj"] is K.SILU
    assert got[p + "mlp.up_proj"] is K.LINEAR  # multiplied by the gate: documented choice
    assert got[p + "mlp.down_proj"] is K.LINEAR
    assert got[p + "self_attn.q_proj"] is K.LINEAR and got["lm_head"] is K.LINEAR


def test_t5_gated_gelu(tmp_path: Path) -> None:
    p = "encoder.block.0.layer.1.DenseReluDense."
    write_safetensors(tmp_path / "model.safetensors", {
        p + "wi_0.weight": (16, 8), p + "wi_1.weight": (16, 8), p + "wo.weight": (8, 16)})
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "t5", "feed_forward_proj": "gated-gelu"}))
    model = load(tmp_path / "model.safetensors")
    assert model.layer(p + "wi_0").activation.raw == "gelu_new"
    assert kinds(model)[p + "wi_1"] is K.LINEAR


def test_non_hf_config_is_ignored(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"fc.weight": (4, 4)})
    (tmp_path / "config.json").write_text(json.dumps({"lr": 0.1}))
    model = load(tmp_path / "model.safetensors")
    assert "hf_config" not in model.metadata and model.framework != "transformers"


# --------------------------------------------------------------------------- real transformers

READER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from initaudit.loaders import load
m = load(sys.argv[2])
print(json.dumps({"acts": {l.name: (l.activation.kind.value if l.activation else None) for l in m.layers},
                  "fans": {t.name: [t.fan_in, t.fan_out] for t in m.tensors()},
                  "init": m.metadata.get("initializer_range"),
                  "forbidden": [k for k in ("torch", "transformers", "safetensors") if k in sys.modules]}))
"""


def _read(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", READER, str(ROOT), str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["forbidden"] == []
    return out


@pytest.mark.frameworks
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_tiny_real_transformers_models(tmp_path: Path, family: str) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    if family == "bert":
        cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=32)
        model = transformers.BertModel(cfg)
    elif family == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=1, num_attention_heads=2,
                                       num_key_value_heads=2)
        model = transformers.LlamaForCausalLM(cfg)
    model.save_pretrained(tmp_path, safe_serialization=True)
    out = _read(tmp_path)
    acts = out["acts"]
    assert out["init"] == pytest.approx(0.02)
    if family == "bert":
        assert acts["encoder.layer.0.intermediate.dense"] == "gelu"
        assert acts["encoder.layer.0.attention.self.query"] == "linear"
        assert acts["pooler.dense"] == "tanh"
    elif family == "gpt2":
        assert acts["transformer.h.0.mlp.c_fc"] == "gelu"
        assert out["fans"]["transformer.h.0.mlp.c_fc.weight"] == [16, 64]
        assert out["fans"]["transformer.h.0.attn.c_attn.weight"] == [16, 48]
    else:
        assert acts["model.layers.0.mlp.gate_proj"] == "silu"
        assert acts["model.layers.0.mlp.up_proj"] == "linear"
        assert acts["model.layers.0.self_attn.q_proj"] == "linear"
