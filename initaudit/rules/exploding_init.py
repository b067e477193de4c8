"""IA301 exploding-init: a kernel's std is far above what any fan-based rule predicts.

Each layer multiplies the second moment of the signal by about fan_in · Var(w) (times the
activation's factor). He (the largest common rule) keeps that product at 2; N(0, 1) weights on a
512-wide layer make it 512, so activations and gradients grow by orders of magnitude with depth.
Embeddings are exempt (torch's default Embedding is N(0, 1) by design).
"""

from __future__ import annotations

import math
from typing import Iterator

from ..analysis.schemes import fan_based_stds
from ..report import Finding, Severity
from ._common import KERNEL_ROLES, fmt_std, std_interval
from .base import Rule, RuleContext, rule

FACTOR = 4.0  # std this many times the largest fan-based prediction (variance x16)


@rule(code="IA301", name="exploding-init", severity=Severity.ERROR,
      summary="std far above what any fan-based rule predicts (e.g. N(0,1) on a wide layer)")
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.tensor.role not in KERNEL_ROLES or not a.tensor.fan_in or not a.tensor.fan_out:
        return
    if not math.isfinite(a.stats.std) or a.stats.std == 0 or a.units.constant:
        return
    if a.scheme is not None and a.scheme.rule == "orthogonal":
        return
    refs = fan_based_stds(a.tensor.fan_in, a.tensor.fan_out)
    ceiling = max(refs["he_fan_in"], refs["he_fan_out"], refs["lecun"] * 5.0 / 3.0,
                  refs["glorot"] * 5.0 / 3.0)
    low, _ = std_interval(a.stats.std, a.stats.n, a.stats.excess_kurtosis)
    if low <= FACTOR * ceiling:
        return
    gain = a.tensor.fan_in * a.stats.std ** 2
    yield self.finding(
        f"std {fmt_std(a.stats.std)} is {a.stats.std / ceiling:.1f}x the largest fan-based "
        f"prediction ({fmt_std(ceiling)} for fan_in {a.tensor.fan_in}, fan_out {a.tensor.fan_out}): "
        "each layer like this "
        f"multiplies the signal's second moment by fan_in·Var(w) ≈ {gain:.3g} instead of ~1-2, "
        "so activations and gradients explode with depth. Use He (ReLU) or Glorot (tanh/sigmoid).",
        confidence=min(1.0, 1.0 - FACTOR * ceiling / low + 0.5), tensor=a.tensor,
        observed_std=a.stats.std, max_expected_std=ceiling, variance_gain=gain)
