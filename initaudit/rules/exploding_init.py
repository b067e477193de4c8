"""IA301 exploding-init: a kernel's std is far above what any fan-based rule predicts.

Each layer multiplies the second moment of the signal by about fan_in · Var(w) (times the
activation's factor). He (the largest common rule) keeps that product at 2; N(0, 1) weights on a
512-wide layer make it 512, so activations and gradients grow by orders of magnitude with depth.
Embeddings are exempt (torch's default Embedding is N(0, 1) by design).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..analysis.schemes import fan_based_stds
from ..report import Finding, Severity
from ._common import fmt_std, scale_judgeable, std_interval
from .base import KEEP_WHEN_TRAINED, OnTrained, Rule, RuleContext, TensorAnalysis, tensor_rule

FACTOR = 4.0  # std this many times the largest fan-based prediction (variance x16)
# a trained checkpoint may hold large learnt or fixed weights (an STFT basis, a lookup table):
# only a blow-up far beyond any init (variance x900) stays an error there
TRAINED_FACTOR = 30.0


@tensor_rule(
    code="IA301",
    name="exploding-init",
    severity=Severity.ERROR,
    summary="std far above what any fan-based rule predicts (e.g. N(0,1) on a wide layer)",
    on_trained=OnTrained.INFO,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = scale_judgeable(ctx)
    if a is None:
        return
    fan_in, fan_out = a.tensor.fan_in, a.tensor.fan_out
    assert fan_in and fan_out  # scale_judgeable() admits only kernels with both fans
    refs = fan_based_stds(fan_in, fan_out)
    ceiling = max(
        refs["he_fan_in"], refs["he_fan_out"], refs["lecun"] * 5.0 / 3.0, refs["glorot"] * 5.0 / 3.0
    )
    low, high = std_interval(a.stats.std, a.stats.n, a.stats.excess_kurtosis)
    if low <= FACTOR * ceiling:
        return
    gain = fan_in * a.stats.std**2
    severity, note = None, ""
    # on trained weights large learnt values are legitimate (the engine downgrades, one wording),
    # except a blow-up far beyond anything training produces
    keep: dict[str, Any] = {KEEP_WHEN_TRAINED: True} if low > TRAINED_FACTOR * ceiling else {}
    from ..analysis.convention_tables import by_design, model_type_of

    row = by_design(a.tensor.name, "large", model_type_of(ctx.model.metadata), a.tensor.shape)
    # the documented large scales are N(0, ~1) (T5's lm_head: factor * 1.0; wav2vec2's
    # codevectors U(0, 1), weight_proj N(0, 1)): far above that is a blow-up, not the convention
    if row is not None and low > 4.0:
        row = None
    documented = _config_scale(ctx, low, high)
    if row is None and documented is not None:
        severity = Severity.INFO
        note = (
            f" config.json sets this draw, N(0, {documented:g}), as the model's documented "
            "initializer: info only."
        )
        keep = {}
    elif row is not None:
        severity = Severity.INFO
        note = f" A documented convention ({row.source}): {row.why.value}; info only."
        keep = {}
    elif _tied_embedding(ctx, a) is not None:
        return  # weight tying: this is the embedding table itself (an N(0, 1) lookup is fine)
    elif _maybe_embedding(ctx, a):
        severity = Severity.INFO
        note = (
            " It may be an embedding table (torch's default Embedding is N(0, 1)): the file "
            "has no graph and the name does not say; name it *embed* or give --activation "
            "to check it as a kernel."
        )
    yield self.finding(
        f"std {fmt_std(a.stats.std)} is {a.stats.std / ceiling:.1f}x the largest fan-based "
        f"prediction ({fmt_std(ceiling)} for fan_in {a.tensor.fan_in}, fan_out {a.tensor.fan_out}): "
        "each layer like this "
        f"multiplies the signal's second moment by fan_in·Var(w) ≈ {gain:.3g} instead of ~1-2, "
        "so activations and gradients explode with depth. Use He (ReLU) or Glorot (tanh/sigmoid)."
        + note,
        confidence=min(1.0, 1.0 - FACTOR * ceiling / low + 0.5),
        tensor=a.tensor,
        severity=severity,
        observed_std=a.stats.std,
        observed_std_interval=[low, high],
        max_expected_std=ceiling,
        variance_gain=gain,
        **keep,
    )


def _maybe_embedding(ctx: RuleContext, a: TensorAnalysis) -> bool:
    """A graphless file's first 2-D weight, bias-free and N(0, 1): torch's Embedding default.

    nn.Sequential(nn.Embedding(...), ...) saves as "0.weight": nothing in the file says it is a
    lookup table rather than a Linear, so an N(0, 1) there is not called a defect.
    """
    if ctx.model.has_graph or len(a.tensor.shape) != 2 or a.layer is None:
        return False
    if any(t.role.value == "bias" for t in a.layer.tensors):
        return False
    kernels = [layer for layer in ctx.model.layers if layer.kernel is not None]
    if not kernels or kernels[0] is not a.layer:
        return False
    return abs(a.stats.std - 1.0) < 0.05 and a.scheme is not None and a.scheme.rule == "fixed"


def _tied_embedding(ctx: RuleContext, a: TensorAnalysis) -> str | None:
    """The embedding this kernel is tied to (same shape, same statistics to the last bit):
    T5's and many LMs' output projection share the input embedding's storage."""
    from ..model import Role

    for other in ctx.analyses:
        if other.tensor is a.tensor or other.tensor.role is not Role.EMBEDDING:
            continue
        o, s = other.stats, a.stats
        if other.tensor.shape == a.tensor.shape and (o.mean, o.std, o.min, o.max, o.size) == (
            s.mean,
            s.std,
            s.min,
            s.max,
            s.size,
        ):
            return other.tensor.name
    return None


def _config_scale(ctx: RuleContext, low: float, high: float) -> float | None:
    """The config.json initializer std this tensor was drawn with (CPM-Ant's init_std = 1.0),
    when the observed std's interval holds it."""
    from ..analysis.conventions import config_init_ranges

    for r in config_init_ranges(ctx.model.metadata):
        if low * 0.95 <= r <= high * 1.05 or low * 0.95 <= r * 0.88 <= high * 1.05:
            return r
    return None
