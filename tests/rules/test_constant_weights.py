"""IA201 constant-weights: kernels whose entries are all equal (zeros included)."""

from __future__ import annotations

import numpy as np
import pytest

from initaudit.report import Severity

from . import audit_arrays, codes, findings, he_normal

CODE = "IA201"


def test_all_zero_kernel_is_an_error() -> None:
    report = audit_arrays({"fc1.weight": np.zeros((64, 128)), "fc1.bias": np.zeros(64)}, ["fc1=relu"])
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "constant-weights", Severity.ERROR)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert f.message.startswith("all zeros")
    assert "same gradient" in f.message and "no gradient flows" in f.message
    assert f.confidence == 1.0
    # one clear finding: the scale and identification rules leave a constant tensor alone
    assert codes(report) == {CODE}


def test_nonzero_constant_kernel_is_an_error() -> None:
    report = audit_arrays({"fc1.weight": np.full((16, 8), 0.5)}, ["fc1=relu"])
    [f] = findings(report, CODE)
    assert "all 128 entries equal 0.5" in f.message
    assert "no gradient flows" not in f.message
    assert f.evidence["value"] == 0.5
    assert codes(report) == {CODE}


def test_constant_embedding_is_an_error() -> None:
    [f] = findings(audit_arrays({"embed.weight": np.zeros((100, 16))}), CODE)
    assert f.tensor == "embed.weight"


def test_zero_bias_is_silent() -> None:
    rng = np.random.default_rng(0)
    report = audit_arrays({"fc1.weight": he_normal(rng, 64, 128), "fc1.bias": np.zeros(64)}, ["fc1=relu"])
    assert findings(report, CODE) == []


def test_norm_parameters_are_silent() -> None:
    rng = np.random.default_rng(1)
    report = audit_arrays({"fc1.weight": he_normal(rng, 64, 128), "norm.weight": np.ones(64),
                           "norm.bias": np.zeros(64)}, ["fc1=relu"])
    assert findings(report, CODE) == []


@pytest.mark.parametrize("name", ["q_proj.lora_B.weight", "base.lora_B.default.weight",
                                  "unet.down.lora_up.weight"])
def test_zero_lora_up_projection_is_silent(name: str) -> None:
    rng = np.random.default_rng(2)
    report = audit_arrays({name: np.zeros((64, 8)),
                           name.replace("lora_B", "lora_A").replace("lora_up", "lora_down"):
                               rng.normal(0, 0.01, (8, 64))})
    assert findings(report, CODE) == []


def test_nonzero_constant_lora_b_is_still_an_error() -> None:
    [f] = findings(audit_arrays({"q_proj.lora_B.weight": np.full((64, 8), 0.1)}), CODE)
    assert f.tensor == "q_proj.lora_B.weight"


def test_single_weight_is_silent() -> None:
    assert findings(audit_arrays({"fc1.weight": np.zeros((1, 1))}), CODE) == []


def test_lora_exemption_needs_the_whole_word() -> None:
    report = audit_arrays({"flora_blocks.0.weight": np.zeros((64, 32))}, ["flora_blocks.0=relu"])
    assert len(findings(report, CODE)) == 1


def test_zero_hidden_kernel_sorted_last_in_safetensors_stays_an_error(tmp_path) -> None:
    """safetensors sorts its header by name, so "the last kernel of the file" says nothing about
    position there: a zeroed DeepSeek-style q_b_proj (it sorts after mlp.*) is a hidden kernel
    with layers after it, not an output projection (found by benchmarks/zoo.py on axk1)."""
    st = pytest.importorskip("safetensors.numpy")
    from initaudit.engine import audit_path

    rng = np.random.default_rng(0)
    tensors = {
        "layers.0.mlp.down_proj.weight": rng.normal(0, 0.02, (64, 128)).astype(np.float32),
        "layers.0.mlp.up_proj.weight": rng.normal(0, 0.02, (128, 64)).astype(np.float32),
        "layers.0.self_attn.q_a_proj.weight": rng.normal(0, 0.02, (32, 64)).astype(np.float32),
        "layers.0.self_attn.q_b_proj.weight": np.zeros((64, 32), np.float32),
    }
    path = tmp_path / "model.safetensors"
    st.save_file(tensors, str(path))
    report = audit_path(path)
    hits = [(f.severity.value, f.tensor) for f in report.findings if f.code == "IA201"]
    assert hits == [("error", "layers.0.self_attn.q_b_proj.weight")]


@pytest.mark.parametrize(("model_type", "severity"), [("d_fine", "info"), ("llama", "error")])
def test_model_type_limited_conventions_reach_the_rule(tmp_path, model_type, severity) -> None:
    """Deformable attention starts sampling_offsets at zero in the DETR family only: the rule
    must pass the file's model_type to the table (it did not: D-FINE's zeros were errors)."""
    import json

    st = pytest.importorskip("safetensors.numpy")
    from initaudit.engine import audit_path

    rng = np.random.default_rng(0)
    tensors = {
        "decoder.layers.0.encoder_attn.sampling_offsets.weight": np.zeros((64, 32), np.float32),
        "decoder.layers.0.encoder_attn.value_proj.weight": rng.normal(0, 0.05, (32, 32)).astype(np.float32),
        "decoder.layers.0.fc1.weight": rng.normal(0, 0.05, (64, 32)).astype(np.float32),
    }
    st.save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    report = audit_path(tmp_path / "model.safetensors")
    got = [f.severity.value for f in report.findings
           if f.code == "IA201" and f.tensor and "sampling_offsets" in f.tensor]
    assert got == [severity]
