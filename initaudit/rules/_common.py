"""Small helpers shared by the rules (no rule logic lives here)."""

from __future__ import annotations

import math

from ..model import Role
from ..report import SchemeResult

KERNEL_ROLES = frozenset({Role.KERNEL, Role.RECURRENT})


def fmt_std(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def consistent_rules(scheme: SchemeResult) -> set[tuple[str, float]]:
    """(rule, gain) of the identified scheme and of every consistent alternative."""
    out = {(scheme.rule, round(scheme.gain or 1.0, 3))}
    out.update((c.rule, round(c.gain, 3)) for c in scheme.alternatives)
    return out


def std_interval(std: float, n: int, excess_kurtosis: float = 0.0, z: float = 3.29) -> tuple[float, float]:
    """Interval for the population std from n values (delta method on log s)."""
    k = excess_kurtosis if math.isfinite(excess_kurtosis) else 0.0
    se = math.sqrt(max(2.0 + k, 0.1) / (4.0 * max(n, 1)))
    return std * math.exp(-z * se), std * math.exp(z * se)
