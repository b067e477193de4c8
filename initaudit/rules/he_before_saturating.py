"""IA101 he-before-saturating: a He-scaled kernel feeds a saturating activation.

He/Kaiming init doubles the variance to make up for ReLU zeroing half of its input. Before a
sigmoid, tanh, hard-sigmoid or softmax nothing is zeroed, so the pre-activations come out with
twice the variance the unit needs: more of them land in the flat, saturated tails where the
gradient vanishes. Glorot/Xavier (or LeCun) is the scale these activations were designed for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..model import SATURATING
from ..report import Finding, Severity
from ._common import KERNEL_ROLES, consistent_rules, fmt_std
from .base import OnTrained, Rule, RuleContext, TensorAnalysis, tensor_rule

# schemes that suit a saturating activation; if the data is equally consistent with one of these,
# the layer is ambiguous and we stay silent (never a false positive)
# He's harm is the pre-activation variance it creates: fan_in·Var(w) (times E[x²]). He in
# fan_in mode makes it 2; He in fan_out mode on an expanding layer (a squeeze-and-excitation
# expand conv, EfficientNet's default) makes it 2·fan_in/fan_out, which can be well below
# Glorot's. Only a forward gain clearly above LeCun's 1 is the defect this rule is about.
MIN_FORWARD_GAIN = 1.5

_SUITABLE = {
    ("glorot", 1.0),
    ("glorot", 1.667),
    ("lecun", 1.0),
    ("lecun", 1.667),
    ("torch_default", 1.0),
    ("orthogonal", 1.0),
}
# a fixed-sigma alternative (N(0, 0.05) matches He on a 784-wide layer) only excuses the layer
# when that sigma is closer to what Glorot or LeCun would give it than to He's: the variance the
# activation sees is fan_in·Var(w) whatever the scheme is called


@tensor_rule(
    code="IA101",
    name="he-before-saturating",
    severity=Severity.ERROR,
    summary="He/Kaiming-scaled kernel feeding sigmoid, tanh, hard-sigmoid or softmax",
    on_trained=OnTrained.INFO,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.tensor.role not in KERNEL_ROLES or a.scheme is None or a.layer is None:
        return
    act = a.layer.activation
    if act is None or act.kind not in SATURATING or a.scheme.rule != "he":
        return
    if consistent_rules(a.scheme) & _SUITABLE or _fixed_alternative_suits(a):
        return
    t = a.tensor
    forward_gain = (t.fan_in or 0) * a.stats.std**2
    if forward_gain < MIN_FORWARD_GAIN:
        return
    fan = t.fan_in if a.scheme.mode != "fan_out" else t.fan_out
    glorot = math.sqrt(2.0 / (t.fan_in + t.fan_out)) if t.fan_in and t.fan_out else None
    yield self.finding(
        f"He-scaled weights (std {fmt_std(a.stats.std)} ≈ sqrt(2/{fan}) = "
        f"{fmt_std(a.scheme.expected_std)}) feed a {act.label}; {act.label} saturates, and He's "
        f"factor 2 (meant to offset ReLU zeroing half the units) pushes more pre-activations into "
        f"its flat tails where gradients vanish. Use Glorot/Xavier (std {fmt_std(glorot)}) "
        f"or LeCun. Predicted pre-activation variance fan_in·Var(w) ≈ {forward_gain:.2f} "
        f"(LeCun 1).",
        confidence=a.scheme.confidence,
        tensor=t,
        forward_gain=forward_gain,
        observed_std=a.stats.std,
        expected_std=a.scheme.expected_std,
        glorot_std=glorot,
        activation=act.label,
        scheme=a.scheme.label,
    )


def _fixed_alternative_suits(a: TensorAnalysis) -> bool:
    t = a.tensor
    scheme = a.scheme
    if not (t.fan_in and t.fan_out) or scheme is None:
        return False
    suitable = (math.sqrt(2.0 / (t.fan_in + t.fan_out)), math.sqrt(1.0 / t.fan_in))
    he = math.sqrt(2.0 / t.fan_in)

    def distance(std: float, target: float) -> float:
        return abs(math.log(std / target))

    return any(
        c.rule == "fixed"
        and min(distance(c.expected_std, s) for s in suitable) < distance(c.expected_std, he)
        for c in scheme.alternatives
    )
