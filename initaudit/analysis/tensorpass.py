"""One read of a tensor for every analysis that needs all of its elements.

:func:`run_pass` plans the fused streaming pass of :func:`stats.fused_pass` for one weight tensor:
it picks the 2-D view (rows, cols) whose rows or columns are the output units, and stacks into one
BLAS product per chunk

* two random projections per unit (duplicate and dead units, units.py), and
* the 8 probe vectors of the orthogonality test (identify.py), when that test applies to the
  same 2-D view (always for 2-D kernels; conv kernels whose flattening differs fall back to the
  separate probe).

It then draws the small identification sample. The result carries the exact statistics, the
sample and the projections; identify/units/state use them instead of reading the tensor again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..model import Convention, Role, WeightTensor
from .results import TensorStats
from .stats import FAMILY_SAMPLE_DEFAULT, draw_sample, fused_pass, pass_dtype
from .units import matrix_units

ORTHO_PROBES = 8  # identify.ORTHO_PROBES (kept in one place: identify imports it from here)
ORTHO_MAX_ELEMENTS = 1 << 24
ORTHO_SEED_OFFSET = 7919
UNIT_PROBES = 2
UNIT_SEED = 12345


@dataclass(frozen=True)
class OrthoProjection:
    """w·... products of the orthogonality probe for the 2-D view (rows, cols) of a kernel:
    ``wv`` is view @ v (rows > cols) or view.T @ v (rows <= cols), v ~ N(0, 1) of shape
    (min(rows, cols), ORTHO_PROBES)."""

    rows: int
    cols: int
    v: np.ndarray
    wv: np.ndarray


@dataclass(frozen=True)
class TensorPass:
    stats: TensorStats
    sample: np.ndarray  # finite float64 identification sample
    unit_projections: np.ndarray | None  # (n_units, UNIT_PROBES), units along rows or columns
    ortho: OrthoProjection | None


def ortho_probe(n: int, seed: int) -> np.ndarray:
    """The orthogonality probe vectors (float64), the same for the fused and the separate path."""
    return np.random.default_rng(seed + ORTHO_SEED_OFFSET).standard_normal((n, ORTHO_PROBES))


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
    want_ortho = (
        schemed
        and arr.ndim >= 2
        and size
        and size <= ORTHO_MAX_ELEMENTS
        and tensor.role is not Role.EMBEDDING
    )
    oshape = None
    if want_ortho:
        shapes = ortho_shapes(shape, tensor)
        if len(shapes) == 1:
            r, c = next(iter(shapes))
            if min(r, c) >= 2 and (cols is None or c == cols):
                oshape, cols = (r, c), c
    if cols is not None and not (arr.ndim == 2 and shape[1] == cols) and not arr.flags.c_contiguous:
        cols = units_by = oshape = None  # a strided >2-D view: no cheap 2-D view, separate paths
    dt = pass_dtype(arr.dtype)
    right: list[np.ndarray] = []
    left: list[np.ndarray] = []
    rows = size // cols if cols else 0
    if units_by == "rows":
        right.append(unit_probe(cols, dt))
    elif units_by == "cols":
        left.append(unit_probe(rows, dt))
    v = None
    if oshape is not None:
        v = ortho_probe(min(oshape), seed)
        (right if oshape[0] > oshape[1] else left).append(v.astype(dt))
    res = fused_pass(
        arr,
        cols=cols,
        right_probe=np.hstack(right) if right else None,
        left_probe=np.hstack(left) if left else None,
    )
    unit_proj = None
    ortho = None
    if units_by == "rows" and res.right is not None:
        unit_proj = res.right[:, :UNIT_PROBES]
    elif units_by == "cols" and res.left is not None:
        unit_proj = res.left[:UNIT_PROBES].T
    if oshape is not None and v is not None:
        if oshape[0] > oshape[1] and res.right is not None:
            wv = res.right[:, -ORTHO_PROBES:]
        elif res.left is not None:
            wv = res.left[-ORTHO_PROBES:].T
        else:
            wv = None
        if wv is not None:
            ortho = OrthoProjection(
                rows=oshape[0], cols=oshape[1], v=v, wv=np.asarray(wv, dtype=np.float64)
            )
    k = min(max_sample, FAMILY_SAMPLE_DEFAULT)
    sample, _ = draw_sample(arr, k, seed)
    stats = res.tensor_stats(sampled=res.count > sample.size)
    return TensorPass(stats=stats, sample=sample, unit_projections=unit_proj, ortho=ortho)
