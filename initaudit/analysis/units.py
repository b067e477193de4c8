"""Full-pass checks on output units (rows of a Linear, filters of a Conv): constant tensors,
duplicated units and dead (all-zero) units.

Duplicates are found without comparing every pair: each unit's raw bits are hashed with two random
linear hashes modulo 2**32 (one integer matrix product per chunk of units: exact, order-free
integer arithmetic, so identical units always get identical hashes, whatever the BLAS or the
chunking), units with equal hashes become candidates, and candidates are confirmed by exact
comparison of their values. Sign bits are masked out of the hash so -0.0 and +0.0 hash alike
(they compare equal), and an all-zero unit hashes to 0, which makes the dead-unit check free.
Cost O(n) with no float conversion at all; memory one chunk of units at a time; the tensor is
never copied when its units are rows (torch) or columns (Keras, ONNX MatMul) of a contiguous
array.

When the fused pass (tensorpass.py) already projected every unit on two random float vectors,
those projections replace the integer hashes and no further pass is made. Equal units get equal
projections up to the BLAS's summation order, which differs between its main and edge kernels
(measured: a few ulps, ~1e-6 of the projections' spread); so units whose projections lie within
5e-4 of that spread of each other in both projections are candidates: found among the next few
neighbours in one sort of the first projection, or, when too many units crowd together, by
bucketing on a grid 1e-3 of the spread wide, twice (the second grid shifted by half a cell, so
two values closer than half a cell always share a cell of one grid). An all-zero unit projects to
exactly 0 in any order. Every candidate, dead or duplicate, is confirmed by comparing the values
themselves, so a collision can never produce a false finding (tests/test_perf_units.py: equal
units at every position of the chunking, both layouts, all float widths, agree with the hashes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..model import WeightTensor
from .results import TensorStats, UnitCheck
from .stats import CHUNK_ELEMENTS, as_float, iter_chunks


def matrix_units(tensor: WeightTensor, shape: tuple[int, ...]) -> int | None:
    """Units that are the columns of the tensor's ``matrix_shape`` rather than one axis.

    A Flax DenseGeneral / Keras EinsumDense attention kernel (in, heads, head_dim) has one
    output unit per (head, dim) pair: the trailing axes flattened, which no single unit axis
    names. Such tensors carry ``matrix_shape`` (in, heads·head_dim) and no ``unit_axis``; when
    the leading axes multiply to its rows, the C-order reshape to it is exact and its columns
    are the units (JAX and Keras keep the output side last)."""
    ms = tensor.matrix_shape
    if tensor.unit_axis is not None or ms is None or len(shape) < 3:
        return None
    if tensor.convention.value not in ("jax", "keras") or int(np.prod(shape)) != ms[0] * ms[1]:
        return None
    lead = 1
    for d in shape[:-1]:
        lead *= int(d)
        if lead == ms[0]:
            return int(ms[1])
    return None


def units_matrix(values: np.ndarray, tensor: WeightTensor) -> np.ndarray | None:
    """The tensor as (units, weights-per-unit), or None when it has no unit structure."""
    cols = matrix_units(tensor, tuple(values.shape))
    if cols is not None:
        return values.reshape(-1, cols).T
    if tensor.unit_axis is None or values.ndim < 2:
        return None
    axis = tensor.unit_axis % values.ndim
    moved = np.moveaxis(values, axis, 0)
    return moved.reshape(moved.shape[0], -1)


def check_units(
    values: np.ndarray,
    tensor: WeightTensor,
    stats: TensorStats | None = None,
    projections: np.ndarray | None = None,
) -> UnitCheck:
    """``stats`` (from the same tensor's full pass) lets the constant check skip its own pass:
    all entries equal and finite <=> no non-finite value and min == max. ``projections``
    ((n_units, k) from the fused pass) replace the hashing pass."""
    if values.size == 0:
        return UnitCheck.empty()
    first = float(
        as_float(
            values.reshape(-1)[:1]
            if values.flags.c_contiguous
            else values[(0,) * values.ndim][None]
        )[0]
    )
    if stats is not None and stats.nonfinite == 0 and stats.size == values.size:
        constant = bool(stats.min == stats.max)
    else:  # no stats, or non-finite values: the exact original semantics, chunk by chunk
        constant = all(bool(np.all(as_float(c) == first)) for c in iter_chunks(values))
    n_units = _n_units(values, tensor)
    if constant or n_units < 2:
        return UnitCheck(
            n_units=n_units,
            constant=constant and bool(np.isfinite(first)),
            constant_value=first if constant else None,
        )
    layout = _layout(values, tensor)
    if projections is not None and projections.shape[0] == n_units:
        zero = projections[:, 0] == 0  # column by column: 10x faster than all(axis=1) on a view
        for c in range(1, projections.shape[1]):
            zero &= projections[:, c] == 0
        dead = tuple(int(k) for k in np.flatnonzero(zero) if _is_zero(layout.unit(int(k))))
        groups = _projection_duplicates(layout, projections, set(dead))
        return UnitCheck(
            n_units=n_units,
            constant=False,
            constant_value=None,
            duplicate_groups=groups,
            dead_units=dead,
        )
    hashes, zero = _hashes(layout)
    dead = tuple(int(k) for k in np.flatnonzero(zero) if _is_zero(layout.unit(int(k))))
    return UnitCheck(
        n_units=n_units,
        constant=False,
        constant_value=None,
        duplicate_groups=_duplicates(layout, hashes, set(dead)),
        dead_units=dead,
    )


def _n_units(values: np.ndarray, tensor: WeightTensor) -> int:
    cols = matrix_units(tensor, tuple(values.shape))
    if cols is not None:
        return cols
    if tensor.unit_axis is None or values.ndim < 2:
        return 0
    return int(values.shape[tensor.unit_axis % values.ndim])


@dataclass(frozen=True)
class _Layout:
    """A 2-D view of the tensor whose units are its rows (``by_rows``) or its columns."""

    matrix: np.ndarray
    by_rows: bool

    @property
    def n_units(self) -> int:
        n: int = self.matrix.shape[0] if self.by_rows else self.matrix.shape[1]
        return n

    def unit(self, k: int) -> np.ndarray:
        return self.matrix[k] if self.by_rows else self.matrix[:, k]


def _layout(values: np.ndarray, tensor: WeightTensor) -> _Layout:
    cols = matrix_units(tensor, tuple(values.shape))
    if cols is not None:
        if values.flags.c_contiguous:
            return _Layout(values.reshape(-1, cols), False)
        return _Layout(np.ascontiguousarray(values.reshape(-1, cols).T), True)
    axis = tensor.unit_axis % values.ndim  # type: ignore[operator]
    if values.flags.c_contiguous and axis == 0:
        return _Layout(values.reshape(values.shape[0], -1), True)
    if values.flags.c_contiguous and axis == values.ndim - 1:
        return _Layout(values.reshape(-1, values.shape[-1]), False)
    # another axis, or a strided view: one copy of the tensor (in its own dtype, not float64)
    return _Layout(np.ascontiguousarray(units_matrix(values, tensor)), True)


def _sign_mask(dtype: np.dtype) -> int | None:
    """The bits of one element without its sign bit, or None for types without a sign bit."""
    if dtype.kind in ("f", "V") and dtype.itemsize in (1, 2, 4, 8):
        return (1 << (8 * dtype.itemsize - 1)) - 1
    return None


def _words(block: np.ndarray) -> np.ndarray:
    """(rows, k) uint32 words with sign bits cleared; equal values give equal words."""
    dtype = block.dtype
    mask = _sign_mask(dtype)
    rows = block.shape[0]
    if dtype.itemsize == 8:
        bits = np.ascontiguousarray(block).view(np.uint64).reshape(rows, -1)
        if mask is not None:
            bits = bits & np.uint64(mask)
        # fold 64 -> 32 bits: two words per element, both hashed
        return bits.view(np.uint32).reshape(rows, -1)
    width = block.shape[1] if block.ndim > 1 else 1
    if dtype.itemsize == 4 or (width * dtype.itemsize) % 4 == 0:
        words = np.ascontiguousarray(block).view(np.uint32).reshape(rows, -1)
        if mask is not None:
            per_word = 4 // dtype.itemsize
            word_mask = 0
            for i in range(per_word):
                word_mask |= mask << (8 * dtype.itemsize * i)
            words = words & np.uint32(word_mask)
        return words
    small = np.ascontiguousarray(block).view(f"u{dtype.itemsize}").reshape(rows, -1)
    if mask is not None:
        small = small & np.array(mask, dtype=small.dtype)
    return small.astype(np.uint32)


@lru_cache(maxsize=16)  # a model repeats a few widths: draw each coefficient table once
def _coefficients(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coef = (rng.integers(0, 1 << 32, size=(n, 2), dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
    coef.flags.writeable = False
    return coef


def _hashes(layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit hash per unit, units whose masked bits are all zero: dead candidates)."""
    m = layout.matrix
    n = layout.n_units
    if layout.by_rows:
        words0 = _words(m[:1])
        coef = _coefficients(words0.shape[1], 12345)
        out = np.empty((n, 2), dtype=np.uint32)
        nonzero = np.empty(n, dtype=bool)
        rows = max(1, CHUNK_ELEMENTS // max(m.shape[1], 1))
        for start in range(0, n, rows):
            w = _words(m[start : start + rows])
            out[start : start + w.shape[0]] = w @ coef  # uint32 arithmetic wraps: a hash mod 2**32
            nonzero[start : start + w.shape[0]] = w.any(axis=1)
    else:
        # units are columns: accumulate each column's hash over blocks of rows
        coef = _coefficients(m.shape[0], 12345)
        acc = np.zeros((2, n), dtype=np.uint32)
        nonzero = np.zeros(n, dtype=bool)
        rows = max(1, CHUNK_ELEMENTS // max(n, 1))
        for start in range(0, m.shape[0], rows):
            w = _element_words(m[start : start + rows])
            acc += coef[start : start + w.shape[0]].T @ w
            nonzero |= w.any(axis=0)
        out = np.ascontiguousarray(acc.T)
    key = (out[:, 0].astype(np.uint64) << np.uint64(32)) | out[:, 1].astype(np.uint64)
    return key, ~nonzero


GRID = 1e-3  # bucket width, relative to the projections' spread (see the module docstring)


NEIGHBOUR_LAGS = 16  # sorted neighbours compared before falling back to the grid buckets


def _projection_duplicates(
    layout: _Layout, proj: np.ndarray, dead: set[int]
) -> tuple[tuple[int, ...], ...]:
    # the two projections as contiguous float64 columns (the fused pass hands over views)
    p0 = np.array(proj[:, 0], dtype=np.float64)
    p1 = np.array(proj[:, 1], dtype=np.float64)
    finite = np.isfinite(p0)
    finite &= np.isfinite(p1)
    cand: set[int] = set()
    idx: np.ndarray | None = None
    if not finite.all():
        cand.update(int(k) for k in np.flatnonzero(~finite))  # inf/NaN units: exact check only
        idx = np.flatnonzero(finite)
        p0, p1 = p0[idx], p1[idx]
    if p0.size > 1:
        spread = np.sqrt(np.array([np.dot(p0, p0), np.dot(p1, p1)]) / p0.size)
        cell = np.where(spread > 0, GRID * spread, 1.0)
        near = _near_pairs(p0, p1, 0.5 * cell)
        if near is None:
            near = _grid_pairs(np.stack([p0, p1], axis=1), cell)
        cand.update(int(k) for k in (near if idx is None else idx[near]))
    cand -= dead  # all-zero units are "dead units", reported by their own rule
    if len(cand) < 2:
        return ()
    return tuple(sorted(_confirm(layout, _same_head(layout, sorted(cand)))))


HEAD = 8  # leading values compared before a unit is read in full


def _same_head(layout: _Layout, members: list[int]) -> list[int]:
    """The candidates whose first HEAD values equal another candidate's: equal units agree
    everywhere, so the rest cannot be in a duplicate group (a column unit read in full costs a
    cache miss per value; its head, a few). NaN never equals anything (as in _confirm)."""
    if len(members) < 2:
        return members
    m = layout.matrix
    head = m[members, :HEAD] if layout.by_rows else m[:HEAD, members].T
    vals = as_float(head) + 0.0  # + 0.0 turns -0.0 into 0.0: they compare equal
    by_value: dict[bytes, list[int]] = {}
    for k, row in zip(members, vals):
        if not np.isnan(row).any():
            by_value.setdefault(row.tobytes(), []).append(k)
    return sorted(k for g in by_value.values() if len(g) > 1 for k in g)


def _near_pairs(p0: np.ndarray, p1: np.ndarray, tol: np.ndarray) -> np.ndarray | None:
    """Positions with another position within ``tol`` in both coordinates (p0, p1), found on one
    sort of p0: pairs within tol there sit at most a few places apart in that order, so
    comparing each with its next 1, 2, ... neighbours finds all of them (the lag stops once no
    neighbour at that distance is within tol: none further can be). None when the
    neighbourhoods are too crowded (> NEIGHBOUR_LAGS places): the grid then decides. Every pair
    the grid buckets guarantee to catch (closer than half a cell, i.e. ``tol``, in both
    coordinates) is caught here too, and candidates are confirmed by value anyway."""
    order = np.argsort(p0)  # any order among equal values: each run is compared in full
    s0 = p0[order]
    s1 = p1[order]
    hit = np.zeros(order.size, dtype=bool)
    for lag in range(1, min(NEIGHBOUR_LAGS, order.size - 1) + 1):
        close = s0[lag:] - s0[:-lag] <= tol[0]
        if not close.any():
            return order[hit]
        close &= np.abs(s1[lag:] - s1[:-lag]) <= tol[1]
        if close.any():
            hit[lag:] |= close
            hit[:-lag] |= close
    if order.size - 1 <= NEIGHBOUR_LAGS:  # every pair was compared
        return order[hit]
    return None


def _grid_pairs(p: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Rows of p (n, 2) sharing a cell of one of four grids (cell wide, shifted by half a cell
    per coordinate) with another row: two values closer than half a cell always share a cell of
    one grid."""
    scaled = np.clip(p / cell, -(2.0**30), 2.0**30)  # extremes share edge cells: fine
    hit = np.zeros(p.shape[0], dtype=bool)
    for o1, o2 in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5)):
        # one int64 key per unit (a 1-D sort, not np.unique(axis=0)'s structured sort)
        keys = (np.floor(scaled[:, 0] + o1).astype(np.int64) << 32) + np.floor(
            scaled[:, 1] + o2
        ).astype(np.int64)
        # any order among equal keys marks the same units (every member of a run of equal
        # keys is hit), so the unstable sort, 5x faster than the stable one, finds the same set
        order = np.argsort(keys)
        ks = keys[order]
        same = ks[1:] == ks[:-1]
        if same.any():
            hit[order[1:][same]] = True
            hit[order[:-1][same]] = True
    out: np.ndarray = np.flatnonzero(hit)
    return out


def _element_words(block: np.ndarray) -> np.ndarray:
    """One uint32 word per element (column layout: a word must not mix two units)."""
    dtype = block.dtype
    mask = _sign_mask(dtype)
    if dtype.itemsize == 8:
        bits = np.ascontiguousarray(block).view(np.uint64)
        if mask is not None:
            bits = bits & np.uint64(mask)
        return (bits ^ (bits >> np.uint64(32))).astype(np.uint32)  # fold: equal in, equal out
    small = np.ascontiguousarray(block).view(f"u{dtype.itemsize}")
    if mask is not None:
        small = small & np.array(mask, dtype=small.dtype)
    return small.astype(np.uint32, copy=False)


def _is_zero(unit: np.ndarray) -> bool:
    return not np.any(as_float(unit) != 0)


def _duplicates(layout: _Layout, key: np.ndarray, dead: set[int]) -> tuple[tuple[int, ...], ...]:
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    shared = counts[inverse] > 1
    if not shared.any():
        return ()
    buckets: dict[int, list[int]] = {}
    for k in np.flatnonzero(shared):
        if int(k) not in dead:  # all-zero units are "dead units", reported by their own rule
            buckets.setdefault(int(inverse[k]), []).append(int(k))
    groups: list[tuple[int, ...]] = []
    for members in buckets.values():
        if len(members) > 1:
            groups.extend(_confirm(layout, members))
    return tuple(sorted(groups))


def _confirm(layout: _Layout, members: list[int]) -> list[tuple[int, ...]]:
    """Split a hash bucket into groups of exactly equal units (NaN never equals anything)."""
    by_value: dict[bytes, list[int]] = {}
    for k in sorted(members):
        unit = as_float(layout.unit(k)) + 0.0  # + 0.0 turns -0.0 into 0.0: they compare equal
        if np.isnan(unit).any():
            continue
        by_value.setdefault(unit.tobytes(), []).append(k)
    return [tuple(g) for g in by_value.values() if len(g) > 1]
