"""IA302 vanishing-init: std far below what any fan-based rule predicts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.report import Severity

from . import audit_arrays, codes, findings, he_normal, torch_default

CODE = "IA302"


def test_tiny_normal_is_a_warning() -> None:
    rng = np.random.default_rng(0)
    report = audit_arrays({"fc1.weight": rng.normal(0, 1e-4, (512, 512)), "fc1.bias": np.zeros(512)},
                          ["fc1=relu"])
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "vanishing-init", Severity.WARNING)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert "below the smallest fan-based prediction" in f.message and "vanish" in f.message
    # the smallest fan-based std for 512 -> 512 is torch's default, 1/sqrt(3*512)
    assert f.evidence["min_expected_std"] == pytest.approx(1 / np.sqrt(3 * 512))
    # fan_in * Var(w) = 512 * 1e-8
    assert f.evidence["variance_gain"] == pytest.approx(5.12e-6, rel=0.05)


def test_small_normal_on_a_narrow_layer_warns() -> None:
    rng = np.random.default_rng(1)
    assert findings(audit_arrays({"fc1.weight": rng.normal(0, 1e-3, (512, 512))}), CODE)


def test_transformer_normal_002_on_768_is_silent() -> None:
    rng = np.random.default_rng(2)
    report = audit_arrays({"fc1.weight": rng.normal(0, 0.02, (768, 768))}, ["fc1=gelu"])
    assert findings(report, CODE) == []


def test_gpt2_residual_projection_is_silent() -> None:
    # GPT-2 re-draws mlp.c_proj with std 0.02/sqrt(2*n_layer): 0.0041 for 12 layers
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.02 / np.sqrt(24), (768, 3072))
    assert findings(audit_arrays({"mlp.c_proj.weight": w}), CODE) == []


@pytest.mark.parametrize("init", [he_normal, torch_default])
def test_fan_based_schemes_are_silent(init) -> None:
    rng = np.random.default_rng(4)
    assert findings(audit_arrays({"fc1.weight": init(rng, 512, 512)}, ["fc1=relu"]), CODE) == []


def test_zero_kernel_is_left_to_constant_weights() -> None:
    report = audit_arrays({"fc1.weight": np.zeros((512, 512))}, ["fc1=relu"])
    assert codes(report) == {"IA201"}


def test_embeddings_and_biases_are_not_checked() -> None:
    rng = np.random.default_rng(5)
    report = audit_arrays({"embed.weight": rng.normal(0, 1e-5, (1000, 64)),
                           "fc1.weight": he_normal(rng, 64, 64), "fc1.bias": rng.normal(0, 1e-6, 64)},
                          ["fc1=relu"])
    assert findings(report, CODE) == []


@settings(max_examples=30, deadline=None, derandomize=True)  # statistical rules: no flaky CI
@given(seed=st.integers(0, 2**32 - 1), fan_in=st.integers(8, 300), fan_out=st.integers(8, 300))
def test_he_never_vanishes(seed: int, fan_in: int, fan_out: int) -> None:
    rng = np.random.default_rng(seed)
    assert findings(audit_arrays({"fc1.weight": he_normal(rng, fan_out, fan_in)}, ["fc1=relu"]),
                    CODE) == []
