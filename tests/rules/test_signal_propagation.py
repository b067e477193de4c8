"""IA601 signal-propagation: one model-level warning when the predicted forward signal leaves
the band [1e-2, 1e2] along the graph; silent without a graph, with normalization, with He."""

from __future__ import annotations

import numpy as np

from initaudit.report import Severity

from . import (
    analyse_model,
    audit_arrays,
    chain_model,
    findings,
    glorot_normal,
    he_normal,
    torch_default,
)

CODE = "IA601"


def test_deep_glorot_relu_stack_warns_once_where_the_signal_leaves_the_band() -> None:
    rng = np.random.default_rng(1)
    report = analyse_model(chain_model([glorot_normal(rng, 256, 256) for _ in range(10)]))
    [f] = findings(report, CODE)
    assert f.severity is Severity.WARNING and f.tensor is None
    # 0.5 per square Glorot+ReLU layer: 0.5^7 = 0.0078 < 1e-2 at the seventh layer
    assert f.layer == "fc6" and f.evidence["depth"] == 7
    assert 0.005 < f.evidence["predicted_q"] < 0.01
    assert abs(f.evidence["mean_gain_per_layer"] - 0.5) < 0.05
    assert "vanishes" in f.message and "He/Kaiming" in f.message
    sig = report.signal
    assert sig["forward_exit"] == "fc6" and len(sig["layers"]) == 10


def test_exploding_stack_warns() -> None:
    rng = np.random.default_rng(2)
    # std 2.5x He: each ReLU layer multiplies q by 6.25
    weights = [he_normal(rng, 128, 128) * 2.5 for _ in range(5)]
    [f] = findings(analyse_model(chain_model(weights)), CODE)
    assert "explodes" in f.message and f.evidence["predicted_q"] > 100


def test_he_relu_stack_is_silent() -> None:
    rng = np.random.default_rng(3)
    report = analyse_model(chain_model([he_normal(rng, 256, 256) for _ in range(12)]))
    assert findings(report, CODE) == []
    assert all(0.5 < layer["q_out"] < 2.0 for layer in report.signal["layers"])


def test_normalization_resets_the_scale() -> None:
    rng = np.random.default_rng(4)
    model = chain_model([glorot_normal(rng, 256, 256) for _ in range(10)],
                        normalized=range(10))
    assert findings(analyse_model(model), CODE) == []


def test_short_torch_default_mlp_is_silent_deep_one_warns() -> None:
    rng = np.random.default_rng(5)
    short = chain_model([torch_default(rng, 128, 128) for _ in range(3)])
    assert findings(analyse_model(short), CODE) == []
    deep = chain_model([torch_default(rng, 128, 128) for _ in range(5)])
    [f] = findings(analyse_model(deep), CODE)
    assert f.layer == "fc2"  # 1/6 per layer: 1/216 after three


def test_a_single_vanishing_layer_is_left_to_its_own_rule() -> None:
    rng = np.random.default_rng(6)
    weights = [he_normal(rng, 64, 64), rng.normal(0, 1e-4, (64, 64)), he_normal(rng, 64, 64)]
    assert findings(analyse_model(chain_model(weights)), CODE) == []


def test_no_graph_no_prediction() -> None:
    rng = np.random.default_rng(7)
    arrays = {f"layers.{i}.weight": glorot_normal(rng, 256, 256) for i in range(10)}
    report = audit_arrays(arrays, ["layers.*=relu"])
    assert findings(report, CODE) == [] and report.signal is None
