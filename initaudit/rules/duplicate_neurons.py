"""IA202 duplicate-neurons: two or more output units (rows, filters) have identical weights.

Identical units stay identical under gradient descent (same input, same weights, same gradient),
so the duplicates are wasted capacity. A random initializer never produces exact copies; they
come from copying or tiling a tensor.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..report import Finding, Severity
from ._common import KERNEL_ROLES
from .base import Rule, RuleContext, rule

MIN_WEIGHTS_PER_UNIT = 4  # below this, low-precision units can coincide by chance


@rule(
    code="IA202",
    name="duplicate-neurons",
    severity=Severity.ERROR,
    summary="two or more output units (rows, filters) with identical weights",
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.tensor.role not in KERNEL_ROLES or not a.units.duplicate_groups:
        return
    if a.units.n_units == 0 or a.stats.size // a.units.n_units < MIN_WEIGHTS_PER_UNIT:
        return
    groups = a.units.duplicate_groups
    copies = sum(len(g) - 1 for g in groups)
    shown = "; ".join(
        "units " + ", ".join(str(i) for i in g[:6]) + ("…" if len(g) > 6 else "")
        for g in groups[:3]
    )
    yield self.finding(
        f"{copies} of {a.units.n_units} output units duplicate another unit exactly ({shown}"
        f"{'; …' if len(groups) > 3 else ''}): identical units receive identical gradients and "
        "never diverge. Re-initialize the tensor instead of copying or tiling it.",
        confidence=1.0,
        tensor=a.tensor,
        groups=[list(g) for g in groups[:20]],
        duplicated_units=copies,
        units=a.units.n_units,
    )
