"""``initaudit.testing.assert_well_initialized``: passes on good models, fails with a message
that lists what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from initaudit.report import Report
from initaudit.testing import assert_well_initialized

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def test_clean_file_returns_the_report():
    report = assert_well_initialized(SAMPLES / "cnn_clean.onnx")
    assert isinstance(report, Report) and report.counts()["tensors"] > 0


def test_failure_lists_every_finding():
    with pytest.raises(AssertionError) as info:
        assert_well_initialized(str(SAMPLES / "mlp_he_sigmoid.onnx"))
    text = str(info.value)
    assert "1 finding at or above warning" in text
    assert "error IA101 he-before-saturating fc1.weight: He-scaled weights" in text


def test_options_are_passed_on():
    assert_well_initialized(SAMPLES / "mlp_he_sigmoid.onnx", ignore=["IA101"])
    assert_well_initialized(SAMPLES / "selu_glorot.onnx", fail_on="error")
    assert_well_initialized(SAMPLES / "mlp_he_sigmoid.onnx", activation={"fc1": "relu"})
    with pytest.raises(AssertionError, match="IA103 selu-without-lecun"):
        assert_well_initialized(SAMPLES / "selu_glorot.onnx", select="IA1")
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        assert_well_initialized(SAMPLES / "cnn_clean.onnx", ignore=["nope"])


def test_in_memory_arrays_and_unreadable_files(tmp_path):
    rng = np.random.default_rng(0)
    good = {"fc.weight": rng.normal(0, np.sqrt(2 / 256), (128, 256)).astype(np.float32),
            "fc.bias": np.zeros(128, np.float32)}
    assert_well_initialized(good, activation={"fc": "relu"})
    with pytest.raises(AssertionError, match=r"IA201 constant-weights fc\.weight"):
        assert_well_initialized({"fc.weight": np.full((64, 64), 0.1, np.float32)})
    bad = tmp_path / "x.onnx"
    bad.write_text("nope")
    with pytest.raises(AssertionError, match="could not be read"):
        assert_well_initialized(bad)


@pytest.mark.frameworks
def test_torch_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    assert_well_initialized(model)
    with torch.no_grad():
        model[0].weight.fill_(0.5)
    with pytest.raises(AssertionError, match="IA201"):
        assert_well_initialized(model)
