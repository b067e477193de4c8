"""IA204 dead-units: output units whose weights are all zero (the rest of the kernel is not)."""

from __future__ import annotations

import numpy as np

from initaudit.report import Severity

from . import audit_arrays, findings, he_normal

CODE = "IA204"


def test_zeroed_rows_are_reported_with_their_indices() -> None:
    rng = np.random.default_rng(1)
    w = he_normal(rng, 64, 128)
    w[[3, 10, 40]] = 0.0
    [f] = findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE)
    assert f.severity is Severity.WARNING and f.tensor == "fc1.weight"
    assert f.evidence["dead_units"] == [3, 10, 40] and f.evidence["n_dead"] == 3
    assert f.evidence["units"] == 64 and f.evidence["weights_per_unit"] == 128
    assert "3 of 64 output units" in f.message


def test_conv_filters_count_as_units() -> None:
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.1, (16, 8, 3, 3))
    w[5] = 0.0
    [f] = findings(audit_arrays({"conv.weight": w}), CODE)
    assert f.evidence["dead_units"] == [5]


def test_whole_zero_tensor_is_left_to_constant_weights() -> None:
    report = audit_arrays({"fc1.weight": np.zeros((32, 64))}, ["fc1=relu"])
    assert findings(report, CODE) == [] and findings(report, "IA201")


def test_healthy_kernel_and_tiny_units_are_silent() -> None:
    rng = np.random.default_rng(3)
    assert findings(audit_arrays({"fc1.weight": he_normal(rng, 64, 128)}), CODE) == []
    tiny = rng.normal(0, 0.5, (32, 4))
    tiny[0] = 0.0
    assert findings(audit_arrays({"fc1.weight": tiny}), CODE) == []


def test_embedding_padding_row_is_not_a_dead_unit() -> None:
    rng = np.random.default_rng(4)
    table = rng.normal(0, 1, (100, 32))
    table[0] = 0.0  # torch padding_idx
    assert findings(audit_arrays({"embed_tokens.weight": table}), CODE) == []
