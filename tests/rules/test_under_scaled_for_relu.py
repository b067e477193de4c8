"""IA102 under-scaled-for-relu: Glorot/LeCun/torch-default kernels feeding ReLU, info per layer;
a chain that shrinks the signal by >100x is IA601's one warning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.report import Severity

from . import (
    analyse_model,
    audit_arrays,
    chain_model,
    findings,
    glorot_normal,
    glorot_uniform,
    he_normal,
    lecun_normal,
    torch_default,
)

CODE = "IA102"


def test_one_glorot_layer_before_relu_is_info() -> None:
    rng = np.random.default_rng(0)
    report = audit_arrays({"fc1.weight": glorot_uniform(rng, 256, 784), "fc1.bias": np.zeros(256)},
                          ["fc1=relu"])
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "under-scaled-for-relu", Severity.INFO)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert "Glorot/Xavier" in f.message and "relu" in f.message and "He/Kaiming" in f.message
    assert "halves the second moment" in f.message
    # fan_in * Var(w) * 1/2 = 784 * 2/(784+256) / 2 = 0.754
    assert f.evidence["variance_gain"] == pytest.approx(784 / 1040, rel=0.05)
    assert f.evidence["he_std"] == pytest.approx(np.sqrt(2 / 784))


@pytest.mark.parametrize("init, gain", [(lecun_normal, 0.5), (torch_default, 1 / 6)])
def test_lecun_and_torch_default_shrink_by_their_factor(init, gain: float) -> None:
    rng = np.random.default_rng(1)
    report = audit_arrays({"fc1.weight": init(rng, 256, 784)}, ["fc1=relu"])
    [f] = findings(report, CODE)
    assert f.severity is Severity.INFO
    assert f.evidence["variance_gain"] == pytest.approx(gain, rel=0.05)


def test_leaky_relu_counts_with_its_slope() -> None:
    rng = np.random.default_rng(2)
    report = audit_arrays({"fc1.weight": lecun_normal(rng, 256, 784)}, ["fc1=leaky_relu(0.2)"])
    [f] = findings(report, CODE)
    # (1 + 0.2^2) / 2 of the second moment survives the leaky ReLU
    assert f.evidence["variance_gain"] == pytest.approx(0.52, rel=0.05)


def test_he_before_relu_is_silent() -> None:
    rng = np.random.default_rng(3)
    assert findings(audit_arrays({"fc1.weight": he_normal(rng, 256, 784)}, ["fc1=relu"]), CODE) == []


def test_glorot_with_relu_gain_is_silent() -> None:
    # xavier_normal_(w, gain=calculate_gain("relu")): the gain makes up for ReLU
    rng = np.random.default_rng(4)
    w = np.sqrt(2.0) * glorot_normal(rng, 256, 784)
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE) == []


@pytest.mark.parametrize("activation", ["tanh", "gelu", "linear"])
def test_glorot_before_other_activations_is_silent(activation: str) -> None:
    rng = np.random.default_rng(5)
    report = audit_arrays({"fc1.weight": glorot_uniform(rng, 256, 784)}, [f"fc1={activation}"])
    assert findings(report, CODE) == []


def test_unknown_activation_is_silent() -> None:
    rng = np.random.default_rng(6)
    assert findings(audit_arrays({"fc1.weight": glorot_uniform(rng, 256, 784)}), CODE) == []


def test_without_a_graph_there_is_no_chain_warning() -> None:
    # a bare state_dict has no layer order: eight under-scaled layers give eight infos only
    rng = np.random.default_rng(7)
    arrays = {f"fc{i}.weight": glorot_normal(rng, 256, 256) for i in range(8)}
    report = audit_arrays(arrays, ["fc*=relu"])
    found = findings(report, CODE)
    assert len(found) == 8
    assert {f.severity for f in found} == {Severity.INFO}


def test_chain_of_eight_glorot_layers_is_info_per_layer_and_one_ia601_warning() -> None:
    """The chain warning lives in IA601 (signal-propagation): one warning, not two."""
    rng = np.random.default_rng(8)
    model = chain_model([glorot_normal(rng, 256, 256) for _ in range(8)])
    report = analyse_model(model)
    found = findings(report, CODE)
    assert len(found) == 8 and all(f.severity is Severity.INFO for f in found)
    [w] = [f for f in report.findings if f.severity is Severity.WARNING]
    # each layer keeps ~1/2 of the second moment: 0.5^7 = 0.0078 < 1e-2 at the seventh layer
    assert (w.code, w.layer) == ("IA601", "fc6")


def test_a_normalized_layer_breaks_the_chain() -> None:
    rng = np.random.default_rng(9)
    model = chain_model([glorot_normal(rng, 256, 256) for _ in range(8)], normalized=[4])
    found = findings(analyse_model(model), CODE)
    assert all(f.severity is Severity.INFO for f in found)
    # the normalized layer itself is not counted either
    assert sorted(f.layer for f in found) == [f"fc{i}" for i in range(8) if i != 4]


def test_he_chain_is_silent() -> None:
    rng = np.random.default_rng(10)
    model = chain_model([he_normal(rng, 256, 256) for _ in range(8)])
    assert findings(analyse_model(model), CODE) == []


def test_torch_default_chain_stays_info_here() -> None:
    # torch's default keeps 1/6 per ReLU layer; whether the chain matters is IA601's call
    rng = np.random.default_rng(11)
    model = chain_model([torch_default(rng, 128, 128) for _ in range(4)])
    found = findings(analyse_model(model), CODE)
    assert len(found) == 4 and all(f.severity is Severity.INFO for f in found)


def test_hardtanh_is_not_relu_like() -> None:
    rng = np.random.default_rng(12)
    report = audit_arrays({"fc1.weight": glorot_normal(rng, 256, 784)}, ["fc1=hardtanh"])
    assert findings(report, CODE) == []


@settings(max_examples=30, deadline=None, derandomize=True)  # statistical rules: no flaky CI
@given(seed=st.integers(0, 2**32 - 1), fan_in=st.integers(16, 300), fan_out=st.integers(16, 300))
def test_he_before_relu_never_reported(seed: int, fan_in: int, fan_out: int) -> None:
    rng = np.random.default_rng(seed)
    report = audit_arrays({"fc1.weight": he_normal(rng, fan_out, fan_in)}, ["fc1=relu"])
    assert findings(report, CODE) == []
