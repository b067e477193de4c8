"""IA202 duplicate-neurons: two or more output units (rows, filters) have identical weights.

Identical units stay identical under gradient descent (same input, same weights, same gradient),
so the duplicates are wasted capacity. A random initializer never produces exact copies; they
come from copying or tiling a tensor.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..analysis.results import TensorStats
from ..report import Finding, Severity
from ._common import KERNEL_ROLES
from .base import Rule, RuleContext, tensor_rule

MIN_WEIGHTS_PER_UNIT = 4  # below this, low-precision units can coincide by chance


@tensor_rule(
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
    if _selection_kernel(a.stats, a.units.n_units):
        # every unit one 1.0 among zeros: a tiled identity (nearest-neighbour / sub-pixel
        # upsampling init, Nemotron3 diarization's upsampler). A deliberate structure, not a
        # random tensor copied: the copies feed different output positions
        yield self.finding(
            f"{copies} of {a.units.n_units} output units duplicate another unit, and every unit "
            "is a one-hot selection (a tiled identity: nearest-neighbour or sub-pixel "
            "upsampling init). A deliberate structure, not a copied random tensor: info only.",
            confidence=0.8,
            tensor=a.tensor,
            severity=Severity.INFO,
            groups=[list(g) for g in groups[:20]],
            duplicated_units=copies,
            units=a.units.n_units,
        )
        return
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


def _selection_kernel(stats: TensorStats, n_units: int) -> bool:
    """Values in [0, 1] summing to one per unit, with 1.0 present: each unit selects one input
    (identity / nearest-neighbour upsampling). Needs exact moments (not a sample)."""
    if stats.n != stats.size or n_units <= 0 or stats.min != 0.0 or stats.max != 1.0:
        return False
    return abs(stats.mean * stats.size - n_units) < 0.5
