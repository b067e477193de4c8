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
(measured: a few ulps, ~1e-6 of the projections' spread); so units are bucketed on a grid 1e-3 of
that spread wide, twice (the second grid shifted by half a cell, so two values closer than half
a cell always share a cell of one grid), in both projections. An all-zero unit projects to
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
        zero = np.all(projections == 0, axis=1)
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


def _projection_duplicates(
    layout: _Layout, proj: np.ndarray, dead: set[int]
) -> tuple[tuple[int, ...], ...]:
    p = np.asarray(proj[:, :2], dtype=np.float64)
    finite = np.isfinite(p).all(axis=1)
    cand: set[int] = {int(k) for k in np.flatnonzero(~finite)}  # inf/NaN units: exact check only
    pf = p[finite]
    idx = np.flatnonzero(finite)
    if pf.shape[0] > 1:
        spread = np.sqrt(np.mean(pf * pf, axis=0))
        cell = np.where(spread > 0, GRID * spread, 1.0)
        scaled = np.clip(pf / cell, -(2.0**30), 2.0**30)  # extremes share edge cells: fine
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
                hit = np.zeros(ks.size, dtype=bool)
                hit[1:] |= same
                hit[:-1] |= same
                cand.update(int(k) for k in idx[order[hit]])
    cand -= dead  # all-zero units are "dead units", reported by their own rule
    if len(cand) < 2:
        return ()
    return tuple(sorted(_confirm(layout, sorted(cand))))


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
