"""The per-kernel shortcuts of issue 14 give the answers of the computations they replace:
the Lanczos screen of the spectral test (state.py), the bounded KS search and the closed-form
likelihoods (identify.py), the sorted-neighbour duplicate candidates (units.py), the block
statistics without float64 copies (state.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from initaudit.analysis import identify, state, units
from initaudit.analysis.schemes import NORMAL, TRUNC, UNIFORM


def _power40(block: np.ndarray) -> float:
    """The reference: 40 power steps on BᵀB from state's start vector (top singular value)."""
    b = np.asarray(block, dtype=np.float32)
    v = np.array(state._start(b.shape[1]))
    for _ in range(state.POWER_STEPS):
        v = b.T @ (b @ v)
        v /= np.linalg.norm(v)
    return float(np.linalg.norm(b @ v))


def _edge(block: np.ndarray) -> float:
    m, n = block.shape
    return float(block.astype(np.float64).std()) * (math.sqrt(m) + math.sqrt(n))


@pytest.mark.parametrize("shape", [(384, 384), (384, 100), (40, 384), (16, 16), (300, 384)])
@pytest.mark.parametrize("draw", ["normal", "uniform", "t5"])
def test_screen_certifies_iid_blocks_below_the_threshold(shape, draw) -> None:
    rng = np.random.default_rng(sum(shape))
    raw = {"normal": rng.standard_normal, "uniform": lambda s: rng.uniform(-1, 1, s),
           "t5": lambda s: rng.standard_t(5, s)}[draw](shape)
    block = (raw - raw.mean()).astype(np.float32)
    edge = _edge(block)
    mu = (state.SPECTRAL_WEAK * edge) ** 2 * (1 - state.SCREEN_MARGIN)
    theta = state._lanczos_screen(block, mu)
    assert theta is not None  # an i.i.d. block is settled by the screen
    sv = np.linalg.svd(block.astype(np.float64), compute_uv=False)[0]
    # a Ritz value: never above the truth, never below the 40-step power estimate by more
    # than rounding on these blocks, and far below the threshold
    assert math.sqrt(theta) <= sv * (1 + 1e-5)
    assert math.sqrt(theta) >= _power40(block) * (1 - 1e-3)
    assert math.sqrt(theta) / edge < state.SPECTRAL_WEAK


@pytest.mark.parametrize("amp", [0.05, 0.065, 0.08, 0.2])
def test_above_or_near_the_threshold_the_power_iteration_decides(amp) -> None:
    rng = np.random.default_rng(3)
    m = n = 256
    spike = amp * np.outer(rng.standard_normal(m), rng.standard_normal(n))
    raw = rng.standard_normal((m, n)) * 0.2 + spike
    block = (raw - raw.mean()).astype(np.float32)
    s = float(block.astype(np.float64).std())
    ratio = state.spectral_ratio(block, s)
    reference = _power40(block) / _edge(block)
    if reference > state.SPECTRAL_WEAK:  # the screen must never have certified this one
        assert ratio == pytest.approx(reference, rel=1e-6)
    assert (ratio > state.SPECTRAL_WEAK) == (reference > state.SPECTRAL_WEAK)


def test_screen_bound_holds_for_a_direction_the_start_vector_barely_sees() -> None:
    """A top eigenvalue above μ on a direction whose component along the start vector is 1e-4
    (far above the certificate's t ~ 1e-7): the screen must refuse to certify."""
    d = 128
    q1 = np.asarray(state._start(d), dtype=np.float64)
    q1 /= np.linalg.norm(q1)
    rng = np.random.default_rng(5)
    x1 = rng.standard_normal(d)
    x1 -= (x1 @ q1) * q1
    x1 /= np.linalg.norm(x1)
    x1 = math.sqrt(1 - 1e-8) * x1 + 1e-4 * q1  # |<x1, q1>| = 1e-4
    basis, _ = np.linalg.qr(np.column_stack([x1, rng.standard_normal((d, d - 1))]))
    lam = np.linspace(0.0, 1.0, d)
    lam[0] = 1.6  # the planted top eigenvalue, above μ = 1.5
    a = (basis * np.sqrt(lam)) @ basis.T  # aᵀa = basis·diag(lam)·basisᵀ
    assert state._lanczos_screen(a.astype(np.float32), 1.5) is None
    lam[0] = 1.2  # below μ: certified, at a value never above λ_max
    a = (basis * np.sqrt(lam)) @ basis.T
    theta = state._lanczos_screen(a.astype(np.float32), 1.5)
    assert theta is not None and theta <= 1.2 * (1 + 1e-5)


def test_ks_statistic_of_is_ks_statistic() -> None:
    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(2, 25000))
        kind = trial % 4
        if kind == 0:
            v = rng.standard_normal(n)
        elif kind == 1:
            v = rng.standard_t(3, n)
        elif kind == 2:
            v = rng.uniform(-1.3, 1.3, n)
        else:
            v = np.round(rng.standard_normal(n) * 4) / 4  # ties
        v = np.sort(v)
        for family in (NORMAL, UNIFORM, TRUNC):
            cdf = identify._family_cdf(family, float(rng.uniform(0.5, 2)))
            assert identify.ks_statistic_of(v, cdf) == identify.ks_statistic(cdf(v))


@pytest.mark.parametrize("draw", ["normal", "uniform", "trunc", "t3"])
def test_family_likelihoods_match_the_density_formulas(draw) -> None:
    rng = np.random.default_rng(1)
    x = {"normal": rng.standard_normal(20000), "uniform": rng.uniform(-1, 1, 20000),
         "trunc": np.clip(rng.standard_normal(30000), -2, 2)[:20000],
         "t3": rng.standard_t(3, 20000)}[draw] * 0.05
    std = float(x.std())
    fit = identify.fit_families(x, std, np.random.default_rng(0))
    ax = np.abs(x)
    ll = {}
    ll[NORMAL] = identify._contaminated_loglik(
        np.exp(-0.5 * (x / std) ** 2) / (math.sqrt(2 * math.pi) * std), std)
    ll[UNIFORM] = max(identify._contaminated_loglik(np.where(ax <= b, 1 / (2 * b), 0.0), std)
                      for b in (math.sqrt(3) * std, float(ax.max())))
    ll[TRUNC] = max(
        identify._contaminated_loglik(
            np.where(ax <= 2 * s, np.exp(-0.5 * (x / s) ** 2)
                     / (math.sqrt(2 * math.pi) * s * identify._TN_Z), 0.0), std)
        for s in (std / 0.87962566103423978, float(ax.max()) / 2))
    top = max(ll.values())
    w = {k: math.exp(v - top) for k, v in ll.items()}
    for k in ll:
        assert fit.posterior[k] == pytest.approx(w[k] / sum(w.values()), rel=1e-9, abs=1e-12)


def _brute_near(p0, p1, tol):
    d0 = np.abs(p0[:, None] - p0[None, :]) <= tol[0]
    d1 = np.abs(p1[:, None] - p1[None, :]) <= tol[1]
    close = d0 & d1
    np.fill_diagonal(close, False)
    return set(np.flatnonzero(close.any(axis=1)).tolist())


def test_near_pairs_find_every_pair_within_tolerance() -> None:
    rng = np.random.default_rng(2)
    for trial in range(60):
        n = int(rng.integers(2, 600))
        p = rng.standard_normal((n, 2))
        dup = rng.integers(0, n, size=(n // 10, 2))
        p[dup[:, 0]] = p[dup[:, 1]] + rng.normal(0, 1e-7, (dup.shape[0], 2))  # near-equal units
        tol = np.array([0.01, 0.02]) if trial % 2 else np.array([5e-4, 5e-4])
        got = units._near_pairs(p[:, 0].copy(), p[:, 1].copy(), tol)
        want = _brute_near(p[:, 0], p[:, 1], tol)
        if got is None:  # crowded: the grid decides, and must cover the same pairs
            got = units._grid_pairs(p, 2 * tol)
        assert want <= set(got.tolist())


def test_crowded_projections_fall_back_to_the_grid() -> None:
    p0 = np.zeros(200)
    p1 = np.arange(200.0)
    assert units._near_pairs(p0, p1, np.array([1e-3, 1e-3])) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, "bfloat16"])
@pytest.mark.parametrize("offset", [0.0, 3.0])
@pytest.mark.parametrize("unit_axis", [0, 1])
def test_block_statistics_match_float64_numpy(dtype, offset, unit_axis) -> None:
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((700, 500)) * 0.05 + offset).astype(dtype)
    w[3] = 0  # a dead unit: left out of the block
    w[10] = w[10, 0]  # a constant unit: its own mean dominates
    tensor = type("T", (), {"unit_axis": unit_axis})()
    # units along columns (Keras, ONNX MatMul): the same units, stored transposed
    stored = w if unit_axis == 0 else np.ascontiguousarray(w.T)
    blk = state._block(stored, tensor, 104729)
    assert blk is not None
    g = state.generator(104729)
    rows = np.sort(g.choice(700, 384, replace=False))
    cols = np.sort(g.choice(500, 384, replace=False))
    ref = w[np.ix_(rows, cols)].astype(np.float32).astype(np.float64)
    ref = ref[np.any(ref != 0, axis=1)]
    ref -= ref.mean()
    assert blk.matrix.shape == ref.shape
    assert blk.std == pytest.approx(float(ref.std()), rel=1e-6)
    np.testing.assert_allclose(blk.unit_std, ref.std(axis=1), rtol=1e-5, atol=1e-9 * blk.std)
