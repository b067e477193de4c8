"""Scheme identification: which rule, family, fan mode and gain produced a kernel.

Two questions, answered with sample-size-aware statistics rather than fixed thresholds:

1. **Family** (normal / truncated normal ±2σ / uniform / orthogonal): the likelihood of the data
   under each family with its scale fitted (robust to a 1e-4 fraction of outliers), turned into
   posterior weights; the winner must also pass a Kolmogorov-Smirnov goodness-of-fit test
   on the same sample, or the family is "unknown". Both run on a reproducible sample of
   ``FAMILY_SAMPLE`` = 20,000 values, a size set by the power the decisions need: the closest
   pair of families (normal vs truncated normal ±2σ at equal std) differs by >= 0.02 nats per
   value, so 20k values put >= 400 nats between them (a posterior of 1 - e^-400), and the KS
   test on 20k values rejects a wrong family at p < 1e-4 once the cdfs differ by 0.016, far less
   than any two families here differ (>= 0.03) yet more than bfloat16 rounding moves them.
   The cdfs are closed forms (erf) and the KS p-value is computed here (no scipy.stats: its
   import alone costs more than reading a gigabyte). Orthogonality is decided separately, from
   the exact Gram matrix of a few rows (W·Wᵀ = gain²·I holds for every subset of the rows of an
   orthogonal matrix to rounding; a random one misses by ~sqrt(k/fan)).
2. **Scale**: the observed std against the std each candidate predicts (schemes.py), with the
   standard error of log(std) for that family, sqrt((2 + κ)/(4n)), plus a 0.5% allowance for
   systematic effects. Candidates are weighted by prior × family posterior × scale likelihood;
   an "unknown" alternative with a flat density over log-std absorbs tensors that fit nothing.

Candidates that predict the same std within the interval (Glorot and LeCun on a square layer)
are reported together as consistent alternatives, and the confidence says how the posterior
splits between them: we never pick one silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from ..model import Role, WeightTensor
from .results import Candidate, SchemeResult, TensorStats
from .schemes import NORMAL, TN2_STD_FACTOR, TRUNC, UNIFORM, all_candidates
from .state import generator
from .stats import (
    FAMILY_SAMPLE_DEFAULT,
    as_float,
    draw_sample,
)
from .tensorpass import ORTHO_MAX_ELEMENTS, ORTHO_SUBSET, ortho_shapes, ortho_subset

__all__ = ["ORTHO_MAX_ELEMENTS", "ORTHO_SUBSET", "identify", "orthogonality"]

MIN_ELEMENTS = 16  # below this, no family or scale can be told apart: say so
FAMILY_SAMPLE = FAMILY_SAMPLE_DEFAULT  # see the module docstring for why 20k is enough
GOF_SAMPLE = 20_000  # KS on more than this rejects harmless float16/bfloat16 rounding
GOF_ALPHA = 1e-4
CONTAMINATION = 1e-4
SYSTEMATIC_TOL = 0.005  # relative std allowance: dtype rounding, resampling quirks
CONSISTENT_Z = 3.29  # two-sided 0.1%: "consistent" alternatives
# the best candidate is accepted up to this |z| (two-sided ~6e-5): a correctly drawn tensor
# misses the 0.1% interval once in a thousand, and "unknown" is the wrong answer then
ACCEPT_Z = 4.0
UNKNOWN_PRIOR = 0.2
LOG_STD_RANGE = math.log(1e6)  # flat prior width for "some other scale"

_KURTOSIS = {NORMAL: 0.0, TRUNC: -0.6345, UNIFORM: -1.2}
_TN_Z = math.erf(2.0 / math.sqrt(2.0))  # Φ(2) - Φ(-2)


class _Rng(Protocol):
    """The two draws identification makes (np.random.Generator's)."""

    def choice(self, a: int, size: int, replace: bool = ...) -> np.ndarray: ...

    def uniform(self, low: float, high: float, size: int) -> np.ndarray: ...


class _LazyRng:
    """np.random.default_rng(seed), created on the first draw: most kernels draw nothing
    (the sample is passed in, no ties to spread), and a Generator costs ~10 µs to seed."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng: np.random.Generator | None = None

    def _get(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = generator(self._seed)
        return self._rng

    def choice(self, a: int, size: int, replace: bool = True) -> np.ndarray:
        return self._get().choice(a, size, replace=replace)

    def uniform(self, low: float, high: float, size: int) -> np.ndarray:
        return self._get().uniform(low, high, size=size)


def _float32_exact(dtype: np.dtype) -> bool:
    """Every value of this dtype is a float32 (floats of 32 bits or fewer, bfloat16/float8)."""
    return dtype.kind in "fV" and dtype.itemsize <= 4


@dataclass(frozen=True)
class FamilyFit:
    posterior: dict[str, float]
    best: str
    params: dict[str, float]  # scale parameter of each family (std, bound, pre-trunc sigma)
    gof_pvalue: float  # KS p-value of the best family
    fits: bool  # best family passes the goodness-of-fit test


@dataclass(frozen=True)
class Orthogonality:
    orthogonal: bool
    gain: float
    relative_error: float
    layout: str  # "rows" (W·Wᵀ = g²I) or "columns"


def _contaminated_loglik(density: np.ndarray, scale: float) -> float:
    """Σ log((1-ε)·f(x) + ε·wide(x)); the wide part (σ = 10·scale) tolerates rare outliers."""
    return float(
        np.sum(np.log((1.0 - CONTAMINATION) * density + CONTAMINATION * _WIDE_DENSITY_CACHE(scale)))
    )


def _WIDE_DENSITY_CACHE(scale: float) -> float:  # noqa: N802 - a constant per tensor
    # a flat-ish floor: the N(0, (10·scale)²) density near its centre
    return 1.0 / (math.sqrt(2.0 * math.pi) * 10.0 * scale)


def _gauss_loglik(
    x2: np.ndarray,
    sigma: float,
    peak: float,
    floor: float,
    buf: np.ndarray,
    outside: np.ndarray | None = None,
) -> float:
    """Σ log((1-ε)·peak·exp(-x²/(2σ²)) + floor) over all values, the Gaussian part taken as 0
    where ``outside`` (a truncated family's zero density): _contaminated_loglik of the same
    density, computed in one reused buffer (no temporaries: perf, issue 14)."""
    np.multiply(x2, -0.5 / (sigma * sigma), out=buf)
    np.exp(buf, out=buf)
    buf *= (1.0 - CONTAMINATION) * peak
    if outside is not None:
        np.putmask(buf, outside, 0.0)
    buf += floor
    np.log(buf, out=buf)
    return float(np.sum(buf))


def fit_families(
    x: np.ndarray, std: float, rng: _Rng, *, x_sorted: np.ndarray | None = None
) -> FamilyFit:
    """Posterior over normal / truncated normal / uniform for zero-centred data x
    (``x_sorted``: the same values sorted, when the caller has them cheaper than a sort).

    The likelihoods are _contaminated_loglik's: Gaussian densities in one buffer, uniform ones
    in closed form (a uniform density takes one value inside its support and the floor outside,
    so its log-likelihood is n_in·log((1-ε)/(2b) + ε·w) + n_out·log(ε·w))."""
    if x.size > FAMILY_SAMPLE:  # callers pass FAMILY_SAMPLE values already: no draw then
        x = x[rng.choice(x.size, FAMILY_SAMPLE, replace=False)]
        x_sorted = None
    n = x.size
    ax = np.abs(x)
    edge = float(ax.max())
    x2 = np.multiply(x, x)
    buf = np.empty_like(x2)
    floor = CONTAMINATION * _WIDE_DENSITY_CACHE(std)
    log_floor = math.log(floor)
    lls: dict[str, float] = {}
    params: dict[str, float] = {}

    lls[NORMAL] = _gauss_loglik(x2, std, 1.0 / (math.sqrt(2 * math.pi) * std), floor, buf)
    params[NORMAL] = std

    best_u, best_b = -math.inf, math.sqrt(3.0) * std
    for b in {math.sqrt(3.0) * std, edge}:
        if b <= 0:
            continue
        inside = n if b >= edge else int(np.count_nonzero(ax <= b))
        ll = inside * math.log((1.0 - CONTAMINATION) / (2.0 * b) + floor) + (n - inside) * log_floor
        if ll > best_u:
            best_u, best_b = ll, b
    lls[UNIFORM], params[UNIFORM] = best_u, best_b

    best_t, best_s = -math.inf, std / TN2_STD_FACTOR
    for s in {std / TN2_STD_FACTOR, edge / 2.0}:
        if s <= 0:
            continue
        outside = None if 2.0 * s >= edge else ax > 2.0 * s
        peak = 1.0 / (math.sqrt(2 * math.pi) * s * _TN_Z)
        ll = _gauss_loglik(x2, s, peak, floor, buf, outside)
        if ll > best_t:
            best_t, best_s = ll, s
    lls[TRUNC], params[TRUNC] = best_t, best_s

    top = max(lls.values())
    weights = {k: math.exp(v - top) for k, v in lls.items()}
    total = sum(weights.values())
    posterior = {k: w / total for k, w in weights.items()}
    best = max(posterior, key=posterior.__getitem__)
    p = _gof(x, best, params[best], rng, x_sorted=x_sorted)
    return FamilyFit(
        posterior=posterior, best=best, params=params, gof_pvalue=p, fits=p >= GOF_ALPHA
    )


def _family_cdf(family: str, scale: float) -> Callable[[np.ndarray], np.ndarray]:
    """The cdf of a fitted family, vectorised (normal, uniform ±scale, normal truncated at
    ±2·scale)."""
    if family == NORMAL:
        return lambda v: norm_cdf(v / scale)
    if family == UNIFORM:
        return lambda v: np.clip((v + scale) / (2.0 * scale), 0.0, 1.0)
    lo = 0.5 * math.erfc(2.0 / math.sqrt(2.0))  # Φ(-2)
    return lambda v: np.clip((norm_cdf(v / scale) - lo) / _TN_Z, 0.0, 1.0)


def _gof(
    x: np.ndarray,
    family: str,
    scale: float,
    rng: _Rng,
    *,
    x_sorted: np.ndarray | None = None,
) -> float:
    if x.size > GOF_SAMPLE:
        x = x[rng.choice(x.size, GOF_SAMPLE, replace=False)]
        x_sorted = None
    # quantized values (int8 dequantized, bf16) tie a lot: spread each tie over its step
    xs = np.sort(x) if x_sorted is None else x_sorted
    n_unique = int(np.count_nonzero(xs[1:] != xs[:-1])) + 1  # distinct values
    if n_unique < x.size / 4 and n_unique > 1:
        gaps = np.diff(xs)
        step = float(np.median(gaps[gaps != 0]))
        x = np.sort(x + rng.uniform(-step / 2, step / 2, size=x.size))
    else:
        x = xs  # already sorted: no second sort of the same values
    return ks_pvalue(x.size, ks_statistic_of(x, _family_cdf(family, scale)))


# ----------------------------------------------------------------------------- closed forms
# Normal cdf without scipy: erfc by the Chebyshev fit of Numerical Recipes (erfcc, fractional
# error < 1.2e-7 everywhere). A cdf error of 1.2e-7 moves the KS statistic of 20k values by at
# most that, which moves a p-value near the 1e-4 threshold by < 0.1% (tests/test_stats_fused.py
# compares with scipy).
_ERFC_COEF = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def erfc(x: np.ndarray) -> np.ndarray:
    # in place, in the order of the formula: the same values, without ten temporaries
    z: np.ndarray = np.abs(x)
    t = np.multiply(z, 0.5)
    t += 1.0
    np.divide(1.0, t, out=t)  # t = 1 / (1 + z/2)
    poly = np.full_like(t, _ERFC_COEF[-1])
    for c in _ERFC_COEF[-2::-1]:
        poly *= t
        poly += c
    np.multiply(z, z, out=z)
    np.negative(z, out=z)
    z += poly
    np.exp(z, out=z)
    z *= t  # erfc(|x|)
    np.subtract(2.0, z, out=z, where=np.asarray(x) < 0)  # erfc(-x) = 2 - erfc(x)
    return z


def norm_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) = erfc(-z/√2)/2."""
    return 0.5 * erfc(-np.asarray(z, dtype=np.float64) / math.sqrt(2.0))


def ks_statistic(cdf_sorted: np.ndarray) -> float:
    """Two-sided one-sample KS statistic D from the model cdf at the sorted sample."""
    n = cdf_sorted.size
    i = np.arange(1, n + 1, dtype=np.float64)
    d_plus = float(np.max(i / n - cdf_sorted))
    d_minus = float(np.max(cdf_sorted - (i - 1) / n))
    return max(d_plus, d_minus, 0.0)


KS_BLOCK = 16  # values per block of the bounded KS search (ks_statistic_of)
_KS_OFFSETS = np.arange(KS_BLOCK)
_MAX = np.maximum.reduce  # np.max's own reduction, without its wrapper (~2 us a call)


def ks_statistic_of(x_sorted: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    """``ks_statistic(cdf(x_sorted))``, the same number, with the cdf evaluated where the maximum
    can be only (perf, issue 14).

    The cdf F is evaluated at the first value of every block of KS_BLOCK sorted values; within
    block [a, b] F lies in [F(x_a), F(x_b)] (F is non-decreasing), so i/n - F(x_i) <= b/n - F(x_a)
    and F(x_i) - (i-1)/n <= F(x_b) - (a-1)/n there. Blocks whose bound cannot beat the deviation
    already seen at the evaluated points are skipped; the others are evaluated in full. Every
    deviation that can be the maximum is thus computed by the same formula as ks_statistic, and
    D is identical; on a fitting family ~7% of the 20k values are evaluated, ~2x faster."""
    n = x_sorted.size
    nb = -(-n // KS_BLOCK)
    if nb < 8:
        return ks_statistic(cdf(x_sorted))
    starts, knots, hi_start, lo_start, hi_end = _ks_grid(n)
    fk = cdf(x_sorted[knots])  # F at every block start, and at the last value
    f_start, f_next = fk[:-1], fk[1:]  # F(x_b) <= F(next block's start) (the last: F(x_{n-1}))
    seen = max(
        float(_MAX(hi_start - f_start)),
        float(_MAX(f_start - lo_start)),
        float(fk[-1] - (n - 1) / n),
        float(1.0 - fk[-1]),
    )
    bound = np.maximum(hi_end - f_start, f_next - lo_start)
    todo = np.flatnonzero(bound >= seen)
    if todo.size == 0:
        return max(seen, 0.0)
    idx = (starts[todo][:, None] + _KS_OFFSETS[None, :]).ravel()
    if todo[-1] == nb - 1:  # only the last block can run past the end
        idx = idx[idx < n]
    f = cdf(x_sorted[idx])
    i = idx + 1.0
    d_plus = float(_MAX(i / n - f))
    d_minus = float(_MAX(f - idx / n))
    return max(seen, d_plus, d_minus, 0.0)


@lru_cache(maxsize=8)
def _ks_grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ks_statistic_of's block grid for n values, a pure function of n (the sample size is the
    same on nearly every tensor): block starts, the knots (starts and the last index), the
    rank terms (start + 1)/n and start/n at the starts, and (end + 1)/n at the blocks' ends.
    The same expressions as computed inline before, so the same numbers."""
    starts = np.arange(0, n, KS_BLOCK)
    ends = np.minimum(starts + KS_BLOCK, n) - 1  # last index of each block
    knots = np.append(starts, n - 1)
    i_start = starts + 1.0  # 1-based ranks
    out = (starts, knots, i_start / n, starts / n, (ends + 1.0) / n)
    for a in out:
        a.flags.writeable = False
    return out


@lru_cache(maxsize=4)
def _log_factorials(n: int) -> np.ndarray:
    out = np.zeros(n + 1)
    np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)), out=out[1:])
    return out


def smirnov_sf(n: int, d: float) -> float:
    """Exact P(D+_n >= d), the one-sided KS tail (Birnbaum & Tingey 1951), summed in log space:
    d Σ_{j=0}^{⌊n(1-d)⌋} C(n,j) (1-d-j/n)^(n-j) (d+j/n)^(j-1)."""
    if d <= 0.0:
        return 1.0
    if d >= 1.0:
        return 0.0
    jmax = math.floor(n * (1.0 - d))
    j = np.arange(0, jmax + 1, dtype=np.float64)
    lf = _log_factorials(n)
    ji = j.astype(np.int64)
    a = 1.0 - d - j / n
    # log(max(a, 0)) with -inf where a <= 0, as np.log gives it, without np.errstate's
    # per-call cost (its context manager is a sizeable share of this function on 20k values)
    log_a = np.full_like(a, -np.inf)
    np.log(a, out=log_a, where=a > 0.0)
    logs = lf[n] - lf[ji] - lf[n - ji] + (n - j) * log_a + (j - 1.0) * np.log(d + j / n)
    top = float(np.max(logs))
    if not math.isfinite(top):
        return 0.0
    return float(min(1.0, d * math.exp(top) * float(np.sum(np.exp(logs - top)))))


def ks_pvalue(n: int, d: float) -> float:
    """Two-sided p-value of the one-sample KS statistic, as scipy's ``kstest`` computes it where
    the decision is taken: 2·smirnov(n, d) (exact) once n·d² >= 2.2, the branch scipy itself uses
    there (p <~ 0.025, which includes the 1e-4 threshold); above, where only the reported number
    is affected, the Kolmogorov limit with Stephens' finite-n correction (within 3% of scipy for
    n >= 50, tests/test_stats_fused.py)."""
    if n <= 0:
        return float("nan")
    if d <= 0.0:
        return 1.0
    if n * d * d >= 2.2:
        return min(1.0, 2.0 * smirnov_sf(n, d))
    sq = math.sqrt(n)
    lam = (sq + 0.12 + 0.11 / sq) * d
    total = 0.0
    for k in range(1, 101):
        term = 2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-16:
            break
    return float(min(1.0, max(0.0, total)))


def orthogonality(
    values: np.ndarray,
    tensor: WeightTensor,
    rng: np.random.Generator | None = None,
    *,
    seed: int = 0,
    stats: TensorStats | None = None,
) -> Orthogonality | None:
    """Whether some 2-D flattening of the kernel has orthonormal rows or columns, times a gain.

    A (r, c) matrix w with r <= c (the transpose of a tall one) is orthogonal with gain g when
    w·wᵀ = g²·I. Then every subset of its rows is too, so the test reads ``ORTHO_SUBSET`` rows
    spread over the matrix (for a tall one, columns) and computes their Gram matrix exactly in
    float64: an orthogonal matrix gives g²·I up to its storage rounding, a random one misses by
    ~sqrt((k + 1)/c) (each off-diagonal term ~1/sqrt(c) of the diagonal), and the tolerance,
    min(base, 0.1/sqrt(max(r, c))), sits ~40x below that and far above rounding. Every row must
    carry the same energy too: with ``stats`` (from the full pass), Σx² over the whole tensor
    must be r·g² within the same tolerance, so a matrix whose other rows are scaled differently
    is not called orthogonal. Cost: k rows or columns read and a k×k product, whatever the size.
    ``rng`` is unused (kept for callers of the old signature)."""
    if values.ndim < 2 or values.size > ORTHO_MAX_ELEMENTS:
        return None
    itemsize = np.dtype(values.dtype).itemsize
    arr = np.asarray(values)
    energy = None
    if stats is not None and stats.n == stats.size and stats.n >= 2 and math.isfinite(stats.std):
        energy = (stats.n - 1) * stats.std**2 + stats.n * stats.mean**2
    best: Orthogonality | None = None
    for rows, cols in sorted(ortho_shapes(tuple(arr.shape), tensor)):
        if min(rows, cols) < 2:
            continue
        m = arr.reshape(rows, cols)
        short = min(rows, cols)
        idx = ortho_subset(short, ORTHO_SUBSET, seed)
        # (k, long side), in m[idx]'s or m[:, idx].T's layout (C order: the Gram product sums
        # in the same order). Columns of a C-ordered m by one take along axis 1, ~5x faster
        # than numpy's fancy indexing with a slice (row by row); take on any other layout
        # would first copy the whole tensor to C order
        if rows <= cols:
            sub = as_float(m[idx])
        elif m.flags.c_contiguous:
            sub = as_float(np.ascontiguousarray(m.take(idx, axis=1).T))
        else:
            sub = as_float(m[:, idx].T)
        cand = _ortho_decide(sub, rows, cols, itemsize, energy)
        if cand is None:
            continue
        if (
            best is None
            or cand.orthogonal
            or (not best.orthogonal and cand.relative_error < best.relative_error)
        ):
            best = cand
    return best


def _ortho_decide(
    sub: np.ndarray, rows: int, cols: int, itemsize: int, energy: float | None
) -> Orthogonality | None:
    """``sub``: k of the short side's vectors (rows of w, r <= c); orthogonal means their Gram
    matrix is g²·I and, when the tensor's total energy is known, that it is min(r, c)·g²."""
    layout = "columns" if rows > cols else "rows"
    k = sub.shape[0]
    gram = sub @ sub.T
    # the methods np.trace / np.linalg.norm (Frobenius: sqrt of the ravelled dot) call, without
    # their wrappers: the same numbers
    g2 = float(gram.trace()) / k
    if not g2 > 0 or not math.isfinite(g2):
        return None
    flat = gram.reshape(-1)
    flat[:: k + 1] -= g2  # the diagonal
    err = math.sqrt(float(flat.dot(flat))) / (g2 * math.sqrt(k))
    if energy is not None:
        err = max(err, abs(energy / (min(rows, cols) * g2) - 1.0))
    # a random (r, c) matrix misses by ~sqrt((k + 1)/c); rounding of an orthogonal one by
    # ~eps·sqrt(k/c): the tolerance sits between the two, whatever the size
    base = 2e-2 if itemsize <= 2 else 1e-3
    tol = min(base, 0.1 / math.sqrt(max(rows, cols)))
    return Orthogonality(
        orthogonal=err < tol, gain=math.sqrt(g2), relative_error=err, layout=layout
    )


STRUCTURED_MAX_ELEMENTS = 1 << 24
SPARSE_MIN_ZEROS = 0.05  # a continuous draw has no exact zeros: 5% of them is a choice


def structured_kernel(values: np.ndarray, tensor: WeightTensor) -> SchemeResult | None:
    """Identity / Dirac kernels (one equal non-zero per output unit) and sparse init (a share
    of exact zeros, the rest drawn): schemes defined by their structure, not by a std."""
    if values.ndim < 2 or values.size > STRUCTURED_MAX_ELEMENTS or values.size < 16:
        return None
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.floating) and arr.dtype.kind != "V":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            return None
    nonzero = arr != 0
    nz = int(np.count_nonzero(nonzero))
    if nz == 0:
        return None
    zero_share = 1.0 - nz / arr.size
    axis = tensor.unit_axis if tensor.unit_axis is not None else 0
    units = np.moveaxis(nonzero, axis % arr.ndim, 0).reshape(arr.shape[axis % arr.ndim], -1)
    per_unit = units.sum(axis=1)
    if per_unit.max() <= 1 and zero_share > 0.5:
        vals = as_float(arr[nonzero])
        if np.allclose(vals, vals[0], rtol=1e-3):
            gain = float(vals[0])
            kind = "identity" if arr.ndim == 2 else "dirac"
            return SchemeResult(
                rule=kind,
                distribution="structured",
                mode=None,
                gain=gain,
                expected_std=None,
                confidence=0.999,
                label=f"{kind} (gain {gain:.3g}, one tap per output unit)",
                evidence={"nonzero": nz, "units_with_a_tap": int(per_unit.sum())},
            )
    if SPARSE_MIN_ZEROS <= zero_share <= 0.99 and nz >= 16:
        vals = as_float(arr[nonzero])
        head = vals[:10_000]
        if np.unique(head).size < 0.5 * head.size:
            return None  # a coarse quantization lattice rounds to zero: not a sparse init
        sigma = float(np.sqrt(np.mean(vals**2)))
        return SchemeResult(
            rule="sparse",
            distribution="normal",
            mode=None,
            gain=None,
            expected_std=sigma * math.sqrt(1.0 - zero_share),
            confidence=0.9,
            label=f"sparse ({zero_share:.0%} zeros, non-zeros std {sigma:.3g})",
            evidence={"zero_share": round(zero_share, 4), "nonzero_std": sigma},
        )
    return None


def identify(
    values: np.ndarray,
    tensor: WeightTensor,
    stats: TensorStats,
    *,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    sample: np.ndarray | None = None,
) -> SchemeResult:
    """Identify the init scheme of one kernel (see the module docstring for the method)."""
    if stats.std == 0.0 or (stats.min == stats.max and math.isfinite(stats.min)):
        value = stats.min
        rule = "zeros" if value == 0 else "constant"
        return SchemeResult(
            rule=rule,
            distribution="constant",
            mode=None,
            gain=None,
            expected_std=0.0,
            confidence=1.0,
            label="zeros" if rule == "zeros" else f"constant {value:g}",
            evidence={"value": value},
        )
    if stats.n < MIN_ELEMENTS or not math.isfinite(stats.std):
        return SchemeResult(
            rule="unknown",
            distribution="unknown",
            mode=None,
            gain=None,
            expected_std=None,
            confidence=0.0,
            label=f"too few finite values ({stats.n}) to identify",
            evidence={"n": stats.n},
        )
    rng = _LazyRng(seed + 7919)
    evidence: dict[str, Any] = {}

    # structured kernels need >= 5% exact zeros; the (stratified) sample shows when a tensor has
    # far fewer, and then the full-tensor scan (~25 ms per 10M elements, GIL-bound on bfloat16)
    # is skipped. Exact when the sample is the whole tensor; otherwise the sampled zero share
    # would have to be off by > 7 standard errors even at a 4096-element sample (perf, issue 6)
    few_zeros = (
        sample is not None
        and sample.size >= 1024
        and np.count_nonzero(sample == 0) < 0.5 * SPARSE_MIN_ZEROS * sample.size
    )
    structured = (
        structured_kernel(values, tensor)
        if tensor.role is not Role.EMBEDDING and not few_zeros
        else None
    )
    if structured is not None:
        return structured

    ortho_fit = (
        orthogonality(values, tensor, seed=seed, stats=stats)
        if tensor.role is not Role.EMBEDDING
        else None
    )
    if ortho_fit is not None:
        evidence["orthogonality_error"] = ortho_fit.relative_error
        if ortho_fit.orthogonal:
            return SchemeResult(
                rule="orthogonal",
                distribution="orthogonal",
                mode=None,
                gain=ortho_fit.gain,
                expected_std=None,
                confidence=0.999,
                label=f"orthogonal (gain {ortho_fit.gain:.3g})",
                evidence=evidence,
            )

    if sample is None:  # callers that already drew the stats sample pass it in
        sample, _ = draw_sample(values, FAMILY_SAMPLE, seed)
    x = sample - stats.mean
    x_sorted = None
    if _float32_exact(values.dtype) and sample.size <= GOF_SAMPLE:
        # the sample holds float32 values exactly: sorting them as float32 (~2x faster) and
        # subtracting the mean afterwards gives the same sorted x (x ↦ x - mean is monotone)
        x_sorted = np.sort(sample.astype(np.float32)).astype(np.float64)
        x_sorted -= stats.mean
    fam = fit_families(x, stats.std, rng, x_sorted=x_sorted)
    evidence["family_posterior"] = {k: round(v, 4) for k, v in fam.posterior.items()}
    evidence["gof_pvalue"] = fam.gof_pvalue
    n = stats.n
    log_s = math.log(stats.std)
    evidence["std_interval_95"] = _std_interval(stats.std, n, _KURTOSIS.get(fam.best, 0.0))

    if not fam.fits:
        return SchemeResult(
            rule="unknown",
            distribution="unknown",
            mode=None,
            gain=None,
            expected_std=None,
            confidence=0.0,
            label=f"no family fits (KS p={fam.gof_pvalue:.2g}, "
            f"excess kurtosis {stats.excess_kurtosis:.2f})",
            evidence=evidence,
        )

    scored: list[tuple[float, float, Candidate]] = []  # (weight, z, candidate)
    # per family: (posterior, standard error of log-std, the normal density's peak at that se)
    per_family: dict[str, tuple[float, float, float]] = {}
    for family, kurt in _KURTOSIS.items():
        se = math.sqrt((2.0 + kurt) / (4.0 * n) + SYSTEMATIC_TOL**2)
        per_family[family] = (fam.posterior.get(family, 0.0), se, math.sqrt(2 * math.pi) * se)
    for cand, prior in all_candidates(tensor, metadata):
        fit = per_family.get(cand.distribution)
        if fit is None or fit[0] < 1e-12 or not cand.expected_std > 0:
            continue
        p_family, se, norm = fit
        z = (log_s - math.log(cand.expected_std)) / se
        dens = math.exp(-0.5 * z * z) / norm
        scored.append((prior * p_family * dens, z, cand))
    unknown_weight = UNKNOWN_PRIOR / LOG_STD_RANGE
    total = unknown_weight + sum(w for w, _, _ in scored)
    scored.sort(key=lambda t: -t[0])

    if not scored or scored[0][0] <= unknown_weight or abs(scored[0][1]) > ACCEPT_Z:
        closest = min(scored, key=lambda t: abs(t[1])) if scored else None
        if closest is not None:
            evidence["closest"] = {
                "label": closest[2].label,
                "expected_std": closest[2].expected_std,
                "z": round(closest[1], 2),
            }
        return SchemeResult(
            rule="unknown",
            distribution=fam.best if fam.posterior[fam.best] > 0.9 else "unknown",
            mode=None,
            gain=None,
            expected_std=None,
            confidence=round(unknown_weight / total, 4),
            label=f"no known scheme predicts std {stats.std:.4g}",
            evidence=evidence,
        )

    best_w, best_z, best = scored[0]
    same = sum(
        w for w, _, c in scored if c.rule == best.rule and c.distribution == best.distribution
    )
    confidence = same / total
    alternatives: list[Candidate] = []
    seen = {(best.rule, best.distribution, best.mode, round(best.gain, 4))}
    for w, z, c in scored[1:]:
        key = (c.rule, c.distribution, c.mode, round(c.gain, 4))
        # consistent = inside the interval, or as close as the accepted best one (an unlucky
        # draw moves every candidate's z together)
        if key in seen or abs(z) > max(CONSISTENT_Z, abs(best_z) + 0.5) or w < 0.01 * best_w:
            continue
        seen.add(key)
        alternatives.append(c)
        if len(alternatives) >= 6:
            break
    evidence["z"] = round(best_z, 3)
    return SchemeResult(
        rule=best.rule,
        distribution=best.distribution,
        mode=best.mode,
        gain=best.gain,
        expected_std=best.expected_std,
        confidence=round(confidence, 4),
        label=best.label,
        alternatives=tuple(alternatives),
        evidence=evidence,
    )


def _std_interval(std: float, n: int, kurtosis: float) -> list[float]:
    se = math.sqrt(max(2.0 + kurtosis, 0.1) / (4.0 * n))
    return [std * math.exp(-1.96 * se), std * math.exp(1.96 * se)]
