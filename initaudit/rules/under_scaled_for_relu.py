"""IA102 under-scaled-for-relu: a Glorot-, LeCun- or torch-default-scaled kernel feeds a ReLU.

ReLU zeroes half of its input, halving the second moment of the signal. He init (Var = 2/fan_in)
doubles the weights' variance to compensate; Glorot (2/(fan_in+fan_out)), LeCun (1/fan_in) and
torch's default U(±1/sqrt(fan_in)) (1/(3·fan_in)) do not, so each such layer multiplies the
second moment by fan_in·Var(w)/2 (1/2 for LeCun, 1/6 for torch's default).

One such layer is harmless: info, per layer, with the reason. When several in a row shrink the
signal by orders of magnitude, the model-level signal-propagation analysis (IA601) emits ONE
warning at the layer where the signal leaves the sane band; this rule stays at info so a deep
plain stack is not reported once per layer. A normalization right after a layer (BatchNorm,
LayerNorm) resets the scale: such layers are not reported. Trained checkpoints are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..model import RELU_LIKE, Activation
from ..report import Finding, Severity
from ._common import consistent_rules, fmt_std
from .base import OnTrained, Rule, RuleContext, TensorAnalysis, model_rule

UNDER_SCALED = {"glorot", "lecun", "torch_default"}


def _relu_factor(act: Activation) -> float:
    slope = act.negative_slope  # None for a plain ReLU
    return (1.0 + slope * slope) / 2.0 if slope is not None else 0.5


def _under_scaled(a: TensorAnalysis) -> bool:
    layer = a.layer
    if layer is None or a.tensor is not layer.kernel or a.scheme is None or layer.normalized:
        return False
    if layer.activation is None or layer.activation.kind not in RELU_LIKE:
        return False
    if a.scheme.rule not in UNDER_SCALED or (a.scheme.gain or 1.0) > 1.01:
        return False
    return ("he", 1.0) not in consistent_rules(a.scheme) and bool(a.tensor.fan_in)


@model_rule(
    code="IA102",
    name="under-scaled-for-relu",
    severity=Severity.INFO,
    summary="Glorot/LeCun/torch-default kernel feeding ReLU (info per layer; a deep chain is "
    "IA601's one warning)",
    on_trained=OnTrained.SKIP,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    by_layer: dict[str, TensorAnalysis] = {}
    for a in ctx.analyses:
        # per-tensor history: a trained tensor in an initialized file is not judged on its init
        if _under_scaled(a) and not ctx.trained(a) and a.layer is not None:
            by_layer[a.layer.name] = a

    # per-layer infos
    gains: dict[str, float] = {}
    for name, a in by_layer.items():
        # _under_scaled() admitted only kernels with a layer, a known activation, a scheme and
        # a fan-in: the asserts say so to the type checker
        assert a.layer is not None and a.layer.activation is not None
        assert a.scheme is not None and a.tensor.fan_in
        act = a.layer.activation
        gain = a.tensor.fan_in * a.stats.std**2 * _relu_factor(act)
        gains[name] = gain
        yield self.finding(
            f"{a.scheme.label} weights (std {fmt_std(a.stats.std)}) feed a {act.label}: ReLU "
            f"halves the second moment and this scale does not make up for it, so the signal "
            f"shrinks by ~{gain:.2g}x at this layer. He/Kaiming (std "
            f"{fmt_std((2.0 / a.tensor.fan_in) ** 0.5)}) keeps it constant.",
            confidence=a.scheme.confidence,
            tensor=a.tensor,
            observed_std=a.stats.std,
            expected_std=a.scheme.expected_std,
            he_std=(2.0 / a.tensor.fan_in) ** 0.5,
            variance_gain=gain,
        )
