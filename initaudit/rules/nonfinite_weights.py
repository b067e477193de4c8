"""IA203 nonfinite-weights: NaN or Inf values in a tensor.

One NaN propagates to every output and every gradient it touches; training cannot recover.
Checked on every tensor (biases and norms too), over every element.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..model import SCHEMED_ROLES, Role
from ..report import Finding, Severity
from .base import Rule, RuleContext, tensor_rule


@tensor_rule(
    code="IA203",
    name="nonfinite-weights",
    severity=Severity.ERROR,
    summary="NaN or Inf values in any tensor",
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.stats.nonfinite == 0:
        return
    if a.stats.nan == 0 and _infinite_bound(a.tensor.role, a.tensor.shape):
        # a scalar buffer holding +inf or -inf is a bound, not a weight: timm's Gemma 4 ViT keeps
        # per-projection clamp ranges input_min/input_max = -inf/+inf until calibrated; a NaN is
        # never a bound (min/max of a NaN are NaN), and kernels and biases are never exempt
        yield self.finding(
            "holds an infinity: an unbounded clamp or mask value by design, not a weight (NaN "
            "anywhere, or Inf in a kernel, bias or norm, stays an error).",
            confidence=1.0,
            tensor=a.tensor,
            severity=Severity.INFO,
            nonfinite=a.stats.nonfinite,
            size=a.stats.size,
        )
        return
    yield self.finding(
        f"{a.stats.nonfinite} of {a.stats.size} values are NaN or Inf: they propagate to every "
        "output and gradient they touch.",
        confidence=1.0,
        tensor=a.tensor,
        nonfinite=a.stats.nonfinite,
        size=a.stats.size,
    )


def _infinite_bound(role: Role, shape: tuple[int, ...]) -> bool:
    """A single stored value outside the weights (a scalar buffer of role ``other``)."""
    weights = SCHEMED_ROLES | {Role.BIAS, Role.NORM_SCALE, Role.NORM_SHIFT, Role.NORM_STAT}
    return role not in weights and math.prod(int(d) for d in shape) == 1
