"""One read of a tensor for every analysis that needs all of its elements.

:func:`run_pass` plans the fused streaming pass of :func:`stats.fused_pass` for one weight tensor:
it picks the 2-D view (rows, cols) whose rows or columns are the output units and has the pass
project every unit on two random vectors (duplicate and dead units, units.py), one
matrix-vector product per probe and block, on the block already in cache.

It then draws the small identification sample. The result carries the exact statistics, the
sample and the projections; identify/units/state use them instead of reading the tensor again.
The orthogonality test needs no pass of its own either: it reads a few rows or columns
(identify.orthogonality).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..model import Convention, WeightTensor
from .results import TensorStats
from .stats import (
    FAMILY_SAMPLE_DEFAULT,
    as_float,
    draw_sample,
    fused_pass,
    pass_dtype,
    sample_indices,
)
from .units import matrix_units

ORTHO_SUBSET = 16  # rows (or columns) whose Gram matrix the orthogonality test checks
ORTHO_MAX_ELEMENTS = 1 << 24
ORTHO_SEED_OFFSET = 7919
UNIT_PROBES = 2
UNIT_SEED = 12345


@dataclass(frozen=True)
class TensorPass:
    stats: TensorStats
    sample: np.ndarray  # finite float64 identification sample
    unit_projections: np.ndarray | None  # (n_units, UNIT_PROBES), units along rows or columns


def ortho_subset(n: int, k: int, seed: int) -> np.ndarray:
    """The k (sorted) rows or columns out of n the orthogonality test reads: reproducible.

    Read-only and cached per (n, k, seed): a pure function of its arguments that a model asks
    for with the same few widths on every kernel (a Generator, a choice and a sort: ~20 us)."""
    return _ortho_subset(int(n), int(k), int(seed))


@lru_cache(maxsize=16)
def _ortho_subset(n: int, k: int, seed: int) -> np.ndarray:
    out: np.ndarray
    if k >= n:
        out = np.arange(n)
    else:
        rng = np.random.default_rng(seed + ORTHO_SEED_OFFSET)
        out = np.sort(rng.choice(n, k, replace=False))
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)  # a model repeats a few widths: draw each table once
def unit_probe(n: int, dtype: type) -> np.ndarray:
    rng = np.random.default_rng(UNIT_SEED)
    out: np.ndarray = rng.standard_normal((n, UNIT_PROBES)).astype(dtype)
    out.flags.writeable = False
    return out


def ortho_shapes(shape: tuple[int, ...], tensor: WeightTensor) -> set[tuple[int, int]]:
    """The 2-D flattenings the orthogonality test looks at (identify.orthogonality)."""
    size = int(np.prod(shape, dtype=np.int64))
    if tensor.convention in (Convention.KERAS, Convention.JAX):
        shapes = {(size // shape[-1], shape[-1])}
    else:
        shapes = {(shape[0], size // shape[0])}
    if tensor.matrix_shape:
        shapes.add(tuple(tensor.matrix_shape))  # type: ignore[arg-type]
    return shapes


def identification_sample(arr: np.ndarray, k: int, seed: int, *, all_finite: bool) -> np.ndarray:
    """``stats.draw_sample(arr, k, seed)[0]``, the same values: the strata's elements picked by
    one ``take`` (not fancy indexing), and no isfinite scan when the pass counted no non-finite
    value in the whole tensor (the sample is a subset of it)."""
    if arr.size > k and arr.flags.c_contiguous:
        sample = as_float(arr.reshape(-1).take(sample_indices(arr.size, k, seed)))
        if all_finite:
            return sample
        finite = np.isfinite(sample)
        return sample if finite.all() else sample[finite]
    return draw_sample(arr, k, seed)[0]  # small or strided tensors: the general draw


def run_pass(
    values: np.ndarray, tensor: WeightTensor, *, schemed: bool, max_sample: int, seed: int
) -> TensorPass:
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if isinstance(arr, np.memmap):  # plain ndarray view: memmap's __getitem__ costs per call
        arr = arr.view(np.ndarray)
    shape = tuple(int(d) for d in arr.shape)
    size = int(arr.size)
    cols = None
    units_by: str | None = None  # "rows" / "cols": where the units sit in the (rows, cols) view
    if schemed and arr.ndim >= 2 and size and tensor.unit_axis is not None:
        axis = tensor.unit_axis % arr.ndim
        if axis == 0 and shape[0] >= 2:
            cols, units_by = size // shape[0], "rows"
        elif axis == arr.ndim - 1 and shape[-1] >= 2:
            cols, units_by = shape[-1], "cols"
    elif schemed and size and (mcols := matrix_units(tensor, shape)) is not None and mcols >= 2:
        cols, units_by = mcols, "cols"  # DenseGeneral (in, heads, head_dim): see units.py
    if cols is not None and not (arr.ndim == 2 and shape[1] == cols) and not arr.flags.c_contiguous:
        cols = units_by = None  # a strided >2-D view: no cheap 2-D view, units.py hashes instead
    dt = pass_dtype(arr.dtype)
    rows = size // cols if cols else 0
    res = fused_pass(
        arr,
        cols=cols,
        right_probe=unit_probe(cols, dt) if units_by == "rows" else None,
        left_probe=unit_probe(rows, dt) if units_by == "cols" else None,
    )
    unit_proj = None
    if units_by == "rows" and res.right is not None:
        unit_proj = res.right
    elif units_by == "cols" and res.left is not None:
        unit_proj = res.left.T
    k = min(max_sample, FAMILY_SAMPLE_DEFAULT)
    sample = identification_sample(arr, k, seed, all_finite=res.nonfinite == 0)
    stats = res.tensor_stats(sampled=res.count > sample.size)
    return TensorPass(stats=stats, sample=sample, unit_projections=unit_proj)
