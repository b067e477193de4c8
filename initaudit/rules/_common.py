"""Small helpers shared by the rules (no rule logic lives here)."""

from __future__ import annotations

import math

from ..model import Role
from ..report import SchemeResult
from .base import RuleContext, TensorAnalysis

KERNEL_ROLES = frozenset({Role.KERNEL, Role.RECURRENT})


def fmt_std(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def consistent_rules(scheme: SchemeResult) -> set[tuple[str, float]]:
    """(rule, gain) of the identified scheme and of every consistent alternative."""
    out = {(scheme.rule, round(scheme.gain or 1.0, 3))}
    out.update((c.rule, round(c.gain, 3)) for c in scheme.alternatives)
    return out


def std_interval(
    std: float, n: int, excess_kurtosis: float = 0.0, z: float = 3.29
) -> tuple[float, float]:
    """Interval for the population std from n values (delta method on log s)."""
    k = excess_kurtosis if math.isfinite(excess_kurtosis) else 0.0
    se = math.sqrt(max(2.0 + k, 0.1) / (4.0 * max(n, 1)))
    return std * math.exp(-z * se), std * math.exp(z * se)


def std_upper_small_sample(std: float, n: int, p: float = 0.0005) -> float:
    """Upper bound on the population std from n values drawn around their mean, from the
    chi-square law of the sample variance (n - 1 degrees of freedom), one-sided level p.

    The delta-method interval (std_interval) assumes many values; at a handful it is far too
    narrow below: 3 draws of N(0, 0.02) give a sample std under 0.0015 about once in 200 seeds
    (timm csatv2's 3x1 qkv), which std_interval put 4x above the draw instead of ~45x. Lower
    tail of chi2_k: P(X < x) <= (x/2)^(k/2) / Gamma(k/2 + 1) (the series' leading term), so the
    x solved from it is an under-estimate and the bound is conservative."""
    k = max(n - 1, 1)
    log_x = math.log(2.0) + (2.0 / k) * (math.log(p) + math.lgamma(k / 2.0 + 1.0))
    return std * math.sqrt(k / math.exp(log_x))


def scale_judgeable(ctx: RuleContext) -> TensorAnalysis | None:
    """The current tensor when its scale can be judged against the fan-based predictions (the
    shared entry of exploding-init and vanishing-init): a kernel with both fans, a finite
    non-zero std, not constant, not a structured scheme whose scale the structure sets."""
    a = ctx.current
    if (
        a is None
        or a.tensor.role not in KERNEL_ROLES
        or not a.tensor.fan_in
        or not a.tensor.fan_out
    ):
        return None
    if not math.isfinite(a.stats.std) or a.stats.std == 0 or a.units.constant:
        return None
    if a.scheme is not None and a.scheme.rule in ("orthogonal", "identity", "dirac", "sparse"):
        return None
    return a
