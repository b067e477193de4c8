"""IA104 leaky-relu-gain: He's ReLU gain sqrt(2) in front of a leaky ReLU/PReLU with a slope
large enough that sqrt(2/(1+a²)) is noticeably smaller (an info note, never more)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.report import Severity

from . import (
    analyse_model,
    audit_arrays,
    chain_model,
    findings,
    he_normal,
    he_uniform,
    torch_default,
)

CODE = "IA104"


def _leaky(rng: np.random.Generator, fan_out: int, fan_in: int, slope: float) -> np.ndarray:
    """What kaiming_normal_(w, a=slope) draws: the slope-corrected gain."""
    return rng.normal(0.0, math.sqrt(2.0 / (1.0 + slope**2) / fan_in), (fan_out, fan_in))


@pytest.mark.parametrize("init", [he_normal, he_uniform])
def test_he_before_leaky_relu_half_is_an_info_note(init) -> None:
    rng = np.random.default_rng(0)
    report = audit_arrays({"fc1.weight": init(rng, 128, 256)}, ["fc1=leaky_relu(0.5)"])
    [f] = findings(report, CODE)
    assert (f.name, f.severity, f.tensor) == ("leaky-relu-gain", Severity.INFO, "fc1.weight")
    assert f.evidence["negative_slope"] == 0.5
    assert f.evidence["corrected_gain"] == pytest.approx(math.sqrt(2 / 1.25))
    assert f.evidence["corrected_std"] == pytest.approx(math.sqrt(2 / 1.25 / 256), rel=1e-6)
    assert f.evidence["variance_ratio"] == pytest.approx(1.25)
    assert "a=0.5" in f.message


# (slope, init, fires): the usual slopes and the slope-corrected init never fire
CASES = [
    (0.01, "he", False),  # torch LeakyReLU default
    (0.2, "he", False),  # Keras 3 LeakyReLU default
    (0.25, "he", False),  # nn.PReLU's initial slope
    (0.5, "he", True),
    (1.0, "he", True),
    (0.5, "corrected", False),  # kaiming_normal_(w, a=0.5)
    (1.0, "corrected", False),
    (0.5, "torch_default", False),  # kaiming_uniform_(a=sqrt(5)): not He at all
    (1.0, "torch_default", False),
]


@pytest.mark.parametrize(("slope", "init", "fires"), CASES)
@pytest.mark.parametrize("shape", [(32, 64), (128, 256), (512, 512)])
def test_only_a_noticeable_slope_with_the_relu_gain_fires(slope, init, fires, shape) -> None:
    rng = np.random.default_rng(sum(shape))
    w = {"he": lambda: he_normal(rng, *shape), "corrected": lambda: _leaky(rng, *shape, slope),
         "torch_default": lambda: torch_default(rng, *shape)}[init]()
    report = audit_arrays({"fc1.weight": w}, [f"fc1=leaky_relu({slope})"])
    assert bool(findings(report, CODE)) is fires


def test_prelu_with_a_large_uniform_slope_fires_and_relu_never_does() -> None:
    rng = np.random.default_rng(3)
    w = he_normal(rng, 128, 256)
    assert findings(audit_arrays({"fc1.weight": w}, ["fc1=prelu(0.6)"]), CODE)
    assert not findings(audit_arrays({"fc1.weight": w}, ["fc1=prelu"]), CODE)  # slope 0.25
    assert not findings(audit_arrays({"fc1.weight": w}, ["fc1=relu"]), CODE)
    assert not findings(audit_arrays({"fc1.weight": w}), CODE)  # unknown activation


def test_a_normalization_after_the_layer_keeps_it_silent() -> None:
    rng = np.random.default_rng(4)
    weights = [he_normal(rng, 128, 128), he_normal(rng, 128, 128)]
    plain = analyse_model(chain_model(weights, activation="leaky_relu(0.5)"))
    normed = analyse_model(chain_model(weights, activation="leaky_relu(0.5)", normalized=[0, 1]))
    assert [f.layer for f in findings(plain, CODE)] == ["fc0", "fc1"]
    assert findings(normed, CODE) == []


# ---- real torch models, exported to ONNX: the slope comes from the graph ------------------------

def _export(model, path: Path, width: int) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    model.eval()
    torch.onnx.export(model, torch.zeros(1, width), str(path), dynamo=False)
    return path


def _mlp(slope: float, init: str, width: int = 256):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    layers: list = []
    for _ in range(3):
        linear = nn.Linear(width, width)
        if init == "he":
            nn.init.kaiming_normal_(linear.weight)  # a=0: ReLU's gain
        elif init == "corrected":
            nn.init.kaiming_normal_(linear.weight, a=slope)
        layers += [linear, nn.LeakyReLU(slope)]
    return nn.Sequential(*layers, nn.Linear(width, 10))


@pytest.mark.frameworks
def test_torch_he_before_leaky_relu_in_an_onnx_export_is_noted(tmp_path: Path) -> None:
    path = _export(_mlp(0.5, "he"), tmp_path / "he.onnx", 256)
    fr = audit(path, use_config=False).files[0]
    got = findings(fr, CODE)
    assert len(got) == 3 and all(f.severity is Severity.INFO for f in got)
    assert all(f.evidence["activation"] == "leaky_relu(0.5)" for f in got)


@pytest.mark.frameworks
@pytest.mark.parametrize(("slope", "init"), [(0.5, "corrected"), (0.5, "torch_default"),
                                             (0.01, "he"), (0.2, "he")])
def test_untouched_or_correct_torch_models_are_silent(tmp_path: Path, slope, init) -> None:
    """torch's own default (kaiming_uniform_ with a=sqrt(5)), the slope passed to kaiming, and
    the common small slopes: no note, and no warning or error from any rule on the defaults."""
    path = _export(_mlp(slope, init), tmp_path / f"{init}.onnx", 256)
    fr = audit(path, use_config=False).files[0]
    assert findings(fr, CODE) == []
    if init == "torch_default":
        assert all(f.severity is Severity.INFO for f in fr.findings)
