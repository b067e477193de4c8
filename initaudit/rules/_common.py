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
