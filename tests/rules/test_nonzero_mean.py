"""IA303 nonzero-mean: kernel mean significantly and materially away from zero."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.report import Severity

from . import audit_arrays, findings, he_normal, he_uniform

CODE = "IA303"


def _standardised(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.normal(0, 1, shape)
    return (x - x.mean()) / x.std()


def test_shifted_kernel_is_a_warning() -> None:
    rng = np.random.default_rng(0)
    w = he_normal(rng, 256, 256) + 0.02  # 0.23 std of He(256) = 0.088
    report = audit_arrays({"fc1.weight": w, "fc1.bias": np.zeros(256)}, ["fc1=relu"])
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "nonzero-mean", Severity.WARNING)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert f.message.startswith("mean +0.02")
    assert "standard deviations away from zero" in f.message and "zero-mean" in f.message
    assert f.evidence["z"] > 5
    # confidence is the effect size |mean|/std, capped at 1
    assert f.confidence == pytest.approx(abs(f.evidence["mean"]) / f.evidence["std"])


def test_negative_shift_is_reported_with_its_sign() -> None:
    rng = np.random.default_rng(1)
    [f] = findings(audit_arrays({"fc1.weight": he_uniform(rng, 256, 256) - 0.05}, ["fc1=relu"]), CODE)
    assert f.message.startswith("mean -0.0") and f.evidence["mean"] < 0


def test_significant_but_small_offset_is_silent() -> None:
    # mean 0.1 std: z is huge on 65k values, but the offset is immaterial
    rng = np.random.default_rng(2)
    w = 0.088 * (_standardised(rng, (256, 256)) + 0.09)
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE) == []


def test_large_but_uncertain_offset_is_silent() -> None:
    # 32 values with mean 0.5 std: z = 0.5 * sqrt(32) = 2.8, not certain
    rng = np.random.default_rng(3)
    w = 0.1 * (_standardised(rng, (4, 8)) + 0.5)
    assert findings(audit_arrays({"fc1.weight": w}), CODE) == []


def test_fewer_than_16_values_are_silent() -> None:
    w = np.array([[1.0, 1.1, 0.9], [1.05, 0.95, 1.0], [1.02, 0.98, 1.01]])
    assert findings(audit_arrays({"fc1.weight": w}), CODE) == []


def test_biases_and_norms_are_silent() -> None:
    rng = np.random.default_rng(4)
    report = audit_arrays({"fc1.weight": he_normal(rng, 256, 256), "fc1.bias": rng.normal(1, 0.1, 256),
                           "norm.weight": rng.normal(1, 0.01, 256)}, ["fc1=relu"])
    assert findings(report, CODE) == []


def test_constant_kernel_is_left_to_constant_weights() -> None:
    report = audit_arrays({"fc1.weight": np.full((64, 64), 0.3)}, ["fc1=relu"])
    assert findings(report, CODE) == [] and findings(report, "IA201")


@settings(max_examples=30, deadline=None, derandomize=True)  # statistical rules: no flaky CI
@given(seed=st.integers(0, 2**32 - 1), fan_in=st.integers(8, 300), fan_out=st.integers(8, 300))
def test_zero_mean_schemes_never_fire(seed: int, fan_in: int, fan_out: int) -> None:
    rng = np.random.default_rng(seed)
    assert findings(audit_arrays({"fc1.weight": he_normal(rng, fan_out, fan_in)}, ["fc1=relu"]),
                    CODE) == []
