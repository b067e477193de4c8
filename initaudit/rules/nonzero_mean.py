"""IA303 nonzero-mean: a kernel's mean is significantly and materially away from zero.

Every init scheme draws zero-mean weights. A shared offset adds the same multiple of the input's
sum to every unit, correlating the units and shifting pre-activations; after ReLU it biases
layers towards all-on or all-off. Flagged only when the offset is both statistically certain
(|z| > 5) and large relative to the spread (|mean| > 0.1·std).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..report import Finding, Severity
from ._common import KERNEL_ROLES, fmt_std
from .base import OnTrained, Rule, RuleContext, tensor_rule

MIN_Z = 5.0
MIN_EFFECT = 0.1


@tensor_rule(
    code="IA303",
    name="nonzero-mean",
    severity=Severity.WARNING,
    summary="kernel mean significantly away from zero (every init scheme is zero-mean)",
    on_trained=OnTrained.INFO,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.tensor.role not in KERNEL_ROLES or a.units.constant:
        return
    if a.scheme is not None and a.scheme.rule in ("identity", "dirac"):
        return  # an identity/Dirac kernel has a positive mean by construction
    s = a.stats
    if not (math.isfinite(s.mean) and math.isfinite(s.std)) or s.std == 0 or s.n < 16:
        return
    z = s.mean / (s.std / math.sqrt(s.n))
    effect = abs(s.mean) / s.std
    if abs(z) < MIN_Z or effect < MIN_EFFECT:
        return
    yield self.finding(
        f"mean {s.mean:+.4g} is {effect:.2f} standard deviations away from zero (z = {z:.1f}, "
        f"std {fmt_std(s.std)}); init schemes are zero-mean, and a shared offset correlates the "
        "units and shifts every pre-activation.",
        confidence=min(1.0, effect),
        tensor=a.tensor,
        mean=s.mean,
        std=s.std,
        z=z,
    )
