"""IA302 vanishing-init: a kernel's std is far below what any fan-based rule predicts.

With Var(w) well under 1/fan_in each layer shrinks the signal's second moment by
fan_in · Var(w); N(0, 1e-4) on a 512-wide layer shrinks it by ~2e-5 per layer, so activations
and gradients vanish within a few layers. Small fixed scales used on purpose (N(0, 0.02) in
transformers, GPT-2's 0.02/sqrt(2·n_layer) residual projections) stay well above the threshold
at the widths they are used with.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..analysis.schemes import fan_based_stds
from ..report import Finding, Severity
from ._common import fmt_std, scale_judgeable, std_interval, std_upper_small_sample
from .base import OnTrained, Rule, RuleContext, tensor_rule

FACTOR = 10.0  # std this many times below the smallest fan-based prediction (variance /100)
# below this many values the verdict is only a warning when it holds with a wide margin
# (SMALL_MARGIN x beyond the threshold, at the top of the interval): a 4x4 N(0, 0.02) projection
# sits on the threshold and would warn for some seeds and not others
MIN_DECIDE = 256
SMALL_MARGIN = 10.0


@tensor_rule(
    code="IA302",
    name="vanishing-init",
    severity=Severity.WARNING,
    summary="std far below what any fan-based rule predicts (e.g. N(0, 1e-4))",
    on_trained=OnTrained.INFO,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = scale_judgeable(ctx)
    if a is None:
        return
    fan_in, fan_out = a.tensor.fan_in, a.tensor.fan_out
    assert fan_in and fan_out  # scale_judgeable() admits only kernels with both fans
    refs = fan_based_stds(fan_in, fan_out)
    floor = min(refs.values())
    low, high = std_interval(a.stats.std, a.stats.n, a.stats.excess_kurtosis)
    if high * FACTOR >= floor:
        return
    gain = fan_in * a.stats.std**2
    from ..analysis.convention_tables import by_design, model_type_of
    from ..analysis.conventions import output_layer, residual_branch_end

    severity, note = None, ""
    row = by_design(a.tensor.name, "small", model_type_of(ctx.model.metadata), a.tensor.shape)
    # at a handful of values the sample std can land far below the draw's (chi-square with
    # n - 1 degrees of freedom): the honest upper bound decides whether it can be told at all
    small_high = max(high, std_upper_small_sample(a.stats.std, a.stats.n))
    if a.stats.n < MIN_DECIDE and small_high * FACTOR * SMALL_MARGIN >= floor:
        # a handful of values: whether the draw lands above or below the threshold is the
        # seed's choice, so the verdict would flip with torch.manual_seed
        severity = Severity.INFO
        note = (
            f" Too small to tell ({a.stats.n} values): a deliberate small scale and a defect "
            "cannot be told apart at this size, so this is info only."
        )
    elif row is not None:
        severity = Severity.INFO
        note = f" A documented convention ({row.source}): {row.why.value}; info only."
    elif (documented := _config_range(ctx, low, high)) is not None:
        severity = Severity.INFO
        note = (
            f" The model's config.json sets initializer_range = {documented:g}, and this is "
            "that draw: the library's documented scale for this model, so info only."
        )
    elif output_layer(ctx.model, a.tensor, a.layer):
        severity = Severity.INFO
        note = (
            " It is the model's output projection: a small head (zero or tiny by several "
            "libraries' design) shrinks nothing that comes after it, so this is info only."
        )
    elif residual_branch_end(a.tensor, a.layer):
        severity = Severity.INFO
        note = (
            " Its output joins a residual connection: a small init there (Fixup, T-Fixup, "
            "GPT-2's 1/sqrt(2·n_layer)) is a deliberate convention, so this is info only."
        )
    yield self.finding(
        f"std {fmt_std(a.stats.std)} is {floor / a.stats.std:.0f}x below the smallest fan-based "
        f"prediction ({fmt_std(floor)} for fan_in {a.tensor.fan_in}, fan_out {a.tensor.fan_out}): "
        f"each layer like this scales the signal's second moment by fan_in·Var(w) ≈ {gain:.2g}, "
        "so activations and gradients vanish with depth. Use a fan-based scheme." + note,
        severity=severity,
        confidence=min(1.0, 0.5 + (floor - FACTOR * high) / floor),
        tensor=a.tensor,
        observed_std=a.stats.std,
        observed_std_interval=[low, high],
        min_expected_std=floor,
        variance_gain=gain,
    )


def _config_range(ctx: RuleContext, low: float, high: float) -> float | None:
    """The config's initializer_range this tensor was drawn with (within its std interval, or
    truncated at 2 sigma), if any."""
    from ..analysis.conventions import config_init_ranges

    for r in config_init_ranges(ctx.model.metadata):
        if low * 0.95 <= r <= high * 1.05 or low * 0.95 <= r * 0.88 <= high * 1.05:
            return r
    return None
