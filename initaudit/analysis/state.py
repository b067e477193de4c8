"""Trained or freshly initialized? Per tensor and per file, with the evidence in numbers.

An initializer draws every entry independently from one zero-mean distribution. Training breaks
that in ways that are measurable without knowing the data:

- **heavy tails**: excess kurtosis well above 0 (normal 0, truncated normal −0.63, uniform −1.2);
  gradient updates concentrate on a few large weights.
- **a non-zero mean**: |mean| several standard errors from 0 and more than 10% of the std.
- **spectral structure**: the top singular value of an i.i.d. m×n matrix with entry std s sits at
  the Marchenko-Pastur / Bai-Yin edge s·(√m + √n) (within a few % for m, n ≥ 16, whatever the
  family); learnt features add singular values far above it.
- **per-unit scale spread**: the std of each output unit's weights varies, for i.i.d. entries,
  by a relative sqrt((2 + κ)/(4k)) for k weights per unit; trained units differ far more.

The spectrum and the unit spread are computed on a random block of at most 384 × 384 entries
(rows and columns subsampled: a sub-block of an i.i.d. matrix is i.i.d., so the same edge
applies), which keeps the cost bounded on any tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..model import WeightTensor
from .results import SchemeResult, State, StateResult, TensorStats, UnitCheck
from .stats import as_float, as_float32_exact
from .units import units_matrix

BLOCK = 384  # rows and columns of the block the spectrum / unit spread are measured on
MIN_ELEMENTS = 256  # below this the evidence is too weak either way: "unknown"
MIN_SIDE = 16
# thresholds (each calibrated on framework initializers of every family, sizes 16..4096,
# where none of them fires: see tests/test_state.py)
SPECTRAL_STRONG, SPECTRAL_WEAK = 1.5, 1.25
SPREAD_STRONG, SPREAD_WEAK = 3.0, 2.0
KURTOSIS_STRONG, KURTOSIS_WEAK = 1.0, 0.5
MEAN_EFFECT, MEAN_Z = 0.1, 5.0
# |x| range in which the block's float32 squares neither over- nor underflow (else float64)
F32_SAFE = (1e-15, 1e15)
# a file is "trained" when at least this share of its decided kernels is, "initialized" when at
# most the second share is (a fresh head on a trained backbone is still a trained file)
FILE_TRAINED_SHARE, FILE_INIT_SHARE = 0.5, 0.1


@dataclass(frozen=True)
class _Block:
    """The centred (units, weights) block and the statistics its two tests need."""

    matrix: np.ndarray  # centred, float32 (float64 for wider stored types)
    std: float  # of all its entries (ddof 0)
    unit_std: np.ndarray  # std of each row (unit), ddof 0, float64


def _block(
    values: np.ndarray, tensor: WeightTensor, seed: int, *, wide: bool = False
) -> _Block | None:
    """A (units, weights) block of at most BLOCK x BLOCK entries, centred, or None; its rows
    and columns are drawn by ``generator(seed)`` (block_index).

    Gathered in the stored type and widened to float32 only (exact for every type of 32 bits or
    fewer; float64 when ``wide``: magnitudes whose squares would leave float32's range); the row
    sums and sums of squares come from one BLAS product and one einsum pass, not from float64
    copies and np.std (perf, issue 14)."""
    matrix: np.ndarray | None
    if values.ndim == 2:  # a view, never a copy of a big (possibly memmapped) matrix
        matrix = values.T if tensor.unit_axis is not None and tensor.unit_axis % 2 == 1 else values
    else:
        matrix = units_matrix(values, tensor)  # None without a unit structure
    if matrix is None or min(matrix.shape) < MIN_SIDE:
        return None
    if isinstance(matrix, np.memmap):  # a plain view: memmap's __getitem__ costs per call
        matrix = matrix.view(np.ndarray)
    raw = _gather_block(matrix, seed)  # always a fresh array: widened/centred in place
    if wide:
        block = as_float(raw)
    elif raw.dtype.kind == "V" and raw.dtype.name == "bfloat16":
        # bfloat16 is float32's top half: a bit shift widens it exactly, 3x faster than
        # ml_dtypes' cast (as the fused pass does)
        block = np.left_shift(raw.view(np.uint16), 16, dtype=np.uint32).view(np.float32)
    else:
        block = as_float32_exact(raw)
    if block is raw and not block.flags.writeable:
        block = block.copy()
    k = block.shape[1]
    sums = block @ _ones(k, block.dtype)  # row sums: a NaN or inf anywhere shows here
    if not np.isfinite(sums).all() and not np.isfinite(block).all():
        return None  # (finite sums can overflow to inf: then the exact check decides)
    # all-zero (dead) units are a defect of their own (IA204), not a trace of training; a zero
    # row sums to exactly 0, and the few rows that do are checked element by element
    maybe_zero = np.flatnonzero(sums == 0)
    if maybe_zero.size:
        dead = maybe_zero[~np.any(block[maybe_zero] != 0, axis=1)]
        if dead.size:
            keep = np.ones(block.shape[0], dtype=bool)
            keep[dead] = False
            block = block[keep]
            sums = sums[keep]
    if block.shape[0] < MIN_SIDE:
        return None
    n = block.size
    mean = float(np.sum(sums, dtype=np.float64)) / n
    block -= block.dtype.type(mean)  # in place: the block is our own copy
    squares = np.einsum("ij,ij->i", block, block)
    row_ms = squares.astype(np.float64) / k
    # the centred rows' means from the raw sums: float32 sums of k values are off by ~1e-7 of
    # Σ|x|, negligible against a row's spread unless the mean dwarfs it: then sum again
    if mean * mean > 1e-2 * float(np.mean(row_ms)):
        row_mean = (block @ _ones(k, block.dtype)).astype(np.float64) / k
    else:
        row_mean = sums.astype(np.float64) / k - mean
    var = row_ms - row_mean * row_mean
    # one-pass variance cancels when a row's mean dominates its spread: redo those rows in two
    # passes (float64), the way np.std computes them
    shaky = np.flatnonzero(row_mean * row_mean > 0.5 * row_ms)
    if shaky.size:
        var[shaky] = np.var(block[shaky].astype(np.float64), axis=1)
    total = float(np.sum(row_mean)) / block.shape[0]
    std = math.sqrt(max(float(np.sum(squares, dtype=np.float64)) / n - total * total, 0.0))
    return _Block(matrix=block, std=std, unit_std=np.sqrt(np.maximum(var, 0.0)))


def _gather_block(matrix: np.ndarray, seed: int) -> np.ndarray:
    """``_take_block(matrix, *block_index(m, n, seed))``: the same values in the same memory
    layout (C order, or the transpose of the stored C order), by one 1-D take through a cached
    flat index when the matrix or its transpose is C-contiguous."""
    m, n = (int(d) for d in matrix.shape)
    shape = (min(BLOCK, m), min(BLOCK, n))
    if matrix.flags.c_contiguous:
        return matrix.reshape(-1).take(_flat_index(m, n, seed, False)).reshape(shape)
    if matrix.T.flags.c_contiguous:  # units along columns: gathered from the stored base
        picks = _flat_index(m, n, seed, True)
        return matrix.T.reshape(-1).take(picks).reshape(shape[::-1]).T
    return _take_block(matrix, *block_index(m, n, seed))


@lru_cache(maxsize=16)
def block_index(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted rows and columns of an (m, n) matrix's block, drawn by ``generator(seed)``
    (rows first). Read-only and cached: a pure function of its arguments, and a model repeats a
    few shapes (a Generator, two choices and two sorts: ~60 us a kernel, perf issue 14)."""
    rng = generator(seed)
    rows = np.sort(rng.choice(m, min(BLOCK, m), replace=False))
    cols = np.sort(rng.choice(n, min(BLOCK, n), replace=False))
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


@lru_cache(maxsize=8)  # <= 1.2 MB each
def _flat_index(m: int, n: int, seed: int, transposed: bool) -> np.ndarray:
    """Positions of block_index's block in the C-order buffer of the (m, n) matrix, or, when
    ``transposed``, of its (n, m) transpose (the tensor as stored when its units are columns),
    in the order _take_block returns: one 1-D take gathers the block ~2x faster than its two
    takes, whose first copies whole rows (perf, issue 14). int32 when every position fits:
    numpy's take reads half the index bytes (~20% faster on a 384 x 384 block)."""
    rows, cols = block_index(m, n, seed)
    rows, cols = rows.astype(np.int64), cols.astype(np.int64)  # products never overflow
    if transposed:  # the (cols, rows) block of the stored (n, m) array, C order
        flat = cols[:, None] * m + rows[None, :]
    else:
        flat = rows[:, None] * n + cols[None, :]
    out: np.ndarray = flat.reshape(-1).astype(np.int32 if m * n < 2**31 else np.intp)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def _seed_sequence(seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed)


def generator(seed: int) -> np.random.Generator:
    """``np.random.default_rng(seed)``, the same stream, in a third of the time: the seed's
    SeedSequence (its hashing is most of default_rng's ~18 µs) is made once per seed."""
    return np.random.Generator(np.random.PCG64(_seed_sequence(seed)))


@lru_cache(maxsize=8)
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    out: np.ndarray = np.ones(n, dtype=dtype)
    out.flags.writeable = False
    return out


TAKE_MAX_ELEMENTS = 1 << 22  # the row (or column) slab a two-step gather may copy first


def _take_block(matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[np.ix_(rows, cols)]`` (the same elements, in the same order), gathered in two
    one-axis takes when the intermediate slab is small: ~5x faster than numpy's 2-D fancy
    indexing, which costs ~1 ms per 384 x 384 block (perf, issue 14)."""
    if not matrix.flags.c_contiguous and matrix.T.flags.c_contiguous:
        # a transposed view (units along columns): numpy's take would first copy the whole
        # tensor to C order; gather from the contiguous base and transpose the small block
        return _take_block(matrix.T, cols, rows).T
    by_rows = rows.size * matrix.shape[1]
    by_cols = cols.size * matrix.shape[0]
    out: np.ndarray
    if min(by_rows, by_cols) > TAKE_MAX_ELEMENTS or not matrix.flags.c_contiguous:
        out = matrix[np.ix_(rows, cols)]
    elif by_rows <= TAKE_MAX_ELEMENTS or by_rows <= by_cols:
        # rows first whenever the slab fits: it reads only the chosen rows, while picking
        # columns first touches nearly every cache line of the whole tensor
        out = matrix.take(rows, axis=0).take(cols, axis=1)
    else:
        out = matrix.take(cols, axis=1).take(rows, axis=0)
    return out


# ----------------------------------------------------------------------------- the spectrum
POWER_STEPS = 40
# the Lanczos screen (spectral_ratio): the share of start vectors on which it may wrongly
# certify, its step limit, and the margin under the threshold that absorbs float32 rounding
SCREEN_DELTA = 1e-6
SCREEN_MAX_STEPS = 32
SCREEN_MARGIN = 1e-3


@lru_cache(maxsize=8)
def _start(n: int) -> np.ndarray:
    """The start vector of both iterations: N(0, I) from a fixed seed (a uniform direction)."""
    out = np.asarray(np.random.default_rng(7).standard_normal(n), dtype=np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=8)
def _unit_start(n: int) -> np.ndarray:
    """_start(n) normalised (in float32, as the screen's first basis vector): computed once."""
    v0 = _start(n)
    out: np.ndarray = v0 / np.float32(np.linalg.norm(v0))
    out.flags.writeable = False
    return out


def spectral_ratio(block: np.ndarray, std: float | None = None) -> float | None:
    """Top singular value over the Bai-Yin edge s·(√m + √n) of an i.i.d. matrix of that std.

    The reference estimate is 40 steps of the power iteration on BᵀB (a full SVD costs ~100x
    more): it converges fast when a learnt direction stands out and slightly under-estimates an
    i.i.d. edge, which only makes the test more conservative (~0.7 ms on 384 x 384). A Lanczos
    screen settles the common case, a block without structure, in ~12 steps instead
    (_lanczos_screen): it returns only when λ_max(BᵀB) is below the weak threshold except on a
    1e-6 share of start vectors, and then the power estimate (a Rayleigh quotient, never above
    λ_max) is below it too: no indicator, as the 40 steps would conclude. The ratio reported is
    then the screen's top Ritz value (also a lower bound of the truth; on i.i.d. blocks within a
    few hundredths of the 40-step estimate, either side, measured on the benchmark checkpoints
    and sample models). Whenever the screen cannot certify that (trained kernels), the 40 power
    steps run and decide, exactly as before.
    """
    s = float(block.std()) if std is None else std
    if not s > 0:
        return None
    # float32: half the traffic of float64; the top singular value moves by ~1e-6 relative,
    # far below the 1.25 / 1.5 thresholds' margins
    b = np.asarray(block, dtype=np.float32)
    m, n = b.shape
    edge = s * (math.sqrt(m) + math.sqrt(n))
    theta = _lanczos_screen(b, (SPECTRAL_WEAK * edge) ** 2 * (1.0 - SCREEN_MARGIN))
    if theta is not None:
        return math.sqrt(theta) / edge
    v = np.array(_start(n))
    for _ in range(POWER_STEPS):
        v = b.T @ (b @ v)
        v /= np.linalg.norm(v) or 1.0
    top = float(np.linalg.norm(b @ v))
    return top / edge


def _lanczos_screen(b: np.ndarray, mu: float) -> float | None:
    """The top Ritz value of A = aᵀa (a = B or Bᵀ, whichever gives the smaller A) once it is
    certain, up to a SCREEN_DELTA share of start vectors, that λ_max(A) < ``mu``; else None.

    Why it is safe (an a-posteriori bound, exact arithmetic; float32 rounding moves the numbers
    by ~1e-6, which SCREEN_MARGIN covers). After k Lanczos steps from the unit vector q₁ (with
    full reorthogonalization), the characteristic polynomial p_k of the tridiagonal T_k
    satisfies p_k(A)q₁ = β₁⋯β_k·q_{k+1}, so ‖p_k(A)q₁‖ = β₁⋯β_k. Write q₁ = Σ γᵢxᵢ over A's
    eigenvectors. While every Ritz value (root of p_k) is below μ, p_k is positive and increasing
    on [μ, ∞), so an eigenvalue λ₁ >= μ would give |γ₁|·p_k(μ) <= |γ₁|·p_k(λ₁) <= β₁⋯β_k.
    Certifying when r = β₁⋯β_k / p_k(μ) <= t, with t = δ·√(π/(2d)), therefore needs
    |γ₁| <= t, and for q₁ uniform on the sphere of R^d (a normalised Gaussian draw)
    P(|γ₁| <= t) <= t·√(2d/π) = δ (the density of one coordinate is at most √(d/(2π)),
    Gautschi's inequality). The event involves γ₁ only, so stopping at whatever step the bound
    is first met is covered too (no union over steps). p_k(μ) and the Ritz values' position
    come from the LDLᵀ pivots of μI - T_k: all positive iff every Ritz value is below μ,
    and their product is p_k(μ); O(1) per step. On an i.i.d. 384 x 384 block r drops ~0.6
    decades per step and certifies at k ~ 12, where 40 power steps cost ~3x more.
    """
    a = b if b.shape[1] <= b.shape[0] else b.T
    d = a.shape[1]
    if d < 2 or not mu > 0:
        return None
    log_t = math.log(SCREEN_DELTA * math.sqrt(math.pi / (2.0 * d)))
    steps = min(SCREEN_MAX_STEPS, d)
    basis = np.empty((steps, d), dtype=np.float32)
    basis[0] = _unit_start(d)
    aq = np.empty(a.shape[0], dtype=np.float32)
    w = np.empty(d, dtype=np.float32)
    alphas: list[float] = []
    betas: list[float] = []
    pivot = 1.0  # LDLᵀ pivot of μI - T_k (the ratio p_k(μ)/p_{k-1}(μ))
    log_r = 0.0  # log(β₁⋯β_k) - log p_k(μ)
    at = a.T
    for j in range(steps):
        np.matmul(a, basis[j], out=aq)
        np.matmul(at, aq, out=w)
        # w minus its projection on the basis, twice (classical Gram-Schmidt twice keeps the
        # basis orthonormal to working precision); α_j is the coefficient on q_j
        done = basis[: j + 1]
        h = done @ w
        w -= h @ done
        h2 = done @ w
        w -= h2 @ done
        alpha = float(h[j] + h2[j])
        alphas.append(alpha)
        prev = betas[-1] if betas else 0.0
        pivot = (mu - alpha) - (prev * prev / pivot if j else 0.0)
        if not pivot > 0:
            return None  # a Ritz value reached μ: near or above the threshold, the power decides
        beta = math.sqrt(float(np.dot(w, w)))
        k = j + 1
        if k == d or not beta > 1e-6 * mu:
            # the Krylov space is invariant (all of R^d, or a degenerate block): θ is exact
            # only in the first case; otherwise the power iteration decides
            return _top_ritz(alphas, betas) if k == d else None
        log_r += math.log(beta / pivot)
        if log_r <= log_t:
            return max(_top_ritz(alphas, betas), 0.0)
        betas.append(beta)
        if k < steps:
            np.multiply(w, np.float32(1.0 / beta), out=basis[k])
    return None


def _top_ritz(alphas: list[float], betas: list[float]) -> float:
    """Largest eigenvalue of the symmetric tridiagonal matrix (alphas; betas)."""
    k = len(alphas)
    t = np.zeros((k, k))
    flat = t.reshape(-1)  # the same matrix as np.diag + fancy-indexed off-diagonals, cheaper
    flat[:: k + 1] = alphas
    if k > 1:
        flat[1 :: k + 1] = betas[: k - 1]
        flat[k :: k + 1] = betas[: k - 1]
    return float(np.linalg.eigvalsh(t)[-1])


def unit_spread_ratio(block: np.ndarray | _Block, kurtosis: float) -> float | None:
    """Observed relative spread of per-unit stds over the spread i.i.d. entries would give."""
    if isinstance(block, _Block):
        k = block.matrix.shape[1]
        per_unit = block.unit_std
    else:
        k = block.shape[1]
        per_unit = block.std(axis=1)
    # mean and std (ddof 0) of the per-unit stds, without np.std's wrapper cost (perf, issue 14)
    mean_std = float(np.add.reduce(per_unit)) / per_unit.size
    if not mean_std > 0:
        return None
    dev = per_unit - mean_std
    observed = math.sqrt(float(np.dot(dev, dev)) / per_unit.size) / mean_std
    kappa = max(kurtosis if math.isfinite(kurtosis) else 0.0, -1.2)
    expected = math.sqrt((2.0 + kappa) / (4.0 * k))
    return observed / expected if expected > 0 else None


def classify_tensor(
    values: np.ndarray,
    tensor: WeightTensor,
    stats: TensorStats,
    scheme: SchemeResult | None,
    units: UnitCheck,
    *,
    seed: int = 0,
) -> StateResult:
    """Decide whether one kernel looks trained, freshly initialized, or cannot be told."""
    if units.constant or scheme is not None and scheme.rule in ("zeros", "constant"):
        return StateResult(
            State.INITIALIZED,
            0.9,
            "constant tensor (set, not learnt)",
            {"value": units.constant_value},
        )
    if stats.n < MIN_ELEMENTS or not math.isfinite(stats.std) or stats.std == 0:
        return StateResult(
            State.UNKNOWN, 0.0, f"too few values ({stats.n}) to tell", {"n": stats.n}
        )
    if scheme is not None and scheme.rule == "orthogonal":
        return StateResult(
            State.INITIALIZED,
            0.99,
            "exactly orthogonal (training breaks this)",
            {"orthogonality_error": scheme.evidence.get("orthogonality_error")},
        )
    if scheme is not None and scheme.rule in ("identity", "dirac", "sparse"):
        # exact zeros and equal taps do not survive gradient descent
        return StateResult(
            State.INITIALIZED, 0.95, f"{scheme.label} (training breaks this)", dict(scheme.evidence)
        )
    evidence: dict[str, Any] = {}
    strong: list[str] = []
    weak: list[str] = []

    kurt = stats.excess_kurtosis
    if math.isfinite(kurt):
        evidence["excess_kurtosis"] = round(kurt, 3)
        noise = 6.0 * math.sqrt(24.0 / stats.n)
        if kurt > KURTOSIS_STRONG + noise:
            strong.append(f"heavy tails (excess kurtosis {kurt:.2f})")
        elif kurt > KURTOSIS_WEAK + noise:
            weak.append(f"heavier tails than any init family (excess kurtosis {kurt:.2f})")

    effect = abs(stats.mean) / stats.std
    z = effect * math.sqrt(stats.n)
    evidence["mean_over_std"] = round(effect, 4)
    if effect > MEAN_EFFECT and z > MEAN_Z:
        weak.append(f"non-zero mean ({stats.mean:+.3g}, {effect:.2f} std)")

    amax = max(abs(stats.min), abs(stats.max))
    block = _block(values, tensor, seed + 104729, wide=not F32_SAFE[0] <= amax <= F32_SAFE[1])
    if block is not None:
        ratio = spectral_ratio(block.matrix, block.std)
        if ratio is not None:
            evidence["top_sv_over_mp_edge"] = round(ratio, 3)
            if ratio > SPECTRAL_STRONG:
                strong.append(f"top singular value {ratio:.2f}x the random-matrix edge")
            elif ratio > SPECTRAL_WEAK:
                weak.append(f"top singular value {ratio:.2f}x the random-matrix edge")
        spread = unit_spread_ratio(block, kurt)
        if spread is not None and block.matrix.shape[0] >= MIN_SIDE:
            evidence["unit_scale_spread"] = round(spread, 3)
            if spread > SPREAD_STRONG:
                strong.append(f"per-unit scales spread {spread:.1f}x more than i.i.d. draws")
            elif spread > SPREAD_WEAK:
                weak.append(f"per-unit scales spread {spread:.1f}x more than i.i.d. draws")
    if scheme is not None and not scheme.known:
        weak.append("no init scheme fits")

    evidence["indicators"] = strong + weak
    if strong or len(weak) >= 2:
        conf = min(0.99, 0.6 + 0.15 * len(strong) + 0.1 * len(weak))
        return StateResult(State.TRAINED, conf, "; ".join(strong + weak), evidence)
    if not weak and scheme is not None and scheme.known:
        return StateResult(
            State.INITIALIZED,
            min(0.99, 0.5 + 0.5 * scheme.confidence),
            f"i.i.d.-looking, matches {scheme.label}",
            evidence,
        )
    if block is not None and weak == ["no init scheme fits"]:
        # no structure, no tails, no offset: a custom scale drawn i.i.d. is still an init
        return StateResult(
            State.INITIALIZED, 0.5, "i.i.d.-looking (no trace of training), custom scale", evidence
        )
    if not weak and block is not None:
        return StateResult(
            State.INITIALIZED, 0.6, "i.i.d.-looking (no trace of training)", evidence
        )
    return StateResult(
        State.UNKNOWN, 0.3, "; ".join(weak) or "not enough structure to tell", evidence
    )


def classify_file(states: Iterable[StateResult | None]) -> StateResult:
    """A file's state from its kernels' states (shares of trained vs initialized)."""
    counts: dict[State, int] = {s: 0 for s in State}
    for st in states:
        if st is not None:
            counts[st.state] += 1
    decided = counts[State.TRAINED] + counts[State.INITIALIZED]
    evidence: dict[str, Any] = {
        "trained_tensors": counts[State.TRAINED],
        "initialized_tensors": counts[State.INITIALIZED],
        "unknown_tensors": counts[State.UNKNOWN],
    }
    if decided == 0:
        return StateResult(State.UNKNOWN, 0.0, "no kernel large enough to tell", evidence)
    share = counts[State.TRAINED] / decided
    evidence["trained_share"] = round(share, 3)
    if share >= FILE_TRAINED_SHARE:
        return StateResult(
            State.TRAINED,
            min(0.99, 0.5 + share / 2),
            f"{counts[State.TRAINED]} of {decided} kernels show traces of training",
            evidence,
        )
    if share <= FILE_INIT_SHARE:
        return StateResult(
            State.INITIALIZED,
            min(0.99, 1.0 - share),
            f"{counts[State.INITIALIZED]} of {decided} kernels look freshly drawn",
            evidence,
        )
    return StateResult(
        State.UNKNOWN,
        0.5,
        f"mixed: {counts[State.TRAINED]} of {decided} kernels look trained",
        evidence,
    )
