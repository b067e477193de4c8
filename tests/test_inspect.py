"""``initaudit inspect``: every tensor with its numbers, filterable, human and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from initaudit.cli import main

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MLP = str(SAMPLES / "mlp_he_sigmoid.onnx")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_human_shows_stats_scheme_and_evidence_for_every_tensor(capsys):
    code, out, err = run(capsys, "inspect", MLP)
    assert code == 0 and err == ""
    for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        assert name in out
    assert "kernel" in out and "bias" in out and "fan 300→100" in out and "act sigmoid (graph)" in out
    assert "std 0.082" in out and "kurtosis" in out
    assert "He/Kaiming normal (fan_in)" in out and "confidence 100%" in out
    assert "also consistent: He/Kaiming uniform (fan_in)" in out  # fc2's alternative
    assert "KS/GOF p" in out and "std 95% [" in out


def test_layer_filter_and_json(capsys):
    code, out, _ = run(capsys, "inspect", MLP, "--layer", "fc2*", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["layer_filter"] == "fc2*"
    tensors = data["files"][0]["tensors"]
    assert [t["name"] for t in tensors] == ["fc2.weight", "fc2.bias"]
    weight = tensors[0]
    assert set(weight) >= {"stats", "scheme", "role", "fan_in", "fan_out", "activation"}
    assert weight["stats"]["n"] == 1000 and "std_interval_95" in weight["scheme"]["evidence"]
    assert weight["scheme"]["alternatives"]


def test_activation_hint_and_errors(capsys, tmp_path):
    code, out, _ = run(capsys, "inspect", MLP, "-l", "fc1.weight", "--activation", "fc1=tanh")
    assert code == 0 and "act tanh (hint)" in out
    bad = tmp_path / "bad.onnx"
    bad.write_text("no")
    code, out, err = run(capsys, "inspect", str(bad))
    assert code == 2 and err.startswith(f"initaudit: error: {bad}: ") and err.count("\n") == 1
    code, _, err = run(capsys, "inspect", MLP, "-f", "xml")
    assert code == 2 and "unknown format 'xml' for `inspect`" in err


@pytest.mark.parametrize("layer", ["fc1", "fc1.*"])
def test_layer_glob_matches_layer_or_tensor_names(capsys, layer):
    code, out, _ = run(capsys, "inspect", MLP, "--layer", layer, "-f", "json")
    assert [t["name"] for t in json.loads(out)["files"][0]["tensors"]] == ["fc1.weight", "fc1.bias"]
