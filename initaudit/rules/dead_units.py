"""IA204 dead-units: some output units (rows, filters) of a kernel are entirely zero.

A unit whose incoming weights are all zero outputs only its bias; its outgoing weights then get
no useful gradient and, with ReLU, its own weights get none either: it may never come back. A
random initializer never draws an all-zero unit of useful width; pruning, a failed copy or a
masking bug does. The whole-tensor case is constant-weights (IA201). On trained checkpoints the
finding is info: pruned units and fixed bases (an STFT's zero sine filters) are zero on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..report import Finding, Severity
from ._common import KERNEL_ROLES
from .base import OnTrained, Rule, RuleContext, tensor_rule

MIN_WEIGHTS_PER_UNIT = 8  # a unit of a few weights can be all-zero by rounding


@tensor_rule(
    code="IA204",
    name="dead-units",
    severity=Severity.WARNING,
    summary="output units (rows, filters) whose weights are all zero",
    on_trained=OnTrained.INFO,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.tensor.role not in KERNEL_ROLES or not a.units.dead_units:
        return
    if a.units.constant or a.units.n_units == 0:
        return
    if a.scheme is not None and a.scheme.rule in ("identity", "dirac"):
        return  # torch's dirac_/eye_ leave the units beyond the input channels at zero
    per_unit = a.stats.size // a.units.n_units
    if per_unit < MIN_WEIGHTS_PER_UNIT:
        return
    dead = a.units.dead_units
    shown = ", ".join(str(i) for i in dead[:8]) + ("…" if len(dead) > 8 else "")
    share = len(dead) / a.units.n_units
    yield self.finding(
        f"{len(dead)} of {a.units.n_units} output units ({share:.1%}) have all {per_unit} "
        f"incoming weights equal to zero (units {shown}): they output only their bias and get no "
        "gradient through a ReLU. Re-initialize them (or remove them if they were pruned on purpose).",
        confidence=1.0,
        tensor=a.tensor,
        dead_units=list(dead[:50]),
        n_dead=len(dead),
        units=a.units.n_units,
        weights_per_unit=per_unit,
    )
