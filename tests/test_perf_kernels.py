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


# ----------------------------------------------------------------------- session 5 shortcuts
# Each cached or rewritten step below is compared with the computation it replaced, bit for bit.


def test_ortho_subset_is_the_cached_draw() -> None:
    from initaudit.analysis.tensorpass import ORTHO_SEED_OFFSET, ortho_subset

    for n, k, seed in [(1024, 16, 0), (4096, 16, 3), (17, 16, 0), (16, 16, 1), (5, 16, 2)]:
        got = ortho_subset(n, k, seed)
        if k >= n:
            want = np.arange(n)
        else:
            want = np.sort(np.random.default_rng(seed + ORTHO_SEED_OFFSET).choice(n, k, replace=False))
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype and not got.flags.writeable
        assert ortho_subset(n, k, seed) is got  # cached: drawn once per (n, k, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
def test_orthogonality_column_take_is_fancy_indexing(dtype, tmp_path) -> None:
    """identify.orthogonality reads a tall matrix's columns by take(axis=1): the same values in
    the same layout as m[:, idx], on a memory-mapped tensor too."""
    from initaudit.analysis.stats import as_float
    from initaudit.analysis.tensorpass import ortho_subset

    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    w = np.random.default_rng(7).standard_normal((600, 96)).astype(dtype)
    path = tmp_path / "w.bin"
    w.tofile(path)
    mapped = np.memmap(path, dtype=w.dtype, mode="r", shape=w.shape).view(np.ndarray)
    idx = ortho_subset(96, 16, 0)
    for m in (w, mapped):
        new = as_float(np.ascontiguousarray(m.take(idx, axis=1).T))  # as orthogonality does
        old = as_float(m[:, idx].T)
        np.testing.assert_array_equal(new, old)
        assert new.strides == old.strides and new.dtype == old.dtype


def _ortho_decide_reference(sub, rows, cols, itemsize, energy):
    """identify._ortho_decide as it was: np.trace, np.diag_indices, np.linalg.norm."""
    k = sub.shape[0]
    gram = sub @ sub.T
    g2 = float(np.trace(gram)) / k
    if not g2 > 0 or not math.isfinite(g2):
        return None
    gram[np.diag_indices(k)] -= g2
    err = float(np.linalg.norm(gram)) / (g2 * math.sqrt(k))
    if energy is not None:
        err = max(err, abs(energy / (min(rows, cols) * g2) - 1.0))
    return err, math.sqrt(g2)


def test_ortho_decide_is_the_trace_and_norm_formula() -> None:
    rng = np.random.default_rng(8)
    q, _ = np.linalg.qr(rng.standard_normal((300, 64)))
    cases = [rng.standard_normal((16, 300)), 1.7 * q.T[:16], q.T[:16] + 1e-4 * rng.standard_normal((16, 300)),
             np.zeros((16, 300)), rng.standard_normal((3, 40)) * 1e-20]
    for sub in cases:
        for energy in (None, 64.0, 1e-3):
            got = identify._ortho_decide(sub.copy(), 300, 64, 4, energy)
            want = _ortho_decide_reference(sub.copy(), 300, 64, 4, energy)
            if want is None:
                assert got is None
            else:
                assert got is not None and (got.relative_error, got.gain) == want


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
@pytest.mark.parametrize("shape", [(700, 500), (40, 2000), (2000, 40), (384, 384), (100, 17)])
def test_block_flat_take_is_the_two_step_gather(dtype, shape) -> None:
    """state._block gathers through a cached flat index: the same rows and columns as drawn by
    generator(seed) (block_index), the same values and memory layout as _take_block, for units
    along rows (C order) and along columns (the transposed view of the stored array)."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    stored = np.random.default_rng(9).standard_normal(shape).astype(dtype)
    for matrix in (stored, stored.T):
        m, n = matrix.shape
        g = state.generator(104729)
        rows = np.sort(g.choice(m, min(state.BLOCK, m), replace=False))
        cols = np.sort(g.choice(n, min(state.BLOCK, n), replace=False))
        got_rows, got_cols = state.block_index(m, n, 104729)
        np.testing.assert_array_equal(got_rows, rows)
        np.testing.assert_array_equal(got_cols, cols)
        want = state._take_block(matrix, rows, cols)
        shape2 = (rows.size, cols.size)
        if matrix.flags.c_contiguous:
            got = matrix.reshape(-1).take(state._flat_index(m, n, 104729, False)).reshape(shape2)
        else:
            picks = state._flat_index(m, n, 104729, True)
            got = matrix.T.reshape(-1).take(picks).reshape(shape2[::-1]).T
        np.testing.assert_array_equal(got, want)
        assert got.strides == want.strides


@pytest.mark.parametrize("unit_axis", [0, 1])
def test_block_is_unchanged_by_the_flat_gather(unit_axis, monkeypatch) -> None:
    """The whole _block (centring, unit stds) on the flat gather equals it on _take_block."""
    w = (np.random.default_rng(10).standard_normal((900, 450)) * 0.02).astype(np.float32)
    tensor = type("T", (), {"unit_axis": unit_axis})()
    got = state._block(w, tensor, 104729)
    monkeypatch.setattr(
        state, "_gather_block",
        lambda matrix, seed: state._take_block(matrix, *state.block_index(*matrix.shape, seed)))
    want = state._block(w, tensor, 104729)
    assert got is not None and want is not None
    np.testing.assert_array_equal(got.matrix, want.matrix)
    assert got.std == want.std
    np.testing.assert_array_equal(got.unit_std, want.unit_std)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
def test_identification_sample_is_draw_sample(dtype) -> None:
    from initaudit.analysis.stats import draw_sample
    from initaudit.analysis.tensorpass import identification_sample

    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    rng = np.random.default_rng(11)
    big = rng.standard_normal((300, 500)).astype(dtype)
    bad = big.copy()
    bad[::7, ::3] = np.nan
    bad[5, 5] = np.inf
    for arr, k in ((big, 20000), (bad, 20000), (big, 10**6), (big.T, 20000), (big[:, ::2], 1000)):
        all_finite = bool(np.isfinite(arr.astype(np.float32)).all())
        got = identification_sample(arr, k, 3, all_finite=all_finite)
        want = draw_sample(arr, k, 3)[0]
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype == np.float64


def _smirnov_reference(n: int, d: float) -> float:
    """identify.smirnov_sf as it was (np.errstate around the log of max(a, 0))."""
    if d <= 0.0:
        return 1.0
    if d >= 1.0:
        return 0.0
    jmax = math.floor(n * (1.0 - d))
    j = np.arange(0, jmax + 1, dtype=np.float64)
    lf = identify._log_factorials(n)
    ji = j.astype(np.int64)
    a = 1.0 - d - j / n
    with np.errstate(divide="ignore"):
        logs = (lf[n] - lf[ji] - lf[n - ji] + (n - j) * np.log(np.maximum(a, 0.0))
                + (j - 1.0) * np.log(d + j / n))
    top = float(np.max(logs))
    if not math.isfinite(top):
        return 0.0
    return float(min(1.0, d * math.exp(top) * float(np.sum(np.exp(logs - top)))))


def test_smirnov_sf_is_the_errstate_formula() -> None:
    rng = np.random.default_rng(12)
    cases = [(n, d) for n in (1, 2, 5, 50, 1000, 20000) for d in (1e-9, 0.001, 0.02, 0.5, 0.9999)]
    cases += [(int(rng.integers(1, 30000)), float(rng.uniform(0, 0.2))) for _ in range(200)]
    cases += [(4, 0.25), (4, 0.5), (8, 0.125), (10, 0.3)]  # 1 - d - j/n exactly 0 at j = jmax
    for n, d in cases:
        assert identify.smirnov_sf(n, d) == _smirnov_reference(n, d), (n, d)


def test_top_ritz_is_eigvalsh_of_the_tridiagonal() -> None:
    rng = np.random.default_rng(13)
    for k in (1, 2, 3, 12, 32):
        alphas = list(rng.uniform(0, 5, k))
        betas = list(rng.uniform(0, 1, k))  # one more than used, as _lanczos_screen passes
        t = np.diag(np.asarray(alphas))
        if k > 1:
            i = np.arange(k - 1)
            t[i, i + 1] = t[i + 1, i] = betas[: k - 1]
        assert state._top_ritz(alphas, betas) == float(np.linalg.eigvalsh(t)[-1])


def test_unit_start_is_the_normalised_start_vector() -> None:
    for d in (2, 17, 384):
        v0 = state._start(d)
        np.testing.assert_array_equal(state._unit_start(d), v0 / np.float32(np.linalg.norm(v0)))
        assert state._unit_start(d).dtype == np.float32


def test_block_flat_index_positions_beyond_int32() -> None:
    """Past 2**31 elements the positions stay exact (int64 products, intp index)."""
    m, n = 70_000, 40_000
    rows, cols = state.block_index(m, n, 104729)
    for transposed in (False, True):
        flat = state._flat_index(m, n, 104729, transposed)
        assert flat.dtype == np.intp
        if transposed:
            assert int(flat[-1]) == int(cols[-1]) * m + int(rows[-1])
        else:
            assert int(flat[-1]) == int(rows[-1]) * n + int(cols[-1])
    assert state._flat_index(1024, 4096, 104729, False).dtype == np.int32


def test_orthogonality_of_a_strided_tall_view_reads_only_its_columns() -> None:
    """A tall kernel given as a transposed (strided) view: the same answer as its C-ordered copy,
    without a C-order copy of the whole tensor (numpy's take makes one on strided input)."""
    import tracemalloc

    from initaudit.analysis.stats import tensor_stats
    from initaudit.model import Convention

    base = np.random.default_rng(15).standard_normal((512, 4096)).astype(np.float32)
    view = base.T  # (4096, 512), F-ordered
    tensor = type("T", (), {"convention": Convention.TORCH, "matrix_shape": None})()
    stats = tensor_stats(view)
    tracemalloc.start()
    got = identify.orthogonality(view, tensor, seed=0, stats=stats)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    want = identify.orthogonality(np.ascontiguousarray(view), tensor, seed=0, stats=stats)
    assert got == want and got is not None
    assert peak < 2 * 2**20  # the 16 columns, not the 8 MB tensor
