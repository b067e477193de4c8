"""IA103 selu-without-lecun: SELU layers need LeCun-scaled kernels (Var = 1/fan_in)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.report import Severity

from . import (
    audit_arrays,
    findings,
    glorot_normal,
    glorot_uniform,
    he_normal,
    lecun_normal,
    truncated_normal,
)

CODE = "IA103"


def test_glorot_on_a_non_square_layer_before_selu_warns() -> None:
    rng = np.random.default_rng(0)
    report = audit_arrays({"fc1.weight": glorot_uniform(rng, 32, 256), "fc1.bias": np.zeros(32)},
                          ["fc1=selu"])
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "selu-without-lecun", Severity.WARNING)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert "SELU" in f.message and "Glorot/Xavier" in f.message
    assert "sqrt(1/256)" in f.message and "lecun_normal" in f.message
    assert f.evidence["expected_std"] == pytest.approx(1 / 16)


def test_he_before_selu_warns() -> None:
    rng = np.random.default_rng(1)
    report = audit_arrays({"fc1.weight": he_normal(rng, 100, 300)}, ["fc1=selu"])
    [f] = findings(report, CODE)
    assert "He/Kaiming" in f.message


def test_torch_selu_gain_is_flagged() -> None:
    # kaiming_normal_(w, nonlinearity="selu") uses torch's gain 3/4: not the LeCun scale
    rng = np.random.default_rng(8)
    w = 0.75 * lecun_normal(rng, 100, 300)
    [f] = findings(audit_arrays({"fc1.weight": w}, ["fc1=selu"]), CODE)
    assert "gain 0.75" in f.message


def test_lecun_normal_is_silent() -> None:
    rng = np.random.default_rng(2)
    report = audit_arrays({"fc1.weight": lecun_normal(rng, 32, 256)}, ["fc1=selu"])
    assert report.findings == []


def test_keras_jax_truncated_lecun_normal_is_silent() -> None:
    rng = np.random.default_rng(3)
    w = truncated_normal(rng, (32, 256), np.sqrt(1 / 256))
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=selu"]), CODE) == []


def test_glorot_on_a_square_layer_is_lecun_and_silent() -> None:
    # 2/(n+n) = 1/n: Glorot and LeCun are the same scale on a square layer
    rng = np.random.default_rng(4)
    assert findings(audit_arrays({"fc1.weight": glorot_normal(rng, 256, 256)}, ["fc1=selu"]), CODE) == []


def test_unknown_activation_is_silent() -> None:
    rng = np.random.default_rng(5)
    assert findings(audit_arrays({"fc1.weight": glorot_uniform(rng, 32, 256)}), CODE) == []


def test_other_activation_is_silent() -> None:
    rng = np.random.default_rng(6)
    assert findings(audit_arrays({"fc1.weight": glorot_uniform(rng, 32, 256)}, ["fc1=elu"]), CODE) == []


def test_unrecognized_scheme_is_left_to_unrecognized_init() -> None:
    rng = np.random.default_rng(7)
    w = rng.laplace(0.0, 0.05, (64, 256))
    report = audit_arrays({"fc1.weight": w}, ["fc1=selu"])
    assert findings(report, CODE) == []
    assert findings(report, "IA401")


@settings(max_examples=30, deadline=None, derandomize=True)  # statistical rules: no flaky CI
@given(seed=st.integers(0, 2**32 - 1), fan_in=st.integers(16, 300), fan_out=st.integers(16, 300),
       truncated=st.booleans())
def test_lecun_before_selu_never_fires(seed: int, fan_in: int, fan_out: int, truncated: bool) -> None:
    rng = np.random.default_rng(seed)
    w = (truncated_normal(rng, (fan_out, fan_in), np.sqrt(1 / fan_in)) if truncated
         else lecun_normal(rng, fan_out, fan_in))
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=selu"]), CODE) == []
