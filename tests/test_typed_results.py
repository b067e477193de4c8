"""One typed result chain: the analysis's state, signal and skip records stay typed objects from
the engine through the report and the rule context to the reporters, and become JSON only in
``to_dict`` (the JSON itself is pinned by tests/test_json_schema.py and the reporter tests).
Callers written when these were dicts keep reading them by key."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np

import initaudit
from initaudit.analysis.results import LayerSignal, SignalReport, State, StateResult
from initaudit.cache import decode, encode
from initaudit.model import SkippedTensor, SkipReason
from initaudit.rules.base import RuleContext, TensorAnalysis

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def test_file_report_carries_typed_state_and_signal() -> None:
    fr = initaudit.audit(SAMPLES / "deep_glorot_relu.onnx", use_config=False).files[0]
    assert isinstance(fr.state, StateResult) and fr.state.state is State.INITIALIZED
    assert isinstance(fr.signal, SignalReport) and fr.signal.forward_exit is not None
    assert all(isinstance(layer, LayerSignal) for layer in fr.signal.layers)
    kernels = [t for t in fr.tensors if t.role == "kernel"]
    assert kernels and all(isinstance(t.state, StateResult) for t in kernels)
    data = fr.to_dict()
    assert data["state"] == fr.state.to_dict() and data["signal"] == fr.signal.to_dict()
    # the keyed reads of older callers are the JSON's keys and values
    assert fr.state["state"] == "initialized" and "evidence" in fr.state
    assert fr.signal["layers"] == data["signal"]["layers"]
    assert dict(fr.state) == data["state"]


def test_skipped_tensors_are_typed_records(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, **{"fc.weight": np.zeros((8, 8), np.float32),
                      "labels": np.array(["a", "b"], dtype=object)})
    fr = initaudit.audit(path, use_config=False).files[0]
    assert fr.skipped and all(isinstance(s, SkippedTensor) for s in fr.skipped)
    entry = next(s for s in fr.skipped if s.name == "labels")
    assert isinstance(entry.category, SkipReason)
    as_json = json.loads(json.dumps(fr.to_dict()))["skipped"]
    assert as_json == [{"name": s.name, "reason": s.reason, "category": s.category.value}
                       for s in fr.skipped]
    assert entry["name"] == "labels" and entry.get("category") == entry.category.value


def test_rule_context_types_what_the_rules_read() -> None:
    hints = typing.get_type_hints(RuleContext)
    assert hints["file_state"] == StateResult | None
    assert hints["signal"] == SignalReport | None
    assert typing.get_type_hints(TensorAnalysis)["state"] == StateResult | None


def test_results_cache_round_trip_keeps_the_types() -> None:
    """The cache (cache.py) writes the report as tagged JSON and reads it back by a whitelist:
    the typed records must come back as themselves, not as dicts."""
    fr = initaudit.audit(SAMPLES / "deep_glorot_relu.onnx", use_config=False).files[0]
    fr.skipped.append(SkippedTensor("x", "why", SkipReason.UNMAPPED))
    back = decode(json.loads(json.dumps(encode(fr))))
    assert isinstance(back.state, StateResult) and isinstance(back.signal, SignalReport)
    assert isinstance(back.skipped[-1], SkippedTensor)
    assert back.to_dict() == fr.to_dict()
