"""IA201 constant-weights: every entry of a kernel is the same value (zeros included).

Units with identical incoming weights compute the same output and receive the same gradient, so
they stay identical through training: the layer behaves like a single unit. An all-zero kernel
also blocks the gradient to everything below it. Biases and norm parameters are constant by
design and are not checked. Zero-initialised LoRA "B" matrices are constant by design too.
"""

from __future__ import annotations

import re
from typing import Iterator

from ..report import Finding, Severity
from .base import Rule, RuleContext, rule

# adapters whose up-projection starts at zero on purpose (the sum starts as the base model)
_ZERO_BY_DESIGN = re.compile(r"(^|[._])(lora_B|lora_b|lora_up|adapter_up)([._]|$)")


@rule(code="IA201", name="constant-weights", severity=Severity.ERROR,
      summary="kernel whose entries are all equal (zeros included): symmetry never breaks")
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    from ..engine import SCHEMED_ROLES

    a = ctx.current
    if a is None or a.tensor.role not in SCHEMED_ROLES or a.stats.size < 2:
        return
    if not a.units.constant:
        return
    if _ZERO_BY_DESIGN.search(a.tensor.name) and a.units.constant_value == 0.0:
        return
    value = a.units.constant_value
    what = "all zeros" if value == 0.0 else f"all {a.stats.size} entries equal {value:g}"
    yield self.finding(
        f"{what}: every unit gets the same weights, computes the same output and receives the "
        f"same gradient, so the units never become different"
        + (" (and no gradient flows to the layers below)" if value == 0.0 else "")
        + ". Initialize it with a random scheme (He for ReLU, Glorot for tanh/sigmoid).",
        confidence=1.0, tensor=a.tensor, value=value, size=a.stats.size)
