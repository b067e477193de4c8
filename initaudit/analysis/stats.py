"""Tensor statistics in one fused streaming pass.

Cost model (documented in the README): ONE streaming pass over the tensor computes everything
that needs every element: exact moments (count, mean, and the 2nd/3rd/4th central moments,
combined block by block with Pebay's pairwise formulas so nothing cancels), min/max, the
non-finite count, and, for a 2-D view, the random projections of the output units (duplicate and
dead units) as matrix-vector products. The pass steps through ``PASS_BLOCK`` elements at a time
(512 KB of float32, the size of this machine's L2: measured against 64K..1M-element blocks on
the benchmark checkpoint, issue 14): after the one read of each byte from memory, every further
operation runs in cache, and each numpy call has enough work that its ~1-2 us of overhead stays
small. Nothing sorts the full tensor.

Identification's family tests run on a small reproducible sample (``FAMILY_SAMPLE`` in
identify.py); the sample is stratified (one random element per equal-width stratum), which is
sorted by construction (no O(k log k) sort, local memmap reads) and at least as representative as
an i.i.d. draw.

Precision: narrow types are widened to float32 (bfloat16 by a bit shift), which is exact; every
float32 sum (a BLAS dot) runs over at most ``PASS_CHUNK`` elements (relative error ~1e-6: longer
runs lose the 1e-4 kurtosis agreement), and those sums are combined in float64, so the moments
agree with float64 numpy on the whole tensor to ~1e-5 relative (tests/test_stats_fused.py).
Blocks whose magnitudes could over- or underflow float32 squares (|x| > 1e15 or all
|x| < 1e-15) are done in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .results import TensorStats

CHUNK_ELEMENTS = 1 << 20
PASS_CHUNK = 1 << 16  # the longest run any float32 sum of the pass accumulates over
PASS_BLOCK = 1 << 17  # elements per step of the pass (see the module docstring)
FAMILY_SAMPLE_DEFAULT = 20_000  # identification's sample (see identify.FAMILY_SAMPLE)
_F32_SAFE = (
    1e-15,
    1e15,
)  # |x| range in which float32 squares/4th powers neither over- nor underflow


def flat_view(values: np.ndarray) -> np.ndarray:
    """A 1-D view without copying when the array is contiguous (memmaps stay lazy)."""
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if arr.flags.c_contiguous:
        return arr.reshape(-1)
    return np.ravel(arr)  # a strided view: numpy copies, bounded by the tensor itself


def iter_chunks(values: np.ndarray, chunk: int = CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
    """1-D chunks of about ``chunk`` elements in C order, never copying the whole tensor.

    Contiguous arrays are sliced; strided views (a transposed torch storage) are cut along
    their first axis and each block is flattened on its own, so the copy stays chunk-sized.
    """
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if arr.flags.c_contiguous or arr.ndim <= 1:
        flat = arr.reshape(-1) if arr.flags.c_contiguous else arr
        for start in range(0, flat.size, chunk):
            yield flat[start : start + chunk]
        return
    row = max(1, arr.size // max(arr.shape[0], 1))
    if row > chunk and arr.ndim > 2:  # one leading slice is itself big: go one axis deeper
        for i in range(arr.shape[0]):
            yield from iter_chunks(arr[i], chunk)
        return
    rows = max(1, chunk // max(row, 1))
    for start in range(0, arr.shape[0], rows):
        yield np.ravel(arr[start : start + rows])


def _narrow_float(dtype: np.dtype) -> bool:
    """bfloat16/float8 (ml_dtypes, kind 'V') and float16: exactly representable in float32."""
    return dtype.kind == "V" or (dtype.kind == "f" and dtype.itemsize < 4)


def as_float(chunk: np.ndarray) -> np.ndarray:
    """float64 copy of a chunk; bfloat16/float8 (ml_dtypes) and ints convert the same way.

    ml_dtypes' direct cast to float64 is ~10x slower than its cast to float32; going through
    float32 is exact for every type of 32 bits or fewer, so the result is identical.
    """
    arr = np.asarray(chunk)
    if arr.dtype == np.float64:
        return arr
    if _narrow_float(arr.dtype):
        arr = arr.astype(np.float32)
    return arr.astype(np.float64, copy=False)


def as_float32_exact(chunk: np.ndarray) -> np.ndarray:
    """The chunk in the narrowest float type that holds every value exactly (float32 or float64)."""
    arr = np.asarray(chunk)
    if arr.dtype in (np.float32, np.float64):
        return arr
    if _narrow_float(arr.dtype):
        return arr.astype(np.float32)
    return arr.astype(np.float64)


def sample_indices(n: int, k: int, seed: int) -> np.ndarray:
    """k reproducible sorted indices into range(n): one uniform draw in each of k equal-width
    strata of [0, n) (sorted by construction, so memmapped reads stay local; no sort).

    Read-only and cached per (n, k, seed): a transformer repeats the same few shapes dozens of
    times, and the draw is a pure function of its arguments, so results are unchanged.
    """
    if k >= n:
        return np.arange(n, dtype=np.int64)
    return _strata(int(n), int(k), int(seed))


@lru_cache(maxsize=8)  # at most 8 x 8 MB at the default 1M sample
def _strata(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pos = np.arange(k, dtype=np.float64)
    pos += rng.random(k, dtype=np.float32)  # 24 random bits place an index within its stratum
    pos *= n / k
    idx = pos.astype(np.int64)
    np.minimum(idx, n - 1, out=idx)  # float rounding at the very top must not run past the end
    idx.flags.writeable = False
    return idx


def _gather(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values.flat[idx] without flattening (copying) a strided view."""
    picked: np.ndarray  # integer-array indexing always gives an ndarray
    if values.flags.c_contiguous:
        picked = values.reshape(-1)[idx]
    else:
        picked = values[np.unravel_index(idx, values.shape)]
    return picked


def draw_sample(values: np.ndarray, max_sample: int, seed: int) -> tuple[np.ndarray, bool]:
    """The finite values the moments are computed on: all of them, or a random sample."""
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    n = arr.size
    if n > max_sample:
        sample = as_float(_gather(arr, sample_indices(n, max_sample, seed)))
        sampled = True
    else:
        sample = as_float(arr.reshape(-1) if arr.flags.c_contiguous else np.ravel(arr))
        sampled = False
    finite = np.isfinite(sample)
    if not finite.all():
        sample = sample[finite]
    return sample, sampled


def full_pass(values: np.ndarray) -> tuple[int, float, float]:
    """(non-finite count, finite min, finite max) over every element, in chunks."""
    nonfinite = 0
    lo, hi = np.inf, -np.inf
    for raw in iter_chunks(values):
        chunk = as_float32_exact(raw)
        if chunk.size == 0:
            continue
        cmin, cmax = chunk.min(), chunk.max()
        if not (np.isfinite(cmin) and np.isfinite(cmax)):  # NaN propagates: rare slow path
            ok = np.isfinite(chunk)
            nonfinite += chunk.size - int(np.count_nonzero(ok))
            chunk = chunk[ok]
            if not chunk.size:
                continue
            cmin, cmax = chunk.min(), chunk.max()
        lo = min(lo, float(cmin))
        hi = max(hi, float(cmax))
    return nonfinite, lo, hi


def moments(sample: np.ndarray) -> tuple[float, float, float]:
    """(mean, std with ddof=1, excess kurtosis, bias-corrected) of a sample."""
    n = sample.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(sample.mean())
    if n < 2:
        return mean, 0.0, float("nan")
    centred = sample - mean
    sq = np.multiply(centred, centred, out=centred)  # in place: one temporary, not three
    m2 = float(np.mean(sq))
    std = float(np.sqrt(m2 * n / (n - 1)))
    if m2 == 0.0 or n < 4:
        return mean, std, float("nan")
    m4 = float(np.dot(sq, sq)) / n  # Σ c⁴ without another temporary (not c ** 4: slow pow)
    g2 = m4 / (m2 * m2) - 3.0
    # the unbiased estimator (scipy.stats.kurtosis(bias=False)): its SE is ~sqrt(24/n) under normality
    kurt = ((n + 1) * g2 + 6.0) * (n - 1) / ((n - 2) * (n - 3))
    return mean, std, float(kurt)


def sampled_stats(
    values: np.ndarray, *, max_sample: int = 1 << 20, seed: int = 0
) -> tuple[TensorStats, np.ndarray]:
    """The statistics (exact, one fused pass) and the finite float64 identification sample."""
    res = fused_pass(values)
    k = min(max_sample, FAMILY_SAMPLE_DEFAULT)
    sample, _ = draw_sample(values, k, seed)
    return res.tensor_stats(sampled=res.count > sample.size), sample


def tensor_stats(values: np.ndarray, *, max_sample: int = 1 << 20, seed: int = 0) -> TensorStats:
    return sampled_stats(values, max_sample=max_sample, seed=seed)[0]


# ----------------------------------------------------------------------------- the fused pass


@dataclass
class _Moments:
    """Running count, mean and central moment sums M2..M4 (Pebay 2008 pairwise combination)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0

    def add(self, nb: int, mb: float, m2b: float, m3b: float, m4b: float) -> None:
        na = self.n
        if na == 0:
            self.n, self.mean, self.m2, self.m3, self.m4 = nb, mb, m2b, m3b, m4b
            return
        n = na + nb
        d = mb - self.mean
        dn = d / n
        t = d * dn * na * nb  # d² na nb / n
        self.m4 += (
            m4b
            + t * dn * dn * (na * na - na * nb + nb * nb)
            + 6.0 * dn * dn * (na * na * m2b + nb * nb * self.m2)
            + 4.0 * dn * (na * m3b - nb * self.m3)
        )
        self.m3 += m3b + t * dn * (na - nb) + 3.0 * dn * (na * m2b - nb * self.m2)
        self.m2 += m2b + t
        self.mean += dn * nb
        self.n = n


@dataclass
class PassResult:
    """Everything one streaming pass over a tensor measured."""

    size: int
    count: int  # finite elements
    mean: float
    m2: float  # Σ (x - mean)² over the finite elements
    m4: float
    lo: float  # finite min (nan when there is none)
    hi: float
    nonfinite: int
    nan: int = 0  # of the non-finite values, the NaNs (the rest are +inf or -inf)
    right: np.ndarray | None = None  # (rows, k): matrix @ right_probe
    left: np.ndarray | None = None  # (k, cols): left_probe.T @ matrix

    def moments(self) -> tuple[float, float, float]:
        """(mean, std with ddof=1, excess kurtosis bias-corrected) as ``moments`` computes them."""
        n = self.count
        if n == 0:
            return float("nan"), float("nan"), float("nan")
        if n < 2:
            return self.mean, 0.0, float("nan")
        m2 = self.m2 / n
        std = math.sqrt(max(m2, 0.0) * n / (n - 1))
        if m2 <= 0.0 or n < 4:
            return self.mean, std, float("nan")
        g2 = (self.m4 / n) / (m2 * m2) - 3.0
        kurt = ((n + 1) * g2 + 6.0) * (n - 1) / ((n - 2) * (n - 3))
        return self.mean, std, float(kurt)

    def tensor_stats(self, *, sampled: bool = False) -> TensorStats:
        mean, std, kurt = self.moments()
        return TensorStats(
            n=self.count,
            size=self.size,
            mean=mean,
            std=std,
            min=self.lo,
            max=self.hi,
            excess_kurtosis=kurt,
            sampled=sampled,
            nonfinite=self.nonfinite,
            nan=self.nan,
        )


def _widen_into(raw: np.ndarray, buf: np.ndarray | None) -> np.ndarray:
    """The block as float32 (exact for <= 32-bit floats) or float64; bfloat16 by a bit shift
    (ml_dtypes' cast is several times slower), reusing ``buf`` when it fits."""
    dt = raw.dtype
    if dt == np.float32 or dt == np.float64:
        return raw
    if dt.kind == "V" and dt.itemsize == 2 and dt.name == "bfloat16":
        out = (
            buf[: raw.size].reshape(raw.shape)
            if buf is not None and buf.size >= raw.size
            else np.empty(raw.shape, dtype=np.float32)
        )
        np.left_shift(
            np.ascontiguousarray(raw).view(np.uint16), 16, out=out.view(np.uint32), dtype=np.uint32
        )
        return out
    return as_float32_exact(raw)


_MIN = np.minimum.reduce
_MAX = np.maximum.reduce


@lru_cache(maxsize=8)
def _ones(n: int, dtype: np.dtype[Any]) -> np.ndarray:
    out: np.ndarray = np.ones(n, dtype=dtype)
    out.flags.writeable = False
    return out


@dataclass
class _Shift:
    value: float | None = None  # the pass's shift, fixed by its first block


_SUM_ROW = 1024  # Σd as a matrix-vector product over rows of this many: its ones stay in L1


def _sum(d: np.ndarray) -> float:
    """Σd of a 1-D block: float32 sums over runs of _SUM_ROW elements, added in float64."""
    q = d.size // _SUM_ROW
    total = 0.0
    if q:
        rows = d[: q * _SUM_ROW].reshape(q, _SUM_ROW)
        total = float(np.add.reduce(rows @ _ones(_SUM_ROW, d.dtype), dtype=np.float64))
    if d.size > q * _SUM_ROW:
        tail = d[q * _SUM_ROW :]
        total += float(np.dot(tail, _ones(tail.size, d.dtype)))
    return total


def _power_sums(d: np.ndarray, d2: np.ndarray) -> tuple[float, float, float, float]:
    """(Σd, Σd², Σd³, Σd⁴) of a 1-D block, d2 = d·d: Σd by :func:`_sum`, the others by one BLAS
    dot per PASS_CHUNK run (a float32 sum over at most PASS_CHUNK elements, the precision the
    module docstring states), the runs added in float64. Plain dots of d with itself, not with a
    vector of ones: no third stream through the cache (issue 14)."""
    s2 = s3 = s4 = 0.0
    dot = np.dot
    for s in range(0, d.size, PASS_CHUNK):
        a, b = d[s : s + PASS_CHUNK], d2[s : s + PASS_CHUNK]
        s2 += float(dot(a, a))
        s3 += float(dot(b, a))
        s4 += float(dot(b, b))
    return _sum(d), s2, s3, s4


def _block_moments(
    c: np.ndarray,
    acc: _Moments,
    tmp: tuple[np.ndarray, np.ndarray],
    lo: float,
    hi: float,
    shift: _Shift,
) -> None:
    """Fold one finite 1-D block into ``acc`` (see the module docstring for the precision).

    d = x - shift, with one shift for the whole pass: 0 when the first block's mean is small
    against its range (most weights: no subtraction at all), else that mean; the power sums of d
    are moved to the block's exact mean in float64 and combined across blocks with Pebay's
    formulas. Should a block's own mean sit so far from the shift that its second moment would
    mostly cancel, it is redone about its own mean.
    """
    nb = c.size
    amax = max(abs(lo), abs(hi))
    if c.dtype == np.float32 and amax != 0.0 and not (_F32_SAFE[0] <= amax <= _F32_SAFE[1]):
        c = c.astype(np.float64)
    own = tmp[0].dtype == c.dtype and tmp[0].size >= nb
    if shift.value is None:
        m = _sum(c) / nb
        shift.value = 0.0 if abs(m) <= 0.1 * (hi - lo) else float(c.dtype.type(m))
    k = shift.value
    for attempt in (0, 1):
        if attempt == 1:
            k = float(c.dtype.type(_sum(c) / nb))
        if k == 0.0:
            d = c
        elif own:
            d = np.subtract(c, c.dtype.type(k), out=tmp[0][:nb])
        else:
            d = c - c.dtype.type(k)
        d2 = np.multiply(d, d, out=tmp[1][:nb]) if own else d * d
        s1, s2, s3, s4 = _power_sums(d, d2)
        delta = s1 / nb
        m2 = s2 - s1 * delta
        if attempt == 1 or m2 >= 1e-3 * s2:  # < 0.1% left after cancelling: redo about its mean
            break
    m3 = s3 - 3.0 * delta * s2 + 2.0 * nb * delta**3
    m4 = s4 - 4.0 * delta * s3 + 6.0 * delta * delta * s2 - 3.0 * nb * delta**4
    acc.add(nb, k + delta, max(m2, 0.0), m3, max(m4, 0.0))


def pass_dtype(dtype: np.dtype) -> type:
    """float32 when every value of ``dtype`` is exact in it (floats <= 32 bits, small ints)."""
    narrow = (dtype.kind in "fV" and dtype.itemsize <= 4) or (
        dtype.kind in "iub" and dtype.itemsize <= 2
    )
    return np.float32 if narrow else np.float64


def fused_pass(
    values: np.ndarray,
    *,
    cols: int | None = None,
    right_probe: np.ndarray | None = None,
    left_probe: np.ndarray | None = None,
) -> PassResult:
    """One streaming pass: moments, min/max, non-finite count and, when ``cols`` names a 2-D view
    (rows, cols) of the tensor in C order, ``view @ right_probe`` and ``left_probe.T @ view``.

    The probes must be float32 for tensors stored in 32 bits or fewer (float64 otherwise); each
    probe column is one matrix-vector product per block of whole rows, on the block already in
    cache (a product with k columns at once runs at a third of the speed of k such products).
    """
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    size = int(arr.size)
    acc = _Moments()
    lo, hi = math.inf, -math.inf
    nonfinite = nan = 0
    matrix = None
    if cols is not None and arr.ndim >= 1 and size and size % cols == 0:
        if arr.ndim == 2 and arr.shape[1] == cols:
            matrix = arr
        elif arr.flags.c_contiguous:
            matrix = arr.reshape(-1, cols)
    right = left = None
    right_cols: list[np.ndarray] = []
    left_cols: list[np.ndarray] = []
    if matrix is not None:
        assert cols is not None  # matrix is only set when cols names a 2-D view
        rows_n = matrix.shape[0]
        per = max(1, PASS_BLOCK // max(cols, 1))
        blocks: Iterator[tuple[int, np.ndarray]] = (
            (s, matrix[s : s + per]) for s in range(0, rows_n, per)
        )
        if right_probe is not None:
            right = np.empty((right_probe.shape[1], rows_n), dtype=right_probe.dtype)
            right_cols = [np.ascontiguousarray(right_probe[:, j]) for j in range(right.shape[0])]
        if left_probe is not None:
            left = np.zeros((left_probe.shape[1], cols), dtype=left_probe.dtype)
            left_cols = [np.ascontiguousarray(left_probe[:, j]) for j in range(left.shape[0])]
    else:
        blocks = ((-1, c) for c in iter_chunks(arr, PASS_BLOCK))
    dt = pass_dtype(arr.dtype)
    n_tmp = max(PASS_BLOCK, cols or 0) if matrix is not None else PASS_BLOCK
    n_tmp = min(n_tmp, max(size, 1))
    wbuf = np.empty(n_tmp, dtype=np.float32) if arr.dtype.kind == "V" else None
    tmp: tuple[np.ndarray, np.ndarray] = (np.empty(n_tmp, dtype=dt), np.empty(n_tmp, dtype=dt))
    shift = _Shift()
    # decided once per tensor, not per block: each check costs ~1 us against a ~60 us block
    convert = arr.dtype != np.dtype(dt)
    contiguous = arr.flags.c_contiguous  # row blocks of a C-contiguous matrix are too
    for start, raw in blocks:
        if raw.size == 0:
            continue
        block = raw
        if convert:
            block = _widen_into(raw, wbuf)
            if block.dtype != dt:
                block = block.astype(dt)
        if not contiguous and not block.flags.c_contiguous:
            block = np.ascontiguousarray(block)
        flat = block.reshape(-1)
        # the ufuncs' reduce directly and math.isfinite on Python floats: the same values as
        # flat.min() / np.isfinite(scalar) without ~3 us of wrappers per block (issue 14)
        cmin, cmax = float(_MIN(flat)), float(_MAX(flat))
        if math.isfinite(cmin) and math.isfinite(cmax):
            fin = flat
        else:  # NaN propagates through min/max: the rare slow path
            ok = np.isfinite(flat)
            nonfinite += flat.size - int(np.count_nonzero(ok))
            nan += int(np.count_nonzero(np.isnan(flat)))
            fin = flat[ok]
            if fin.size:
                cmin, cmax = float(_MIN(fin)), float(_MAX(fin))
        if fin.size:
            lo = min(lo, cmin)
            hi = max(hi, cmax)
            _block_moments(fin, acc, tmp, cmin, cmax, shift)
        if start >= 0:
            stop = start + block.shape[0]
            if right is not None:
                for j, probe in enumerate(right_cols):
                    np.dot(block, probe, out=right[j, start:stop])
            if left is not None:
                for j, probe in enumerate(left_cols):
                    left[j] += probe[start:stop] @ block
    if not math.isfinite(lo):
        lo = hi = float("nan")
    return PassResult(
        size=size,
        count=acc.n,
        mean=acc.mean if acc.n else float("nan"),
        m2=acc.m2,
        m4=acc.m4,
        lo=lo,
        hi=hi,
        nonfinite=nonfinite,
        nan=nan,
        right=right.T if right is not None else None,
        left=left,
    )
