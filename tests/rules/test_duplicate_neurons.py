"""IA202 duplicate-neurons: output units (rows, filters) with identical weights."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.report import Severity

from . import audit_arrays, findings, he_normal

CODE = "IA202"


def test_copied_rows_are_an_error() -> None:
    rng = np.random.default_rng(0)
    w = he_normal(rng, 32, 64)
    w[5] = w[3]
    w[7] = w[3]
    report = audit_arrays({"fc1.weight": w, "fc1.bias": np.zeros(32)}, ["fc1=relu"])
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "duplicate-neurons", Severity.ERROR)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert f.message.startswith("2 of 32 output units duplicate another unit exactly")
    assert "units 3, 5, 7" in f.message and "identical gradients" in f.message
    assert f.evidence["groups"] == [[3, 5, 7]]
    assert f.evidence["duplicated_units"] == 2


def test_tiled_tensor_is_an_error() -> None:
    rng = np.random.default_rng(1)
    w = np.tile(he_normal(rng, 16, 64), (2, 1))  # 32 rows, each half a copy of the other
    [f] = findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE)
    assert f.evidence["duplicated_units"] == 16
    assert f.message.startswith("16 of 32 output units")


def test_duplicate_conv_filters_are_an_error() -> None:
    rng = np.random.default_rng(2)
    w = rng.normal(0, np.sqrt(2 / 72), (16, 8, 3, 3))
    w[9] = w[2]
    [f] = findings(audit_arrays({"conv1.weight": w}, ["conv1=relu"]), CODE)
    assert f.tensor == "conv1.weight" and f.evidence["groups"] == [[2, 9]]


def test_random_kernel_is_silent() -> None:
    rng = np.random.default_rng(3)
    assert findings(audit_arrays({"fc1.weight": he_normal(rng, 256, 256)}, ["fc1=relu"]), CODE) == []


def test_all_zero_rows_are_not_duplicates() -> None:
    rng = np.random.default_rng(4)
    w = he_normal(rng, 32, 64)
    w[[1, 2, 3]] = 0.0
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE) == []


def test_units_with_fewer_than_four_weights_are_silent() -> None:
    # with 3 weights per unit, low-precision units can coincide by chance
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.5, (32, 3))
    w[1] = w[0]
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE) == []


def test_embedding_rows_are_not_checked() -> None:
    rng = np.random.default_rng(6)
    w = rng.normal(0, 1, (100, 16))
    w[1] = w[0]
    assert findings(audit_arrays({"embed.weight": w}), CODE) == []


def test_constant_kernel_is_left_to_constant_weights() -> None:
    report = audit_arrays({"fc1.weight": np.full((16, 8), 0.5)}, ["fc1=relu"])
    assert findings(report, CODE) == [] and findings(report, "IA201")


@settings(max_examples=30, deadline=None, derandomize=True)  # statistical rules: no flaky CI
@given(seed=st.integers(0, 2**32 - 1), units=st.integers(2, 200), width=st.integers(4, 200))
def test_random_kernels_never_have_duplicates(seed: int, units: int, width: int) -> None:
    rng = np.random.default_rng(seed)
    w = he_normal(rng, units, width).astype(np.float32)
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE) == []
