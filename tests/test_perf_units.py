"""Duplicate and dead units found from the fused pass's float projections are exactly those the
integer-hash path finds, wherever the units sit in the chunking, in both layouts."""

from __future__ import annotations

import numpy as np
import pytest

from initaudit.analysis.stats import PASS_CHUNK
from initaudit.analysis.tensorpass import run_pass
from initaudit.analysis.units import check_units
from initaudit.model import Convention, Role, WeightTensor


def _tensor(w: np.ndarray, unit_axis: int, convention: Convention) -> WeightTensor:
    return WeightTensor(name="w", layer="fc", op="Linear", role=Role.KERNEL, shape=w.shape,
                        dtype=str(w.dtype), load=lambda: w, fan_in=w.shape[1 - unit_axis],
                        fan_out=w.shape[unit_axis], convention=convention, unit_axis=unit_axis)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("by_rows", [True, False])
def test_projection_units_equal_hash_units(dtype: str, by_rows: bool) -> None:
    if dtype == "bfloat16":
        dt = np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
    else:
        dt = np.dtype(dtype)
    rng = np.random.default_rng(7)
    width = 300
    n_units = 3 * PASS_CHUNK // width + 11  # several chunks and a ragged last one
    w = rng.normal(0, 0.05, (n_units, width)).astype(dt)
    last = n_units - 1
    per = PASS_CHUNK // width  # units per chunk: pairs inside a chunk, across chunks, at the edges
    pairs = [(0, 1), (2, per - 1), (per - 1, per), (per + 3, 2 * per + 5), (5, last)]
    for a, b in pairs:
        w[b] = w[a]
    w[per + 1] = -w[per + 2] * 0  # -0.0 everywhere: dead
    w[last - 1] = 0
    w[9, 4] = -0.0 if float(w[8, 4]) == 0 else w[9, 4]
    if not by_rows:
        w = np.ascontiguousarray(w.T)  # units are columns (Keras / ONNX MatMul layout)
    t = _tensor(w, 0 if by_rows else 1, Convention.TORCH if by_rows else Convention.KERAS)
    tp = run_pass(w, t, schemed=True, max_sample=1 << 20, seed=0)
    assert tp.unit_projections is not None and tp.unit_projections.shape[0] == n_units
    fused = check_units(w, t, tp.stats, projections=tp.unit_projections)
    hashed = check_units(w, t, tp.stats)
    assert fused == hashed
    assert {g[0] for g in fused.duplicate_groups} >= {0, 2, per + 3, 5}
    assert fused.dead_units == (per + 1, last - 1)


def test_negative_zero_duplicates_and_nan_units() -> None:
    rng = np.random.default_rng(8)
    w = rng.normal(0, 0.05, (64, 40)).astype(np.float32)
    w[3, :5] = 0.0
    w[4] = w[3]
    w[4, :5] = -0.0  # equal to row 3 under ==
    w[10, 2] = np.nan
    w[11] = w[10]  # NaN never equals anything: not a duplicate
    t = _tensor(w, 0, Convention.TORCH)
    tp = run_pass(w, t, schemed=True, max_sample=1 << 20, seed=0)
    fused = check_units(w, t, tp.stats, projections=tp.unit_projections)
    assert fused.duplicate_groups == ((3, 4),)
    assert fused == check_units(w, t, tp.stats)


def _full_gram_orthogonal(w: np.ndarray, tol: float) -> bool:
    """The definition, on every row: w·wᵀ = g²·I for the (short side, long side) view."""
    m = w.astype(np.float64)
    m = m if m.shape[0] <= m.shape[1] else m.T
    gram = m @ m.T
    g2 = np.trace(gram) / gram.shape[0]
    return bool(np.linalg.norm(gram - g2 * np.eye(gram.shape[0])) / (g2 * np.sqrt(gram.shape[0])) < tol)


def test_orthogonality_from_a_row_subset_agrees_with_the_full_gram() -> None:
    """The test reads 16 rows (or columns) and the pass's total energy; its decision is the one
    the full Gram matrix gives, on orthogonal matrices of both layouts and gains, random ones,
    and near-misses: noise, or rows outside the subset scaled differently."""
    from initaudit.analysis.identify import orthogonality
    from initaudit.analysis.stats import tensor_stats

    rng = np.random.default_rng(9)
    q, _ = np.linalg.qr(rng.standard_normal((512, 128)))
    half = q.T.copy()
    half[64:] *= 1.1  # the second half of the rows carries more energy
    from initaudit.analysis.tensorpass import ORTHO_SUBSET, ortho_subset

    unread = q.T.copy()
    others = np.setdiff1d(np.arange(128), ortho_subset(128, ORTHO_SUBSET, 0))
    unread[others] *= 1.1  # only rows the subset does not read: the energy check must see it
    cases = {
        "tall": q, "wide": np.ascontiguousarray(q.T), "gain": 1.7 * q,
        "noisy": q + rng.normal(0, 1e-2 / np.sqrt(128), q.shape), "half scaled": half,
        "unread rows scaled": unread,
        "random": rng.normal(0, 0.05, (128, 512)), "random tall": rng.normal(0, 0.05, (512, 128)),
    }
    for name, w64 in cases.items():
        w = w64.astype(np.float32)
        t = _tensor(w, 0, Convention.TORCH)
        got = orthogonality(w, t, seed=0, stats=tensor_stats(w))
        assert got is not None, name
        tol = min(1e-3, 0.1 / np.sqrt(max(w.shape)))
        assert got.orthogonal == _full_gram_orthogonal(w, tol), name
        assert got.orthogonal == (name in ("tall", "wide", "gain")), name
        if got.orthogonal:
            assert got.gain == pytest.approx(1.7 if name == "gain" else 1.0, rel=1e-5)
            assert got.layout == ("columns" if w.shape[0] > w.shape[1] else "rows")


@pytest.mark.parametrize("shape, transposed", [((500, 300), False), ((500, 300), True),
                                                ((40, 20000), False), ((20000, 40), True)])
def test_state_block_gather_is_fancy_indexing(shape: tuple[int, int], transposed: bool) -> None:
    """The trained/initialized block is gathered in two takes: the same elements, in the same
    order, as np.ix_ indexing (so the spectrum and unit spread, and the state, are unchanged)."""
    from initaudit.analysis import state

    m = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    if transposed:
        m = m.T
    rng = np.random.default_rng(9)
    rows = np.sort(rng.choice(m.shape[0], min(384, m.shape[0]), replace=False))
    cols = np.sort(rng.choice(m.shape[1], min(384, m.shape[1]), replace=False))
    np.testing.assert_array_equal(state._take_block(m, rows, cols), m[np.ix_(rows, cols)])
    strided = np.random.default_rng(5).standard_normal((m.shape[0], 2 * m.shape[1]))[:, ::2]
    np.testing.assert_array_equal(state._take_block(strided, rows, cols),
                                  strided[np.ix_(rows, cols)])


def test_state_block_of_a_transposed_memmap_copies_only_the_block(tmp_path) -> None:
    """Units along columns (ONNX/Keras (in, out) kernels) give a transposed view of the mapped
    file: the block is gathered from the contiguous base, never from a C-order copy of the whole
    tensor (numpy's take on a strided view makes one)."""
    import tracemalloc

    from initaudit.analysis import state

    path = tmp_path / "w.bin"
    np.random.default_rng(6).standard_normal((2048, 1024)).astype(np.float32).tofile(path)
    m = np.memmap(path, dtype=np.float32, mode="r", shape=(2048, 1024)).view(np.ndarray).T
    rows = np.arange(0, 1024, 3)[:384]
    cols = np.arange(0, 2048, 5)[:384]
    tracemalloc.start()
    got = state._take_block(m, rows, cols)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(got, m[np.ix_(rows, cols)])
    assert peak < 4 * 2**20  # the block and a row slab, not the 8 MB tensor
