"""IA103 selu-without-lecun: a SELU layer whose kernel is not LeCun-scaled.

SELU self-normalises only when Var(w) = 1/fan_in (Klambauer et al., 2017): then mean 0 and
variance 1 are a stable fixed point of every layer. Any other scale moves the fixed point, and
deep SELU stacks drift towards vanishing or exploding activations.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..model import ActivationKind
from ..report import Finding, Severity
from ._common import KERNEL_ROLES, consistent_rules, fmt_std
from .base import OnTrained, Rule, RuleContext, tensor_rule


@tensor_rule(
    code="IA103",
    name="selu-without-lecun",
    severity=Severity.WARNING,
    summary="SELU activation fed by a kernel that is not LeCun-scaled (Var = 1/fan_in)",
    on_trained=OnTrained.INFO,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.tensor.role not in KERNEL_ROLES or a.scheme is None or a.layer is None:
        return
    act = a.layer.activation
    if act is None or act.kind is not ActivationKind.SELU or not a.scheme.known:
        return
    if ("lecun", 1.0) in consistent_rules(a.scheme) or a.tensor.fan_in is None:
        return
    lecun = math.sqrt(1.0 / a.tensor.fan_in)
    from ..analysis.conventions import library_default

    default = library_default(a.tensor, a.scheme)
    severity = Severity.INFO if default is not None else None
    note = (
        (
            f" This is {default}, which the library applies when nothing is chosen: reported "
            "as info; SELU's self-normalization needs the LeCun scale."
        )
        if default
        else ""
    )
    yield self.finding(
        f"feeds a SELU but its weights follow {a.scheme.label} (std {fmt_std(a.stats.std)}); "
        f"SELU self-normalises only with LeCun normal, std sqrt(1/{a.tensor.fan_in}) = "
        f"{fmt_std(lecun)}. Use lecun_normal (Keras/JAX) or kaiming_normal_(nonlinearity='linear') (torch)."
        + note,
        confidence=a.scheme.confidence,
        tensor=a.tensor,
        severity=severity,
        observed_std=a.stats.std,
        expected_std=lecun,
        scheme=a.scheme.label,
    )
