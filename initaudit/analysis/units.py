"""Full-pass checks on output units (rows of a Linear, filters of a Conv): constant tensors,
duplicated units and dead (all-zero) units.

Duplicates are found without comparing every pair: each unit is projected on two random vectors
(one BLAS pass over the tensor), units with equal projections become candidates, and candidates
are confirmed by exact comparison. Cost O(n), memory one chunk of units at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import WeightTensor
from .stats import CHUNK_ELEMENTS, as_float


@dataclass(frozen=True)
class UnitCheck:
    n_units: int
    constant: bool  # every (finite) entry of the tensor equal
    constant_value: float | None
    # groups of unit indices with identical weights (each group has >= 2 members)
    duplicate_groups: tuple[tuple[int, ...], ...] = ()
    dead_units: tuple[int, ...] = ()  # all-zero units (in a tensor that is not all zero)

    @classmethod
    def empty(cls) -> "UnitCheck":
        return cls(n_units=0, constant=False, constant_value=None)


def units_matrix(values: np.ndarray, tensor: WeightTensor) -> np.ndarray | None:
    """The tensor as (units, weights-per-unit), or None when it has no unit structure."""
    if tensor.unit_axis is None or values.ndim < 2:
        return None
    axis = tensor.unit_axis % values.ndim
    moved = np.moveaxis(values, axis, 0)
    return moved.reshape(moved.shape[0], -1)


def check_units(values: np.ndarray, tensor: WeightTensor) -> UnitCheck:
    flat = values.reshape(-1) if values.flags.c_contiguous else np.ravel(values)
    if flat.size == 0:
        return UnitCheck.empty()
    first = as_float(flat[:1])[0]
    constant = True
    for start in range(0, flat.size, CHUNK_ELEMENTS):
        chunk = as_float(flat[start:start + CHUNK_ELEMENTS])
        if not np.all(chunk == first):
            constant = False
            break
    matrix = units_matrix(values, tensor)
    n_units = matrix.shape[0] if matrix is not None else 0
    if constant or matrix is None or n_units < 2:
        return UnitCheck(n_units=n_units, constant=constant and bool(np.isfinite(first)),
                         constant_value=float(first) if constant else None)
    return UnitCheck(n_units=n_units, constant=False, constant_value=None,
                     duplicate_groups=_duplicates(matrix), dead_units=_dead(matrix))


def _fingerprints(matrix: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(12345)
    width = matrix.shape[1]
    probes = rng.standard_normal((width, 2))
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(width, 1))
    out = np.empty((matrix.shape[0], 2))
    for start in range(0, matrix.shape[0], rows_per_chunk):
        block = as_float(matrix[start:start + rows_per_chunk])
        block = np.where(np.isfinite(block), block, 0.0)
        out[start:start + block.shape[0]] = block @ probes
    return out


def _duplicates(matrix: np.ndarray) -> tuple[tuple[int, ...], ...]:
    fp = _fingerprints(matrix)
    order = np.lexsort((fp[:, 1], fp[:, 0]))
    groups: list[tuple[int, ...]] = []
    i = 0
    n = len(order)
    while i < n:
        j = i + 1
        while j < n and np.array_equal(fp[order[j]], fp[order[i]]):
            j += 1
        if j - i > 1:
            groups.extend(_confirm(matrix, [int(k) for k in order[i:j]]))
        i = j
    # all-zero rows are "dead units", reported by their own rule, not as duplicates
    groups = [g for g in groups if np.any(as_float(matrix[g[0]]) != 0)]
    return tuple(sorted(groups))


def _confirm(matrix: np.ndarray, members: list[int]) -> list[tuple[int, ...]]:
    """Split a fingerprint bucket into groups of exactly equal rows."""
    remaining = sorted(members)
    groups = []
    while len(remaining) > 1:
        head = as_float(matrix[remaining[0]])
        same = [remaining[0]] + [k for k in remaining[1:] if np.array_equal(as_float(matrix[k]), head)]
        if len(same) > 1:
            groups.append(tuple(same))
        remaining = [k for k in remaining if k not in same]
    return groups


def _dead(matrix: np.ndarray) -> tuple[int, ...]:
    dead: list[int] = []
    width = matrix.shape[1]
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, matrix.shape[0], rows_per_chunk):
        block = as_float(matrix[start:start + rows_per_chunk])
        zero = ~np.any(block != 0, axis=1)
        dead.extend(int(start + k) for k in np.flatnonzero(zero))
    return tuple(dead)
