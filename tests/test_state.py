"""Trained or initialized? Per tensor and per file (analysis/state.py), and what the rules do
with the answer: init-pairing rules step back on trained files, broken-weight rules stay."""

from __future__ import annotations

import numpy as np
import pytest

import initaudit
from initaudit.analysis.state import State, StateResult, classify_file
from tests.rules import glorot_uniform, he_normal, torch_default, truncated_normal


def _state(report, name):
    return next(t.state for t in report.tensors if t.name == name)


def _trained_like(rng: np.random.Generator, out: int, inp: int) -> np.ndarray:
    """What training leaves: a few strong learnt directions, per-unit scales, heavy tails."""
    base = rng.standard_t(4, (out, inp)) * 0.02
    low_rank = rng.normal(0, 1, (out, 4)) @ rng.normal(0, 1, (4, inp)) * 0.02
    scales = np.exp(rng.normal(0, 0.5, (out, 1)))
    return (base + low_rank) * scales


@pytest.mark.parametrize("init", [he_normal, glorot_uniform, torch_default])
@pytest.mark.parametrize("shape", [(16, 64), (64, 64), (256, 128), (512, 1024)])
def test_fresh_draws_are_initialized(init, shape) -> None:
    rng = np.random.default_rng(sum(shape))
    report = initaudit.audit({"fc.weight": init(rng, *shape)}).files[0]
    st = _state(report, "fc.weight")
    assert st["state"] == "initialized", st
    assert report.state["state"] == "initialized"
    assert st["evidence"]["top_sv_over_mp_edge"] < 1.25


def test_truncated_normal_and_orthogonal_are_initialized() -> None:
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((128, 128)))
    report = initaudit.audit({"a.weight": truncated_normal(rng, (128, 256), 0.05),
                              "b.weight": q}).files[0]
    assert {_state(report, n)["state"] for n in ("a.weight", "b.weight")} == {"initialized"}


def test_trained_like_tensors_are_trained_with_evidence() -> None:
    rng = np.random.default_rng(2)
    arrays = {f"layers.{i}.weight": _trained_like(rng, 256, 256) for i in range(4)}
    report = initaudit.audit(arrays).files[0]
    assert report.state["state"] == "trained"
    assert report.state["evidence"]["trained_tensors"] == 4
    st = _state(report, "layers.0.weight")
    assert st["state"] == "trained"
    ev = st["evidence"]
    assert ev["top_sv_over_mp_edge"] > 1.5 and ev["unit_scale_spread"] > 3
    assert ev["excess_kurtosis"] > 1 and ev["indicators"]


def test_small_tensors_are_unknown() -> None:
    report = initaudit.audit({"fc.weight": np.random.default_rng(3).normal(0, 0.1, (8, 8))}).files[0]
    assert _state(report, "fc.weight")["state"] == "unknown"


def test_file_state_from_shares() -> None:
    t = StateResult(State.TRAINED, 0.9, "t")
    i = StateResult(State.INITIALIZED, 0.9, "i")
    assert classify_file([t, t, i]).state is State.TRAINED
    assert classify_file([i] * 20 + [t]).state is State.INITIALIZED
    assert classify_file([i, i, i, t]).state is State.UNKNOWN  # mixed
    assert classify_file([None]).state is State.UNKNOWN


def test_trained_file_keeps_broken_weight_rules_and_mutes_pairing_rules() -> None:
    rng = np.random.default_rng(4)
    arrays = {f"layers.{i}.weight": _trained_like(rng, 256, 256) for i in range(4)}
    # a He-scaled trained tensor before a sigmoid: no init-pairing error on a trained file
    arrays["gate.weight"] = _trained_like(rng, 256, 256) / 0.02 * np.sqrt(2 / 256) / 1.6
    arrays["dup.weight"] = _trained_like(rng, 64, 256)
    arrays["dup.weight"][1] = arrays["dup.weight"][0]
    arrays["nan.weight"] = _trained_like(rng, 64, 256)
    arrays["nan.weight"][0, 0] = np.nan
    arrays["zero.weight"] = np.zeros((64, 256))
    report = initaudit.audit(arrays, activation=["gate=sigmoid", "layers.*=relu"]).files[0]
    assert report.state["state"] == "trained"
    alarms = {(f.code, f.tensor) for f in report.findings if f.severity.value != "info"}
    assert alarms == {("IA202", "dup.weight"), ("IA203", "nan.weight"), ("IA201", "zero.weight")}
    assert not any(f.code in ("IA101", "IA102", "IA103") and f.severity.value != "info"
                   for f in report.findings)
