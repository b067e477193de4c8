"""IA203 nonfinite-weights: NaN or Inf values in a tensor.

One NaN propagates to every output and every gradient it touches; training cannot recover.
Checked on every tensor (biases and norms too), over every element.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..report import Finding, Severity
from .base import Rule, RuleContext, rule


@rule(
    code="IA203",
    name="nonfinite-weights",
    severity=Severity.ERROR,
    summary="NaN or Inf values in any tensor",
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.stats.nonfinite == 0:
        return
    yield self.finding(
        f"{a.stats.nonfinite} of {a.stats.size} values are NaN or Inf: they propagate to every "
        "output and gradient they touch.",
        confidence=1.0,
        tensor=a.tensor,
        nonfinite=a.stats.nonfinite,
        size=a.stats.size,
    )
