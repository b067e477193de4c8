"""IA601 signal-propagation: the predicted signal vanishes or explodes through the depth.

Each layer multiplies the second moment of the signal by fan_in · E[w²] and its activation's
factor (ReLU 1/2, tanh and sigmoid per their curve, SELU's fixed point); normalization resets it
and residual Adds add the skip path back (analysis/signal.py). A deep plain stack whose scheme
does not match its activation compounds a small per-layer loss into orders of magnitude. The
rule looks at the whole model and emits ONE finding, at the first hidden layer where the
cumulative second moment leaves the sane band (default [1e-2, 1e2]), instead of one per layer.
When a single layer alone leaves the band (a zeroed or N(0, 1e-4) kernel), its own rule
(constant-weights, vanishing-init, exploding-init) reports it and this one stays silent.

Needs a graph (ONNX, Keras, TorchScript/.pt2, whole pickled modules): a bare state_dict does not
say which layer follows which. Trained checkpoints are not judged on their init: info only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from ..report import Finding, Severity
from .base import OnTrained, Rule, RuleContext, model_rule


@model_rule(
    code="IA601",
    name="signal-propagation",
    severity=Severity.WARNING,
    summary="the predicted forward signal vanishes or explodes through the depth "
    "(one model-level finding, at the layer where it leaves the sane band)",
    on_trained=OnTrained.INFO,
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    sig = ctx.signal
    if sig is None or sig.forward_exit is None:
        return
    exit_layer = sig.layer(sig.forward_exit)
    if exit_layer is None:  # forward_exit always names one of the layers
        return
    lo, hi = sig.band
    if not (lo <= exit_layer.forward_gain <= hi):
        return  # one layer alone leaves the band: its own scale rule (IA201/IA301/IA302) says it
    depth = [s.layer for s in sig.layers].index(sig.forward_exit) + 1
    worst = sig.extreme()
    assert worst is not None  # there is at least the exit layer
    vanishing = exit_layer.q_out < lo
    gains = [s.forward_gain for s in sig.layers[:depth] if s.forward_gain > 0]
    typical = math.exp(sum(math.log(g) for g in gains) / len(gains)) if gains else float("nan")
    unknown = sig.unknown_activations
    confidence = 0.9 if unknown == 0 else max(0.3, 0.9 - 0.1 * unknown)
    severity = None
    default = _library_default_chain(ctx, [s.layer for s in sig.layers[:depth]])
    default_note = ""
    if default is not None:
        # the library's own default init, untouched: what every model that keeps the default
        # ships and trains; named as info so the gate does not fail every such model
        severity = Severity.INFO
        default_note = (
            f" Every layer up to here keeps {default}, the library's default: "
            "reported as info (choose an activation-matched scheme to improve it)."
        )
    what = "vanishes" if vanishing else "explodes"
    fix = (
        "Use He/Kaiming init for ReLU-family layers (LeCun for SELU, Glorot for tanh), or add "
        "normalization / residual connections."
        if vanishing
        else "Scale the weights down to a fan-based scheme (He for ReLU, Glorot for tanh/sigmoid) "
        "or add normalization."
    )
    yield self.finding(
        f"the forward signal {what}: its second moment is predicted to be "
        f"{exit_layer.q_out:.2g}x the input's after {depth} weighted layer(s), leaving the band "
        f"[{lo:g}, {hi:g}] at {exit_layer.layer} (geometric-mean gain {typical:.3g} per layer; "
        f"extreme {worst.q_out:.2g} at {worst.layer}). {fix}{default_note}",
        confidence=confidence,
        layer=exit_layer.layer,
        severity=severity,
        predicted_q=exit_layer.q_out,
        band=list(sig.band),
        depth=depth,
        mean_gain_per_layer=typical,
        extreme_q=worst.q_out,
        extreme_layer=worst.layer,
        unknown_activations=unknown,
        per_layer_gain=[round(s.forward_gain, 4) for s in sig.layers[:depth]],
    )


def _library_default_chain(ctx: RuleContext, layers: list[str]) -> str | None:
    """The default-init label when every weighted layer on the path keeps its library's
    default (analysis/convention_tables.py), else None."""
    from ..analysis.conventions import library_default, output_layer

    labels: set[str] = set()
    for name in layers:
        a = ctx.analysis_of(name)
        if a is None or a.tensor.role.value == "embedding":
            continue
        label = library_default(a.tensor, a.scheme)
        if label is None:
            return None
        if (
            "classifier init" in label
            and "classifier" not in a.tensor.name
            and not output_layer(ctx.model, a.tensor, a.layer)
        ):
            # N(0, 0.01) is torchvision's default for its classifier block only (MobileNetV3's
            # classifier.0 and .3): a hidden stack drawn that way elsewhere is the textbook
            # vanishing signal, not a library default (review)
            return None
        labels.add(label)
    return " / ".join(sorted(labels)) if labels else None
