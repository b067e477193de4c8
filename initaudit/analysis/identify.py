"""Scheme identification: which rule, family, fan mode and gain produced a kernel.

Two questions, answered with sample-size-aware statistics rather than fixed thresholds:

1. **Family** (normal / truncated normal ±2σ / uniform / orthogonal): the likelihood of the data
   under each family with its scale fitted (robust to a 1e-4 fraction of outliers), turned into
   posterior weights; the winner must also pass a Kolmogorov-Smirnov goodness-of-fit test
   (scipy) on a subsample, or the family is "unknown". Orthogonality is decided separately by
   probing W·Wᵀ = gain²·I with random vectors (exact for orthogonal matrices, off by ~1/sqrt(fan)
   for any random one).
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
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from scipy import stats as sps

from ..model import Convention, Role, WeightTensor
from ..report import Candidate, SchemeResult, TensorStats
from .schemes import NORMAL, TN2_STD_FACTOR, TRUNC, UNIFORM, all_candidates
from .stats import CHUNK_ELEMENTS, as_float, as_float32_exact, draw_sample

MIN_ELEMENTS = 16  # below this, no family or scale can be told apart: say so
FAMILY_SAMPLE = 100_000  # enough for decisive family likelihoods, cheap to evaluate
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
ORTHO_MAX_ELEMENTS = 1 << 24
ORTHO_PROBES = 8

_KURTOSIS = {NORMAL: 0.0, TRUNC: -0.6345, UNIFORM: -1.2}
_TN_Z = sps.norm.cdf(2.0) - sps.norm.cdf(-2.0)


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
    return float(np.sum(np.log((1.0 - CONTAMINATION) * density
                               + CONTAMINATION * _WIDE_DENSITY_CACHE(scale))))


def _WIDE_DENSITY_CACHE(scale: float) -> float:  # noqa: N802 - a constant per tensor
    # a flat-ish floor: the N(0, (10·scale)²) density near its centre
    return 1.0 / (math.sqrt(2.0 * math.pi) * 10.0 * scale)


def fit_families(x: np.ndarray, std: float, rng: np.random.Generator) -> FamilyFit:
    """Posterior over normal / truncated normal / uniform for zero-centred data x."""
    if x.size > FAMILY_SAMPLE:
        x = x[rng.choice(x.size, FAMILY_SAMPLE, replace=False)]
    ax = np.abs(x)
    edge = float(ax.max())
    lls: dict[str, float] = {}
    params: dict[str, float] = {}

    z = x / std
    lls[NORMAL] = _contaminated_loglik(np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * std), std)
    params[NORMAL] = std

    best_u, best_b = -math.inf, math.sqrt(3.0) * std
    for b in {math.sqrt(3.0) * std, edge}:
        if b <= 0:
            continue
        ll = _contaminated_loglik(np.where(ax <= b, 1.0 / (2.0 * b), 0.0), std)
        if ll > best_u:
            best_u, best_b = ll, b
    lls[UNIFORM], params[UNIFORM] = best_u, best_b

    best_t, best_s = -math.inf, std / TN2_STD_FACTOR
    for s in {std / TN2_STD_FACTOR, edge / 2.0}:
        if s <= 0:
            continue
        zs = x / s
        dens = np.where(ax <= 2.0 * s,
                        np.exp(-0.5 * zs * zs) / (math.sqrt(2 * math.pi) * s * _TN_Z), 0.0)
        ll = _contaminated_loglik(dens, std)
        if ll > best_t:
            best_t, best_s = ll, s
    lls[TRUNC], params[TRUNC] = best_t, best_s

    top = max(lls.values())
    weights = {k: math.exp(v - top) for k, v in lls.items()}
    total = sum(weights.values())
    posterior = {k: w / total for k, w in weights.items()}
    best = max(posterior, key=posterior.__getitem__)
    p = _gof(x, best, params[best], rng)
    return FamilyFit(posterior=posterior, best=best, params=params, gof_pvalue=p,
                     fits=p >= GOF_ALPHA)


def _gof(x: np.ndarray, family: str, scale: float, rng: np.random.Generator) -> float:
    if x.size > GOF_SAMPLE:
        x = x[rng.choice(x.size, GOF_SAMPLE, replace=False)]
    # quantized values (int8 dequantized, bf16) tie a lot: spread each tie over its step
    unique = np.unique(x)
    if unique.size < x.size / 4 and unique.size > 1:
        step = float(np.median(np.diff(unique)))
        x = x + rng.uniform(-step / 2, step / 2, size=x.size)
    # the distributions' own cdf with the parameters bound, not a frozen distribution: freezing
    # builds argument parsers with exec() on every call (~2 ms, holding the GIL); same values
    if family == NORMAL:
        cdf = partial(sps.norm.cdf, scale=scale)
    elif family == UNIFORM:
        cdf = partial(sps.uniform.cdf, loc=-scale, scale=2 * scale)
    else:
        cdf = partial(sps.truncnorm.cdf, a=-2.0, b=2.0, scale=scale)
    return float(sps.kstest(x, cdf).pvalue)


def orthogonality(values: np.ndarray, tensor: WeightTensor,
                  rng: np.random.Generator) -> Orthogonality | None:
    """Probe whether some 2-D flattening of the kernel has orthonormal rows or columns."""
    if values.ndim < 2 or values.size > ORTHO_MAX_ELEMENTS:
        return None
    # no whole-tensor float64 copy (a 16M-element kernel would cost 128 MB): each block of
    # rows is widened on its own inside _project (perf, issue 6)
    arr = np.asarray(values)
    if tensor.convention in (Convention.KERAS, Convention.JAX):
        shapes = {(arr.size // arr.shape[-1], arr.shape[-1])}  # (prod(shape[:-1]), shape[-1])
    else:
        shapes = {(arr.shape[0], arr.size // arr.shape[0])}  # torch: (shape[0], rest)
    if tensor.matrix_shape:
        shapes.add(tuple(tensor.matrix_shape))
    best: Orthogonality | None = None
    for rows, cols in sorted(shapes):
        if min(rows, cols) < 2:
            continue
        w = arr.reshape(rows, cols)
        if rows > cols:
            w, layout = w.T, "columns"
        else:
            layout = "rows"
        # w is (r, c) with r <= c; orthogonal means w·wᵀ = g²·I
        v = rng.standard_normal((w.shape[0], ORTHO_PROBES))
        wv = _project(w.T if rows > cols else w, v, transposed=rows > cols)
        gram = wv.T @ wv  # vᵀ (w wᵀ) v
        ref = v.T @ v
        g2 = float(np.trace(gram) / np.trace(ref))
        if not g2 > 0:
            continue
        err = float(np.linalg.norm(gram - g2 * ref) / np.linalg.norm(g2 * ref))
        # a random (r, c) matrix misses by ~sqrt(1/c); rounding of an orthogonal one by
        # ~eps/sqrt(c): the tolerance sits between the two, whatever the size
        base = 2e-2 if np.dtype(values.dtype).itemsize <= 2 else 1e-3
        tol = min(base, 0.1 / math.sqrt(w.shape[1]))
        cand = Orthogonality(orthogonal=err < tol, gain=math.sqrt(g2), relative_error=err,
                             layout=layout)
        if best is None or cand.orthogonal or (not best.orthogonal and err < best.relative_error):
            best = cand
    return best


def _project(m: np.ndarray, v: np.ndarray, transposed: bool) -> np.ndarray:
    """w.T @ v, one block of m's rows at a time, where w = m.T if transposed else m.

    Data stored in 32 bits or fewer is projected in float32 (4x less traffic than float64; the
    relative error, ~1e-6, is far below the smallest tolerance, 0.1/sqrt(8M) ~ 3.5e-5).
    """
    narrow = np.dtype(m.dtype).itemsize <= 4 and np.dtype(m.dtype).kind in "fV"
    widen = as_float32_exact if narrow else as_float
    vv = v.astype(np.float32) if narrow else v
    rows_per = max(1, CHUNK_ELEMENTS // max(m.shape[1], 1))
    if transposed:  # w.T @ v = m @ v: block rows of m give block rows of the result
        out = np.empty((m.shape[0], v.shape[1]), dtype=vv.dtype)
        for s in range(0, m.shape[0], rows_per):
            out[s:s + rows_per] = widen(m[s:s + rows_per]) @ vv
        return out.astype(np.float64)
    acc = np.zeros((m.shape[1], v.shape[1]), dtype=vv.dtype)  # w.T @ v = Σ_blocks m[b].T @ v[b]
    for s in range(0, m.shape[0], rows_per):
        acc += widen(m[s:s + rows_per]).T @ vv[s:s + rows_per]
    return acc.astype(np.float64)


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
            return SchemeResult(rule=kind, distribution="structured", mode=None, gain=gain,
                                expected_std=None, confidence=0.999,
                                label=f"{kind} (gain {gain:.3g}, one tap per output unit)",
                                evidence={"nonzero": nz, "units_with_a_tap": int(per_unit.sum())})
    if SPARSE_MIN_ZEROS <= zero_share <= 0.99 and nz >= 16:
        vals = as_float(arr[nonzero])
        head = vals[:10_000]
        if np.unique(head).size < 0.5 * head.size:
            return None  # a coarse quantization lattice rounds to zero: not a sparse init
        sigma = float(np.sqrt(np.mean(vals ** 2)))
        return SchemeResult(rule="sparse", distribution="normal", mode=None, gain=None,
                            expected_std=sigma * math.sqrt(1.0 - zero_share), confidence=0.9,
                            label=f"sparse ({zero_share:.0%} zeros, non-zeros std {sigma:.3g})",
                            evidence={"zero_share": round(zero_share, 4), "nonzero_std": sigma})
    return None


def identify(values: np.ndarray, tensor: WeightTensor, stats: TensorStats, *, seed: int = 0,
             metadata: dict[str, Any] | None = None,
             sample: np.ndarray | None = None) -> SchemeResult:
    """Identify the init scheme of one kernel (see the module docstring for the method)."""
    if stats.std == 0.0 or (stats.min == stats.max and math.isfinite(stats.min)):
        value = stats.min
        rule = "zeros" if value == 0 else "constant"
        return SchemeResult(rule=rule, distribution="constant", mode=None, gain=None,
                            expected_std=0.0, confidence=1.0,
                            label="zeros" if rule == "zeros" else f"constant {value:g}",
                            evidence={"value": value})
    if stats.n < MIN_ELEMENTS or not math.isfinite(stats.std):
        return SchemeResult(rule="unknown", distribution="unknown", mode=None, gain=None,
                            expected_std=None, confidence=0.0,
                            label=f"too few finite values ({stats.n}) to identify",
                            evidence={"n": stats.n})
    rng = np.random.default_rng(seed + 7919)
    evidence: dict[str, Any] = {}

    # structured kernels need >= 5% exact zeros; the (stratified) sample shows when a tensor has
    # far fewer, and then the full-tensor scan (~25 ms per 10M elements, GIL-bound on bfloat16)
    # is skipped. Exact when the sample is the whole tensor; otherwise the sampled zero share
    # would have to be off by > 7 standard errors even at a 4096-element sample (perf, issue 6)
    few_zeros = (sample is not None and sample.size >= 1024
                 and np.count_nonzero(sample == 0) < 0.5 * SPARSE_MIN_ZEROS * sample.size)
    structured = (structured_kernel(values, tensor)
                  if tensor.role is not Role.EMBEDDING and not few_zeros else None)
    if structured is not None:
        return structured

    ortho = orthogonality(values, tensor, rng) if tensor.role is not Role.EMBEDDING else None
    if ortho is not None:
        evidence["orthogonality_error"] = ortho.relative_error
        if ortho.orthogonal:
            return SchemeResult(rule="orthogonal", distribution="orthogonal", mode=None,
                                gain=ortho.gain, expected_std=None, confidence=0.999,
                                label=f"orthogonal (gain {ortho.gain:.3g})", evidence=evidence)

    if sample is None:  # callers that already drew the stats sample pass it in
        sample, _ = draw_sample(values, 1 << 20, seed)
    x = sample - stats.mean
    fam = fit_families(x, stats.std, rng)
    evidence["family_posterior"] = {k: round(v, 4) for k, v in fam.posterior.items()}
    evidence["gof_pvalue"] = fam.gof_pvalue
    n = stats.n
    log_s = math.log(stats.std)
    evidence["std_interval_95"] = _std_interval(stats.std, n, _KURTOSIS.get(fam.best, 0.0))

    if not fam.fits:
        return SchemeResult(rule="unknown", distribution="unknown", mode=None, gain=None,
                            expected_std=None, confidence=0.0,
                            label=f"no family fits (KS p={fam.gof_pvalue:.2g}, "
                                  f"excess kurtosis {stats.excess_kurtosis:.2f})",
                            evidence=evidence)

    scored: list[tuple[float, float, Candidate]] = []  # (weight, z, candidate)
    for cand, prior in all_candidates(tensor, metadata):
        p_family = fam.posterior.get(cand.distribution, 0.0)
        if p_family < 1e-12 or not cand.expected_std > 0:
            continue
        se = math.sqrt((2.0 + _KURTOSIS[cand.distribution]) / (4.0 * n) + SYSTEMATIC_TOL ** 2)
        z = (log_s - math.log(cand.expected_std)) / se
        dens = math.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * se)
        scored.append((prior * p_family * dens, z, cand))
    unknown_weight = UNKNOWN_PRIOR / LOG_STD_RANGE
    total = unknown_weight + sum(w for w, _, _ in scored)
    scored.sort(key=lambda t: -t[0])

    if not scored or scored[0][0] <= unknown_weight or abs(scored[0][1]) > ACCEPT_Z:
        closest = min(scored, key=lambda t: abs(t[1])) if scored else None
        if closest is not None:
            evidence["closest"] = {"label": closest[2].label,
                                   "expected_std": closest[2].expected_std,
                                   "z": round(closest[1], 2)}
        return SchemeResult(rule="unknown", distribution=fam.best if fam.posterior[fam.best] > 0.9 else "unknown",
                            mode=None, gain=None, expected_std=None,
                            confidence=round(unknown_weight / total, 4),
                            label=f"no known scheme predicts std {stats.std:.4g}",
                            evidence=evidence)

    best_w, best_z, best = scored[0]
    same = sum(w for w, _, c in scored if c.rule == best.rule and c.distribution == best.distribution)
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
    return SchemeResult(rule=best.rule, distribution=best.distribution, mode=best.mode,
                        gain=best.gain, expected_std=best.expected_std,
                        confidence=round(confidence, 4), label=best.label,
                        alternatives=tuple(alternatives), evidence=evidence)


def _std_interval(std: float, n: int, kurtosis: float) -> list[float]:
    se = math.sqrt(max(2.0 + kurtosis, 0.1) / (4.0 * n))
    return [std * math.exp(-1.96 * se), std * math.exp(1.96 * se)]
