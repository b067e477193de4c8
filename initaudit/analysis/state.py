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
from typing import Any

import numpy as np

from ..model import WeightTensor
from .results import SchemeResult, State, StateResult, TensorStats, UnitCheck
from .stats import as_float
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
# a file is "trained" when at least this share of its decided kernels is, "initialized" when at
# most the second share is (a fresh head on a trained backbone is still a trained file)
FILE_TRAINED_SHARE, FILE_INIT_SHARE = 0.5, 0.1


def _block(values: np.ndarray, tensor: WeightTensor, rng: np.random.Generator) -> np.ndarray | None:
    """A (units, weights) block of at most BLOCK x BLOCK entries, centred, or None."""
    matrix: np.ndarray | None
    if values.ndim == 2:  # a view, never a copy of a big (possibly memmapped) matrix
        matrix = values.T if tensor.unit_axis is not None and tensor.unit_axis % 2 == 1 else values
    else:
        matrix = units_matrix(values, tensor)  # None without a unit structure
    if matrix is None or min(matrix.shape) < MIN_SIDE:
        return None
    rows = np.sort(rng.choice(matrix.shape[0], min(BLOCK, matrix.shape[0]), replace=False))
    cols = np.sort(rng.choice(matrix.shape[1], min(BLOCK, matrix.shape[1]), replace=False))
    if isinstance(matrix, np.memmap):  # a plain view: memmap's __getitem__ costs per call
        matrix = matrix.view(np.ndarray)
    block = as_float(_take_block(matrix, rows, cols))
    if not np.all(np.isfinite(block)):
        return None
    # all-zero (dead) units are a defect of their own (IA204), not a trace of training
    block = block[np.any(block != 0, axis=1)]
    if block.shape[0] < MIN_SIDE:
        return None
    return np.asarray(block - block.mean())


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
    elif by_rows <= by_cols:
        out = matrix.take(rows, axis=0).take(cols, axis=1)
    else:
        out = matrix.take(cols, axis=1).take(rows, axis=0)
    return out


def spectral_ratio(block: np.ndarray) -> float | None:
    """Top singular value over the Bai-Yin edge s·(√m + √n) of an i.i.d. matrix of that std."""
    s = float(block.std())
    if not s > 0:
        return None
    # power iteration (40 steps, ~1 ms on 384x384; a full SVD costs ~100x more): it converges
    # fast when a learnt direction stands out and slightly under-estimates an i.i.d. edge,
    # which only makes the test more conservative
    # float32: half the traffic of float64; the top singular value moves by ~1e-6 relative,
    # far below the 1.25 / 1.5 thresholds' margins
    block = np.asarray(block, dtype=np.float32)
    v = np.asarray(np.random.default_rng(7).standard_normal(block.shape[1]), dtype=np.float32)
    for _ in range(40):
        v = block.T @ (block @ v)
        v /= np.linalg.norm(v) or 1.0
    top = float(np.linalg.norm(block @ v))
    m, n = block.shape
    return top / (s * (math.sqrt(m) + math.sqrt(n)))


def unit_spread_ratio(block: np.ndarray, kurtosis: float) -> float | None:
    """Observed relative spread of per-unit stds over the spread i.i.d. entries would give."""
    k = block.shape[1]
    per_unit = block.std(axis=1)
    mean_std = float(per_unit.mean())
    if not mean_std > 0:
        return None
    observed = float(per_unit.std()) / mean_std
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

    rng = np.random.default_rng(seed + 104729)
    block = _block(values, tensor, rng)
    if block is not None:
        ratio = spectral_ratio(block)
        if ratio is not None:
            evidence["top_sv_over_mp_edge"] = round(ratio, 3)
            if ratio > SPECTRAL_STRONG:
                strong.append(f"top singular value {ratio:.2f}x the random-matrix edge")
            elif ratio > SPECTRAL_WEAK:
                weak.append(f"top singular value {ratio:.2f}x the random-matrix edge")
        spread = unit_spread_ratio(block, kurt)
        if spread is not None and block.shape[0] >= MIN_SIDE:
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
