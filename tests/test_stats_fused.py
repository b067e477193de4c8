"""The fused streaming pass gives the statistics numpy gives on the whole tensor, and its
closed forms (normal cdf, KS p-value) agree with scipy where the decisions are taken."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from initaudit.analysis import identify as ident
from initaudit.analysis.stats import PASS_CHUNK, fused_pass


def _reference(x: np.ndarray) -> tuple[int, float, float, float, float, float, int]:
    """(finite count, mean, std ddof=1, excess kurtosis bias-corrected, min, max, non-finite)."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    fin = flat[np.isfinite(flat)]
    n = fin.size
    mean = float(fin.mean())
    c = fin - mean
    m2, m4 = float(np.mean(c * c)), float(np.mean(c ** 4))
    std = math.sqrt(m2 * n / (n - 1))
    g2 = m4 / (m2 * m2) - 3.0
    kurt = ((n + 1) * g2 + 6.0) * (n - 1) / ((n - 2) * (n - 3))
    return n, mean, std, kurt, float(fin.min()), float(fin.max()), flat.size - n


def _check(x: np.ndarray, **kw) -> None:
    res = fused_pass(x, **kw)
    n, mean, std, kurt, lo, hi, bad = _reference(x)
    m, s, k = res.moments()
    assert res.count == n and res.nonfinite == bad
    assert (res.lo, res.hi) == (lo, hi)  # exact: float32 holds every narrow value
    assert m == pytest.approx(mean, rel=1e-5, abs=1e-6 * std)
    assert s == pytest.approx(std, rel=1e-5)
    assert k == pytest.approx(kurt, rel=1e-4, abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 300), cols=st.integers(1, 700), loc=st.sampled_from([0.0, 1.0, -3e3]),
       scale=st.sampled_from([1e-3, 0.02, 1.0, 50.0]), dtype=st.sampled_from(["f4", "f8", "f2"]),
       heavy=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_fused_moments_match_numpy(rows: int, cols: int, loc: float, scale: float, dtype: str,
                                   heavy: bool, seed: int) -> None:
    if rows * cols < 16:  # the bias-corrected kurtosis divides by (n-2)(n-3): tiny n is noise
        return
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(3, (rows, cols)) if heavy else rng.standard_normal((rows, cols)))
    x = (loc + scale * x).astype(dtype)
    if not np.isfinite(x).all() or np.ptp(x.astype(np.float64)) == 0:
        return
    _check(x)
    _check(x, cols=cols)  # the 2-D (row block) path
    _check(x.T)  # a strided view


def test_many_chunks_nonfinite_and_bfloat16() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.02, (3 * PASS_CHUNK // 512 + 7, 512)).astype(np.float32)
    x[5, 7] = np.nan
    x[-1, -1] = np.inf
    _check(x, cols=512)
    b = x.astype(ml_dtypes.bfloat16)
    res = fused_pass(b, cols=512)
    n, _, std, _, lo, hi, bad = _reference(b.astype(np.float32))
    assert (res.count, res.nonfinite, res.lo, res.hi) == (n, bad, lo, hi)
    assert res.moments()[1] == pytest.approx(std, rel=1e-5)


def test_projections_are_the_products() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((700, 300)).astype(np.float32)
    r = rng.standard_normal((300, 3)).astype(np.float32)
    left = rng.standard_normal((700, 5)).astype(np.float32)
    res = fused_pass(x, cols=300, right_probe=r, left_probe=left)
    np.testing.assert_allclose(res.right, x.astype(np.float64) @ r, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(res.left, left.T.astype(np.float64) @ x, rtol=1e-4, atol=1e-3)


def test_float32_extremes_fall_back_to_float64() -> None:
    for scale in (1e-20, 1e20):
        x = (np.random.default_rng(2).standard_normal(50_000) * scale).astype(np.float32)
        _check(x)


def test_constant_and_tiny() -> None:
    res = fused_pass(np.full((100, 33), 0.1, dtype=np.float32), cols=33)
    assert res.lo == res.hi
    assert res.moments()[1] < 1e-7
    res = fused_pass(np.zeros(3, dtype=np.float32))
    assert res.moments()[1] == 0.0


# ----------------------------------------------------------------------------- closed forms

def test_norm_cdf_matches_scipy() -> None:
    special = pytest.importorskip("scipy.special")
    z = np.linspace(-9, 9, 20001)
    assert np.max(np.abs(ident.norm_cdf(z) - special.ndtr(z))) < 2e-7


@pytest.mark.parametrize("n", [16, 50, 139, 141, 1000, 20_000])
def test_ks_pvalue_matches_scipy_at_the_decision(n: int) -> None:
    """Exact (2·smirnov) where scipy is exact, near the 1e-4 threshold; close elsewhere."""
    stats = pytest.importorskip("scipy.stats")
    for p_target in (0.5, 0.05, 1e-2, 1e-3, 2e-4, 1e-4, 5e-5, 1e-6, 1e-9):
        d = float(stats.kstwo.isf(p_target, n))
        ours, ref = ident.ks_pvalue(n, d), float(stats.kstwo.sf(d, n))
        if n * d * d >= 2.2:  # the branch that decides GOF_ALPHA = 1e-4
            assert ours == pytest.approx(ref, rel=1e-6), (n, p_target)
        else:
            assert ours == pytest.approx(ref, rel=0.06 if n < 50 else 0.03), (n, p_target)
        assert (ours >= ident.GOF_ALPHA) == (ref >= ident.GOF_ALPHA) or abs(ref / ident.GOF_ALPHA - 1) < 1e-6


@pytest.mark.parametrize("family", ["normal", "uniform", "truncated_normal"])
def test_gof_same_as_scipy_kstest(family: str) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    for scale_err in (1.0, 1.02, 1.1):
        if family == "normal":
            x, cdf = rng.normal(0, 0.05, 20_000), (lambda v, s: stats.norm.cdf(v, scale=s))
        elif family == "uniform":
            x, cdf = rng.uniform(-0.1, 0.1, 20_000), (lambda v, s: stats.uniform.cdf(v, loc=-s, scale=2 * s))
        else:
            x = stats.truncnorm.rvs(-2, 2, scale=0.05, size=20_000, random_state=rng)
            cdf = (lambda v, s: stats.truncnorm.cdf(v, -2, 2, scale=s))
        scale = {"normal": 0.05, "uniform": 0.1, "truncated_normal": 0.05}[family] * scale_err
        ours = ident._gof(x, family, scale, np.random.default_rng(0))
        ref = float(stats.kstest(x, lambda v, c=cdf, s=scale: c(v, s)).pvalue)
        assert ours == pytest.approx(ref, rel=2e-3, abs=1e-12), (family, scale_err)
