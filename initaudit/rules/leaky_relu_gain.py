"""IA104 leaky-relu-gain: He/Kaiming weights computed for a ReLU feed a leaky ReLU or PReLU
whose negative slope calls for a noticeably smaller gain.

He's gain sqrt(2) makes up for ReLU zeroing half of its input. A leaky ReLU with negative slope
a keeps a² of the negative half, so the second moment it passes on is (1 + a²)/2 of its input's
and the variance-preserving gain is sqrt(2 / (1 + a²)) (``torch.nn.init.calculate_gain(
"leaky_relu", a)``; ``kaiming_normal_(w, a=a)`` uses it). With ``kaiming_*_(w)``'s default a = 0
in front of ``LeakyReLU(0.5)`` each layer multiplies the signal's second moment by 1 + a² = 1.25.
A note (info), only when the slope makes a difference the data can show (gain off by 10% or
more: a ≥ 0.46); the usual slopes (0.01, Keras' 0.2, PReLU's 0.25) change the gain by 3% at
most and never fire. torch's default Linear/Conv init (kaiming_uniform_ with a = sqrt(5)) is a
scheme of its own (torch default), not He, and is never reported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..model import ActivationKind
from ..report import Finding, Severity
from ._common import KERNEL_ROLES, fmt_std
from .base import OnTrained, Rule, RuleContext, tensor_rule

LEAKY = frozenset({ActivationKind.LEAKY_RELU, ActivationKind.PRELU})
# report when He's std exceeds the slope-corrected one by this factor: sqrt(1 + a²) >= 1.1
MIN_STD_RATIO = 1.1
# an alternative scheme this close to the corrected std means the data cannot tell them apart
SAME_STD = 0.05


@tensor_rule(
    code="IA104",
    name="leaky-relu-gain",
    severity=Severity.INFO,
    summary="He/Kaiming kernel with ReLU's gain sqrt(2) feeding a leaky ReLU/PReLU whose slope "
    "needs sqrt(2/(1+a²))",
    on_trained=OnTrained.SKIP,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    a = ctx.current
    if a is None or a.tensor.role not in KERNEL_ROLES or a.scheme is None or a.layer is None:
        return
    if a.layer.normalized:  # a normalization after the layer resets the scale: gain is moot
        return
    act = a.layer.activation
    scheme = a.scheme
    if act is None or act.kind not in LEAKY or scheme.rule != "he" or (scheme.gain or 1.0) != 1.0:
        return
    slope = act.negative_slope
    if slope is None or scheme.expected_std is None or not a.stats.std > 0:
        return
    ratio = math.sqrt(1.0 + slope * slope)  # He's std over the slope-corrected one
    if ratio < MIN_STD_RATIO:
        return
    he_std = scheme.expected_std
    corrected = he_std / ratio
    # the data must side with He: closer to its std than to the corrected one, and no
    # consistent alternative that predicts the corrected std
    if abs(math.log(a.stats.std / he_std)) >= abs(math.log(a.stats.std / corrected)):
        return
    if any(abs(math.log(c.expected_std / corrected)) < SAME_STD for c in scheme.alternatives):
        return
    gain = math.sqrt(2.0 / (1.0 + slope * slope))
    yield self.finding(
        f"He/Kaiming weights (std {fmt_std(a.stats.std)} ≈ {fmt_std(he_std)}, gain sqrt(2) "
        f"for ReLU) feed a {act.label} with negative slope {slope:g}; its variance-preserving "
        f"gain is sqrt(2/(1+a²)) = {gain:.3g}, so each such layer multiplies the signal's "
        f"second moment by {ratio**2:.3g}. Pass the slope to the initializer "
        f"(kaiming_normal_(w, a={slope:g}): std {fmt_std(corrected)}).",
        confidence=scheme.confidence,
        tensor=a.tensor,
        negative_slope=slope,
        observed_std=a.stats.std,
        expected_std=he_std,
        corrected_std=corrected,
        corrected_gain=gain,
        variance_ratio=ratio**2,
        activation=act.label,
        scheme=scheme.label,
    )
