"""IA301 exploding-init: std far above what any fan-based rule predicts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.report import Severity

from . import audit_arrays, codes, findings, glorot_normal, he_normal

CODE = "IA301"


def test_standard_normal_on_a_wide_layer_is_an_error() -> None:
    rng = np.random.default_rng(0)
    report = audit_arrays({"fc1.weight": rng.normal(0, 1, (512, 512)), "fc1.bias": np.zeros(512)},
                          ["fc1=relu"])
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "exploding-init", Severity.ERROR)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert "largest fan-based prediction" in f.message and "explode" in f.message
    assert "fan_in·Var(w)" in f.message
    # N(0, 1) on 512 inputs: fan_in * Var(w) = 512 instead of 2
    assert f.evidence["variance_gain"] == pytest.approx(512, rel=0.05)
    # the ceiling is the largest gain-aware fan-based std: LeCun with the tanh gain 5/3 here
    assert f.evidence["max_expected_std"] == pytest.approx(5 / 3 * np.sqrt(1 / 512))
    assert f.confidence == 1.0


def test_fires_whatever_the_activation() -> None:
    rng = np.random.default_rng(1)
    report = audit_arrays({"fc1.weight": rng.normal(0, 0.5, (512, 512))})  # activation unknown
    assert [f.tensor for f in findings(report, CODE)] == ["fc1.weight"]


def test_torch_embedding_default_is_silent() -> None:
    # nn.Embedding draws N(0, 1) by design; the same values as a Linear kernel are flagged
    rng = np.random.default_rng(2)
    values = rng.normal(0, 1, (1000, 512))
    assert findings(audit_arrays({"embed.weight": values}), CODE) == []
    assert findings(audit_arrays({"proj.weight": values}), CODE)


@pytest.mark.parametrize("init", [he_normal, glorot_normal])
def test_fan_based_schemes_are_silent(init) -> None:
    rng = np.random.default_rng(3)
    assert findings(audit_arrays({"fc1.weight": init(rng, 512, 512)}, ["fc1=relu"]), CODE) == []


def test_glorot_with_tanh_gain_is_silent() -> None:
    rng = np.random.default_rng(4)
    w = 5.0 / 3.0 * glorot_normal(rng, 256, 784)
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=tanh"]), CODE) == []


def test_standard_normal_on_a_tiny_layer_is_silent() -> None:
    # 4 -> 4: He predicts 0.71, so N(0, 1) is within a factor of 4 of a fan-based scale
    rng = np.random.default_rng(5)
    assert findings(audit_arrays({"fc1.weight": rng.normal(0, 1, (4, 4))}), CODE) == []


def test_orthogonal_with_a_large_gain_is_silent() -> None:
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.normal(size=(256, 256)))
    report = audit_arrays({"rnn.weight": 10.0 * q}, ["rnn=tanh"])
    assert findings(report, CODE) == []


def test_constant_kernel_is_left_to_constant_weights() -> None:
    report = audit_arrays({"fc1.weight": np.ones((512, 512))}, ["fc1=relu"])
    assert codes(report) == {"IA201"}


@settings(max_examples=30, deadline=None, derandomize=True)  # statistical rules: no flaky CI
@given(seed=st.integers(0, 2**32 - 1), fan_in=st.integers(8, 300), fan_out=st.integers(8, 300))
def test_he_never_explodes(seed: int, fan_in: int, fan_out: int) -> None:
    rng = np.random.default_rng(seed)
    assert findings(audit_arrays({"fc1.weight": he_normal(rng, fan_out, fan_in)}, ["fc1=relu"]),
                    CODE) == []


@pytest.mark.parametrize(("std", "severity"), [(1.0, "info"), (50.0, "error")])
def test_t5_untied_lm_head_convention_has_an_upper_bound(tmp_path, std, severity) -> None:
    """T5 documents N(0, factor * 1.0) for an untied lm_head: that is info; N(0, 50) is not the
    convention but a blow-up (review: the exemption had no upper bound)."""
    import json

    st = pytest.importorskip("safetensors.numpy")
    from initaudit.engine import audit_path

    rng = np.random.default_rng(0)
    tensors = {"encoder.block.0.layer.1.DenseReluDense.wi.weight":
               rng.normal(0, 0.05, (256, 128)).astype(np.float32),
               "lm_head.weight": rng.normal(0, std, (512, 128)).astype(np.float32)}
    st.save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 128,
                                                      "initializer_factor": 1.0}))
    report = audit_path(tmp_path / "model.safetensors")
    got = [f.severity.value for f in report.findings if f.code == "IA301" and f.tensor == "lm_head.weight"]
    assert got == [severity]


def test_a_config_init_std_is_a_documented_scale(tmp_path) -> None:
    """CPM-Ant draws every kernel from N(0, init_std = 1.0) (config.json): info, not an error
    (zoo: transformers cpmant); the same weights without that config stay an error."""
    import json

    st = pytest.importorskip("safetensors.numpy")
    from initaudit.engine import audit_path

    rng = np.random.default_rng(0)
    tensors = {f"encoder.layers.{i}.ffn.w_in.weight": rng.normal(0, 1.0, (256, 128)).astype(np.float32)
               for i in range(2)}
    tensors.update({f"encoder.layers.{i}.ffn.w_in.bias": np.zeros(256, np.float32) for i in range(2)})
    st.save_file(tensors, str(tmp_path / "model.safetensors"))
    report = audit_path(tmp_path / "model.safetensors")
    assert {f.severity.value for f in report.findings if f.code == "IA301"} == {"error"}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "cpmant", "init_std": 1.0}))
    report = audit_path(tmp_path / "model.safetensors")
    assert {f.severity.value for f in report.findings if f.code == "IA301"} == {"info"}
