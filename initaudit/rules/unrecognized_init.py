"""IA401 unrecognized-init: no known scheme fits a kernel.

Informational: the tensor may be trained, custom-initialised, or drawn from a scheme initaudit
does not know. The evidence says which family test failed or which scheme came closest.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..analysis.identify import GOF_ALPHA, MIN_ELEMENTS
from ..analysis.results import SchemeResult
from ..report import Finding, Severity
from ._common import KERNEL_ROLES, fmt_std
from .base import Rule, RuleContext, tensor_rule


def _confidence(scheme: SchemeResult) -> float:
    """How sure we are that nothing fits: 1 - p when the family test rejected every family,
    else the posterior weight of "some other scale" (what identify reports as its confidence)."""
    p = scheme.evidence.get("gof_pvalue")
    if isinstance(p, float) and p < GOF_ALPHA:
        return 1.0 - p
    return float(scheme.confidence)


@tensor_rule(
    code="IA401",
    name="unrecognized-init",
    severity=Severity.INFO,
    summary="no known initialization scheme fits the kernel",
    superseded_by=("IA201", "IA203", "IA301", "IA302"),
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.tensor.role not in KERNEL_ROLES or a.scheme is None or a.scheme.known:
        return
    if a.units.constant or a.stats.nonfinite:
        return  # constant-weights / nonfinite-weights say more
    if a.stats.n < MIN_ELEMENTS:
        return  # too few values to tell any scheme apart: not evidence of anything
    closest = a.scheme.evidence.get("closest")
    hint = (
        f"; closest: {closest['label']} (std {fmt_std(closest['expected_std'])})" if closest else ""
    )
    yield self.finding(
        f"{a.scheme.label} (std {fmt_std(a.stats.std)}, excess kurtosis "
        f"{a.stats.excess_kurtosis:.2f}){hint}. "
        + "Trained or custom-initialised weights look like this"
        + (
            f"; this one looks trained ({a.state.reason})."
            if a.state is not None and a.state.trained
            else "."
        ),
        confidence=_confidence(a.scheme),
        tensor=a.tensor,
        observed_std=a.stats.std,
        **{k: v for k, v in a.scheme.evidence.items() if k in ("gof_pvalue", "family_posterior")},
    )
