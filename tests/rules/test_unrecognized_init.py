"""IA401 unrecognized-init: no known scheme fits a kernel (informational)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.report import Severity

from . import audit_arrays, findings, glorot_uniform, he_normal, he_uniform, truncated_normal

CODE = "IA401"


def test_laplace_weights_are_info() -> None:
    rng = np.random.default_rng(0)
    report = audit_arrays({"fc1.weight": rng.laplace(0, 0.05, (256, 256)), "fc1.bias": np.zeros(256)},
                          ["fc1=relu"])
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "unrecognized-init", Severity.INFO)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert f.message.startswith("no family fits")
    assert "excess kurtosis" in f.message and "Trained or custom-initialised" in f.message
    assert f.evidence["gof_pvalue"] < 1e-4


def test_normal_at_an_unknown_scale_is_info_with_the_closest_scheme() -> None:
    rng = np.random.default_rng(1)
    [f] = findings(audit_arrays({"fc1.weight": rng.normal(0, 0.3, (256, 256))}, ["fc1=relu"]), CODE)
    assert f.message.startswith("no known scheme predicts std")
    assert "closest:" in f.message


def test_clearly_unknown_scale_has_high_confidence() -> None:
    rng = np.random.default_rng(1)
    report = audit_arrays({"fc1.weight": rng.normal(0, 0.3, (256, 256))}, ["fc1=relu"],
                          min_confidence=0.5)
    assert len(findings(report, CODE)) == 1


def test_too_small_to_identify_is_not_called_unrecognized() -> None:
    rng = np.random.default_rng(5)
    report = audit_arrays({"fc1.weight": he_normal(rng, 3, 4)}, ["fc1=relu"])
    assert findings(report, CODE) == []


@pytest.mark.parametrize("make", [
    lambda rng: he_normal(rng, 256, 256),
    lambda rng: he_uniform(rng, 256, 784),
    lambda rng: glorot_uniform(rng, 128, 300),
    lambda rng: truncated_normal(rng, (128, 300), np.sqrt(1 / 300)),  # Keras/JAX lecun_normal
    lambda rng: rng.normal(0, 0.02, (768, 768)),  # BERT/GPT-2
    lambda rng: np.linalg.qr(rng.normal(size=(128, 128)))[0],  # orthogonal
], ids=["he_normal", "he_uniform", "glorot_uniform", "lecun_truncated", "normal_0.02", "orthogonal"])
def test_known_schemes_are_silent(make) -> None:
    rng = np.random.default_rng(2)
    assert findings(audit_arrays({"fc1.weight": make(rng)}, ["fc1=relu"]), CODE) == []


def test_constant_and_nonfinite_kernels_are_left_to_their_rules() -> None:
    rng = np.random.default_rng(3)
    w = rng.laplace(0, 0.05, (64, 64))
    w[0, 0] = np.nan
    report = audit_arrays({"a.weight": np.zeros((64, 64)), "b.weight": w})
    assert findings(report, CODE) == []
    assert findings(report, "IA201") and findings(report, "IA203")


def test_biases_and_embeddings_are_not_checked() -> None:
    rng = np.random.default_rng(4)
    report = audit_arrays({"embed.weight": rng.laplace(0, 0.05, (500, 64)),
                           "fc1.weight": he_normal(rng, 64, 64), "fc1.bias": rng.laplace(0, 0.1, 64)},
                          ["fc1=relu"])
    assert findings(report, CODE) == []


@settings(max_examples=30, deadline=None, derandomize=True)  # statistical rules: no flaky CI
@given(seed=st.integers(0, 2**32 - 1), fan_in=st.integers(8, 300), fan_out=st.integers(8, 300),
       uniform=st.booleans())
def test_he_is_always_recognised(seed: int, fan_in: int, fan_out: int, uniform: bool) -> None:
    rng = np.random.default_rng(seed)
    w = (he_uniform if uniform else he_normal)(rng, fan_out, fan_in)
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE) == []
