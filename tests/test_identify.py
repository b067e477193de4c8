"""Scheme identification against ground truth drawn from the exact formulas (init-schemes.md),
over many shapes and seeds (hypothesis), including the ambiguous square case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.analysis.fans import keras_fans, torch_fans
from initaudit.analysis.identify import identify
from initaudit.analysis.schemes import TN2_STD_FACTOR
from initaudit.analysis.stats import tensor_stats
from initaudit.model import Convention, Role, WeightTensor


def truncated_normal(rng: np.random.Generator, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """Normal truncated at ±2 of its own sigma (what Keras/JAX draw), by rejection."""
    n = int(np.prod(shape))
    out = np.empty(0)
    while out.size < n:
        draw = rng.standard_normal(2 * n)
        out = np.concatenate([out, draw[np.abs(draw) <= 2.0]])
    return (out[:n] * sigma).reshape(shape)


# ground truth: (rule, family, std(fan_in, fan_out)) and how to draw it
def draw(rng, rule: str, family: str, fi: int, fo: int, shape) -> np.ndarray:
    std = {"he": math.sqrt(2 / fi), "glorot": math.sqrt(2 / (fi + fo)), "lecun": math.sqrt(1 / fi),
           "torch_default": math.sqrt(1 / (3 * fi)), "fixed": 0.02}[rule]
    if family == "normal":
        return rng.normal(0.0, std, shape)
    if family == "uniform":
        return rng.uniform(-math.sqrt(3) * std, math.sqrt(3) * std, shape)
    return truncated_normal(rng, std / TN2_STD_FACTOR, shape)


SCHEMES = [("he", "normal"), ("he", "uniform"), ("he", "truncated_normal"),
           ("glorot", "normal"), ("glorot", "uniform"), ("glorot", "truncated_normal"),
           ("lecun", "normal"), ("lecun", "truncated_normal"), ("lecun", "uniform"),
           ("torch_default", "uniform"), ("fixed", "normal")]


def kernel(shape, convention=Convention.TORCH) -> WeightTensor:
    fi, fo = (torch_fans if convention is Convention.TORCH else keras_fans)(shape)
    return WeightTensor(name="w", layer="l", op="Linear", role=Role.KERNEL, shape=tuple(shape),
                        dtype="float32", load=lambda: None, fan_in=fi, fan_out=fo,
                        convention=convention, unit_axis=0)


def run(values: np.ndarray, tensor: WeightTensor):
    values = values.astype(np.float32)
    return identify(values, tensor, tensor_stats(values))


dims = st.integers(min_value=24, max_value=400)


@settings(max_examples=60, deadline=None)
@given(out_dim=dims, in_dim=dims, scheme=st.sampled_from(SCHEMES), seed=st.integers(0, 2**31 - 1))
def test_linear_kernels_identified_or_honestly_ambiguous(out_dim, in_dim, scheme, seed):
    rule, family = scheme
    shape = (out_dim, in_dim)
    t = kernel(shape)
    rng = np.random.default_rng(seed)
    result = run(draw(rng, rule, family, t.fan_in, t.fan_out, shape), t)
    n = out_dim * in_dim
    consistent = {(result.rule, result.distribution)} | {(c.rule, c.distribution) for c in result.alternatives}
    if (result.rule, result.distribution) != (rule, family):
        # never a confident wrong answer: the truth must be among the consistent alternatives,
        # or the confidence must say the call is uncertain
        assert (rule, family) in consistent or result.confidence < 0.9, (result, n)
    if n >= 4096 and (rule, family) not in consistent:
        pytest.fail(f"{rule}/{family} on {shape} identified as {result.label}")


@settings(max_examples=25, deadline=None)
@given(width=st.integers(32, 256), family=st.sampled_from(["normal", "uniform", "truncated_normal"]),
       seed=st.integers(0, 2**31 - 1))
def test_square_layer_glorot_and_lecun_reported_together(width, family, seed):
    """On a square layer Glorot and LeCun predict the same variance: report both, never guess."""
    shape = (width, width)
    t = kernel(shape)
    result = run(draw(np.random.default_rng(seed), "glorot", family, width, width, shape), t)
    rules = result.rules()
    assert {"glorot", "lecun"} <= rules, result
    assert result.confidence <= 0.75


@settings(max_examples=20, deadline=None)
@given(k=st.sampled_from([1, 3, 5]), cin=st.integers(2, 48), cout=st.integers(4, 64),
       seed=st.integers(0, 2**31 - 1))
def test_conv_kernels_keras_layout(k, cin, cout, seed):
    """Keras conv kernels (k, k, in, out): fans include the receptive field."""
    shape = (k, k, cin, cout)
    t = kernel(shape, Convention.KERAS)
    assert t.fan_in == k * k * cin and t.fan_out == k * k * cout
    result = run(draw(np.random.default_rng(seed), "he", "normal", t.fan_in, t.fan_out, shape), t)
    if result.rule != "he":
        assert "he" in result.rules() or result.confidence < 0.9 or t.size < 1024, result


def test_orthogonal_detected_with_gain():
    rng = np.random.default_rng(3)
    q, r = np.linalg.qr(rng.standard_normal((96, 96)))
    q = q * np.sign(np.diag(r))
    result = run(1.3 * q, kernel((96, 96)))
    assert result.rule == "orthogonal" and result.distribution == "orthogonal"
    assert result.gain == pytest.approx(1.3, rel=1e-3)


def test_rectangular_orthogonal_as_torch_and_keras_flatten():
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((256, 64)))  # orthonormal columns
    assert run(q, kernel((256, 64))).rule == "orthogonal"
    assert run(q.T.copy(), kernel((64, 256))).rule == "orthogonal"


def test_random_gaussian_is_not_orthogonal():
    rng = np.random.default_rng(5)
    result = run(rng.normal(0, 1 / 8, (64, 64)), kernel((64, 64)))
    assert result.rule != "orthogonal"


def test_constant_and_zeros():
    t = kernel((8, 8))
    assert run(np.zeros((8, 8)), t).rule == "zeros"
    result = run(np.full((8, 8), 0.5), t)
    assert result.rule == "constant" and result.distribution == "constant"


def test_heavy_tailed_weights_are_unknown():
    rng = np.random.default_rng(6)
    result = run(rng.laplace(0, 0.05, (256, 256)), kernel((256, 256)))
    assert result.rule == "unknown"
    assert result.evidence["gof_pvalue"] < 1e-4


def test_unknown_scale_is_unknown_not_forced():
    rng = np.random.default_rng(7)
    result = run(rng.normal(0, 0.3, (300, 300)), kernel((300, 300)))  # no rule predicts 0.3
    assert result.rule == "unknown"
    assert result.distribution == "normal"


def test_tiny_tensor_says_too_small():
    result = run(np.array([[0.1, -0.2], [0.3, 0.05]]), kernel((2, 2)))
    assert result.rule == "unknown" and result.confidence == 0.0


def test_he_vs_lecun_factor_two_told_apart_on_small_tensor():
    """A fixed-threshold F-test cannot tell He from LeCun on small tensors; we can at n=1024."""
    rng = np.random.default_rng(8)
    shape = (32, 32)
    he = run(rng.normal(0, math.sqrt(2 / 32), shape), kernel(shape))
    assert he.rule == "he" and "lecun" not in he.rules()


def test_bfloat16_rounding_does_not_break_identification():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(9)
    shape = (1024, 1024)
    w = rng.normal(0, math.sqrt(2 / 1024), shape).astype(ml_dtypes.bfloat16)
    result = identify(w, kernel(shape), tensor_stats(w))
    assert (result.rule, result.distribution) == ("he", "normal")


@pytest.mark.frameworks
def test_torch_initializers_ground_truth():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cases = [
        (lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu"), ("he", "normal")),
        (lambda w: torch.nn.init.kaiming_uniform_(w, nonlinearity="relu"), ("he", "uniform")),
        (lambda w: torch.nn.init.xavier_uniform_(w), ("glorot", "uniform")),
        (lambda w: torch.nn.init.xavier_normal_(w), ("glorot", "normal")),
        (lambda w: torch.nn.init.normal_(w, 0, 0.02), ("fixed", "normal")),
        (lambda w: torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5)), ("torch_default", "uniform")),
    ]
    for init, truth in cases:
        for shape in [(128, 300), (64, 32, 3, 3)]:
            w = torch.empty(shape)
            init(w)
            result = run(w.numpy(), kernel(shape))
            assert (result.rule, result.distribution) == truth, (shape, truth, result.label)
    lin = torch.nn.Linear(300, 128)  # the module default, not the init function
    assert run(lin.weight.detach().numpy(), kernel((128, 300))).rule == "torch_default"
