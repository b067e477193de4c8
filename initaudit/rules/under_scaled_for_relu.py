"""IA102 under-scaled-for-relu: a Glorot-, LeCun- or torch-default-scaled kernel feeds a ReLU.

ReLU zeroes half of its input, halving the second moment of the signal. He init (Var = 2/fan_in)
doubles the weights' variance to compensate; Glorot (2/(fan_in+fan_out)), LeCun (1/fan_in) and
torch's default U(±1/sqrt(fan_in)) (1/(3·fan_in)) do not, so each such layer multiplies the
second moment by fan_in·Var(w)/2 (1/2 for LeCun, 1/6 for torch's default).

One such layer is harmless (info). Several in a row with no normalization between them shrink the
signal geometrically: when the predicted product along such a chain falls below 1e-2 (two orders
of magnitude), the rule adds one warning for the chain, naming the layer where it leaves the band.
A normalization right after a layer (BatchNorm, LayerNorm) resets the scale: such layers are
not counted.
"""

from __future__ import annotations

from typing import Iterator

from ..model import ActivationKind, RELU_LIKE
from ..report import Finding, Severity
from ._common import consistent_rules, fmt_std
from .base import Rule, RuleContext, TensorAnalysis, rule

UNDER_SCALED = {"glorot", "lecun", "torch_default"}
CHAIN_THRESHOLD = 1e-2
MIN_CHAIN = 3


def _relu_factor(kind: ActivationKind, param: float | None) -> float:
    if kind in (ActivationKind.LEAKY_RELU, ActivationKind.PRELU):
        slope = param if param is not None else (0.25 if kind is ActivationKind.PRELU else 0.01)
        return (1.0 + slope * slope) / 2.0
    return 0.5


def _under_scaled(a: TensorAnalysis) -> bool:
    layer = a.layer
    if layer is None or a.tensor is not layer.kernel or a.scheme is None or layer.normalized:
        return False
    if layer.activation is None or layer.activation.kind not in RELU_LIKE:
        return False
    if a.scheme.rule not in UNDER_SCALED or (a.scheme.gain or 1.0) > 1.01:
        return False
    return ("he", 1.0) not in consistent_rules(a.scheme) and bool(a.tensor.fan_in)


@rule(code="IA102", name="under-scaled-for-relu", severity=Severity.INFO, scope="model",
      summary="Glorot/LeCun/torch-default kernel feeding ReLU; a warning when a chain of them "
              "shrinks the signal by orders of magnitude")
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    by_layer: dict[str, TensorAnalysis] = {}
    for a in ctx.analyses:
        if _under_scaled(a):
            by_layer[a.layer.name] = a

    # per-layer infos
    gains: dict[str, float] = {}
    for name, a in by_layer.items():
        act = a.layer.activation
        gain = a.tensor.fan_in * a.stats.std ** 2 * _relu_factor(act.kind, act.param)
        gains[name] = gain
        yield self.finding(
            f"{a.scheme.label} weights (std {fmt_std(a.stats.std)}) feed a {act.label}: ReLU "
            f"halves the second moment and this scale does not make up for it, so the signal "
            f"shrinks by ~{gain:.2g}x at this layer. He/Kaiming (std "
            f"{fmt_std((2.0 / a.tensor.fan_in) ** 0.5)}) keeps it constant.",
            confidence=a.scheme.confidence, tensor=a.tensor, observed_std=a.stats.std,
            expected_std=a.scheme.expected_std, he_std=(2.0 / a.tensor.fan_in) ** 0.5,
            variance_gain=gain)

    if not ctx.model.has_graph:
        return  # without a graph we cannot tell which layers follow each other
    # chains: cumulative gain along consecutive under-scaled layers (graph order)
    cumulative: dict[str, tuple[float, list[str]]] = {}
    reported: set[str] = set()
    for layer in ctx.model.layers:
        if layer.name not in gains:
            continue
        best_prev: tuple[float, list[str]] | None = None
        for src in layer.inputs:
            if src in cumulative and (best_prev is None or cumulative[src][0] > best_prev[0]):
                best_prev = cumulative[src]
        prev_gain, chain = best_prev if best_prev else (1.0, [])
        total, chain = prev_gain * gains[layer.name], chain + [layer.name]
        cumulative[layer.name] = (total, chain)
        if total < CHAIN_THRESHOLD and len(chain) >= MIN_CHAIN and chain[0] not in reported:
            reported.add(chain[0])
            yield self.finding(
                f"{len(chain)} consecutive under-scaled ReLU layers with no normalization "
                f"({chain[0]} … {chain[-1]}) shrink the signal's second moment by a predicted "
                f"{total:.2g}x: it leaves the sane band at {layer.name}. Use He/Kaiming init for "
                "ReLU layers, or add normalization.",
                confidence=min(a.scheme.confidence for a in (by_layer[n] for n in chain)),
                layer=layer.name, severity=Severity.WARNING, chain=chain, predicted_gain=total)
