"""IA203 nonfinite-weights: NaN or Inf in any tensor, biases and norms included."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from initaudit.report import Severity

from . import audit_arrays, findings, he_normal

CODE = "IA203"


def _audit(arrays: dict[str, np.ndarray]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy noise on Inf, not the point here
        return audit_arrays(arrays, ["fc1=relu"])


def test_nan_in_a_kernel_is_an_error() -> None:
    rng = np.random.default_rng(0)
    w = he_normal(rng, 32, 64)
    w[0, 0] = np.nan
    [f] = findings(_audit({"fc1.weight": w}), CODE)
    assert (f.code, f.name, f.severity) == (CODE, "nonfinite-weights", Severity.ERROR)
    assert f.tensor == "fc1.weight" and f.layer == "fc1"
    assert f.message.startswith("1 of 2048 values are NaN or Inf")
    assert f.evidence == {"nonfinite": 1, "size": 2048}


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_inf_in_a_kernel_is_an_error(bad: float) -> None:
    rng = np.random.default_rng(1)
    w = he_normal(rng, 32, 64)
    w[3, 4] = bad
    w[5, 6] = bad
    [f] = findings(_audit({"fc1.weight": w}), CODE)
    assert f.evidence["nonfinite"] == 2


def test_nan_in_a_bias_fires_too() -> None:
    rng = np.random.default_rng(2)
    bias = np.zeros(16)
    bias[3] = np.nan
    [f] = findings(_audit({"fc1.weight": he_normal(rng, 16, 64), "fc1.bias": bias}), CODE)
    assert f.tensor == "fc1.bias"
    assert "1 of 16 values" in f.message


def test_nan_in_a_norm_scale_fires_too() -> None:
    rng = np.random.default_rng(3)
    gamma = np.ones(16)
    gamma[0] = np.nan
    [f] = findings(_audit({"fc1.weight": he_normal(rng, 16, 64), "norm.weight": gamma}), CODE)
    assert f.tensor == "norm.weight"


def test_finite_tensors_are_silent() -> None:
    rng = np.random.default_rng(4)
    report = _audit({"fc1.weight": he_normal(rng, 16, 64), "fc1.bias": np.zeros(16)})
    assert findings(report, CODE) == []


def test_nonfinite_kernel_is_not_also_unrecognized() -> None:
    rng = np.random.default_rng(5)
    w = he_normal(rng, 32, 64)
    w[:4] = np.nan
    report = _audit({"fc1.weight": w})
    assert findings(report, CODE) and findings(report, "IA401") == []


def test_an_infinite_scalar_bound_is_info_but_nan_and_weights_stay_errors() -> None:
    """timm's Gemma 4 ViT stores clamp bounds input_min/input_max = -inf/+inf as scalar buffers
    (found by benchmarks/zoo.py on an untouched model): a bound, not a weight."""
    rng = np.random.default_rng(6)
    w = he_normal(rng, 16, 64)
    bad = he_normal(rng, 16, 64)
    bad[0, 0] = np.inf
    report = _audit({"fc1.weight": w, "fc1.input_max": np.array(np.inf, np.float32),
                     "fc1.input_min": np.array(-np.inf, np.float32),
                     "fc1.scale_nan": np.array(np.nan, np.float32), "fc2.weight": bad})
    got = {f.tensor: f.severity.value for f in findings(report, CODE)}
    assert got == {"fc1.input_max": "info", "fc1.input_min": "info", "fc1.scale_nan": "error",
                   "fc2.weight": "error"}


@pytest.mark.frameworks
def test_untouched_timm_gemma4_vit_bounds_are_not_errors(tmp_path) -> None:
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    if "gemma4_vit_167m" not in timm.list_models():
        pytest.skip("this timm has no gemma4_vit_167m")
    torch.manual_seed(0)
    sd = timm.create_model("gemma4_vit_167m", pretrained=False).state_dict()
    small = {k: v for k, v in sd.items() if k.startswith("encoder.blocks.0.")}  # one block
    assert any(torch.isinf(v).any() for v in small.values())
    path = tmp_path / "block.pt"
    torch.save(small, path)
    from initaudit.engine import audit_path

    report = audit_path(path)
    assert [f for f in report.findings if f.code == CODE and f.severity.value != "info"] == []
