"""Signal propagation: how the second moment of the signal grows or shrinks through the depth.

The mean-field argument every init scheme rests on (LeCun 1998, Glorot & Bengio 2010, He et al.
2015, Poole et al. 2016): with i.i.d. weights, a layer's pre-activation has second moment

    q_pre = fan_in · E[w²] · q_in

and the activation maps it to q_out = E[φ(z)²] for z ~ N(0, q_pre), computed here by numerical
integration, so that ReLU gives q_pre/2, leaky ReLU (1+a²)/2·q_pre, tanh and sigmoid their exact
saturating values (sigmoid's output never falls below 0.25: its mean is 0.5), SELU its fixed point
1 at q_pre = 1, GELU ≈ 0.425·q_pre at q_pre = 1. Backwards, the gradient's second moment is
multiplied by fan_out · E[w²] · E[φ'(z)²].

Structure from the graph (``Layer.inputs``, ``normalized``, ``residual``):

- a normalization between a layer and its activation resets q_pre to 1 (gamma = 1 at init), and
  divides the backward gain by the raw q_pre;
- a residual Add adds the variance of the skip path (approximated by the layer's input);
- a layer with several inputs (concatenation) sees their mean second moment;
- embeddings are the network's input (q = 1: the scale is measured relative to them), and
  recurrent layers emit a tanh-bounded state.

The cumulative q along the graph is compared with a sane band (default [1e-2, 1e2]: two orders
of magnitude either way); the first hidden layer outside it is where the signal is lost. Output
layers (nothing consumes them) are reported but do not decide: their scale is the logits', set
by the loss rather than by propagation.
Without a graph (a bare state_dict) the order of the layers is unknown and nothing is predicted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import numpy as np

from ..model import DEFAULT_NEGATIVE_SLOPE, Activation, ActivationKind, Layer, LoadedModel, Role
from .results import BAND, LayerSignal, SignalReport

_GRID = np.linspace(-12.0, 12.0, 4801)
_PDF = np.exp(-0.5 * _GRID**2) / math.sqrt(2.0 * math.pi) * (_GRID[1] - _GRID[0])
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
K = ActivationKind


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1/(1+e^-x) in the overflow-free form (e^-|x| only), to an ulp of scipy's expit, without
    the scipy.special import (~0.24 CPU-s, more than auditing a few hundred MB; issue 14)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.asarray(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def _ndtr(x: np.ndarray) -> np.ndarray:
    """Φ(x) by the closed-form erfc identification uses (fractional error < 1.2e-7: the
    moments move by far less than the 1e-2..1e2 band's margins; tests/test_signal.py)."""
    from .identify import norm_cdf

    return norm_cdf(x)


def _phi(kind: ActivationKind | None, param: float | None) -> Callable[[np.ndarray], np.ndarray]:
    """The activation as a numpy function; unknown/other activations count as linear."""
    if kind in (K.RELU,):
        return lambda x: np.maximum(x, 0.0)
    if kind in (K.LEAKY_RELU, K.PRELU):
        a = param if param is not None else DEFAULT_NEGATIVE_SLOPE[kind]
        return lambda x: np.where(x > 0, x, a * x)
    if kind is K.RELU6:
        return lambda x: np.clip(x, 0.0, 6.0)
    if kind is K.ELU:
        a = param if param is not None else 1.0
        return lambda x: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))
    if kind is K.SELU:
        return lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))
    if kind is K.SIGMOID:
        return _sigmoid
    if kind is K.HARD_SIGMOID:
        return lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    if kind is K.TANH:
        return np.tanh
    if kind is K.SOFTPLUS:
        return lambda x: np.logaddexp(0.0, x)
    if kind is K.GELU:
        return lambda x: x * _ndtr(x)
    if kind is K.SILU:
        return lambda x: x * _sigmoid(x)
    if kind is K.MISH:
        return lambda x: x * np.tanh(np.logaddexp(0.0, x))
    return lambda x: x  # linear, softmax (an output), other/unknown


@lru_cache(maxsize=4096)
def _moments(kind: ActivationKind | None, param: float | None, q: float) -> tuple[float, float]:
    """(E[φ(z)²], E[φ'(z)²]) for z ~ N(0, q)."""
    if not q > 0 or not math.isfinite(q):
        return 0.0, 0.0
    phi = _phi(kind, param)
    s = math.sqrt(q)
    z = s * _GRID
    y = phi(z)
    forward = float(np.sum(y * y * _PDF))
    h = 1e-4 * s
    slope = (phi(z + h) - phi(z - h)) / (2 * h)
    backward = float(np.sum(slope * slope * _PDF))
    return forward, backward


def activation_moments(act: Activation | None, q: float) -> tuple[float, float]:
    kind = act.kind if act is not None else None
    # round q so the cache works across layers of the same scale
    qr = float(f"{q:.4g}")
    return _moments(kind, act.param if act is not None else None, qr)


def _gate_count(layer: Layer) -> int:
    gates = max((t.gates for t in layer.tensors), default=1)
    if gates > 1:
        return gates
    return {"LSTM": 4, "GRU": 3}.get(layer.op.upper(), 1)


@lru_cache(maxsize=1024)
def _recurrent_moments(gates: int, q: float) -> tuple[float, float]:
    """Second moment of the first step's output of an RNN cell whose gate pre-activations are
    N(0, q) (h0 = c0 = 0): LSTM h = σ(o)·tanh(σ(i)·tanh(g)), GRU h = (1-σ(z))·tanh(n),
    RNN h = tanh(a). Fixed draws keep it deterministic."""
    if not q > 0 or not math.isfinite(q):
        return 0.0, 0.0
    z = np.random.default_rng(0).standard_normal((3, 20000)) * math.sqrt(q)
    sig = _sigmoid(z)
    if gates == 4:
        h = sig[0] * np.tanh(sig[1] * np.tanh(z[2]))
    elif gates == 3:
        h = (1.0 - sig[0]) * np.tanh(z[1])
    else:
        h = np.tanh(z[0])
    forward = float(np.mean(h * h))
    return forward, forward / q  # slope proxy: the cell's effective linear gain


def recurrent_moments(gates: int, q: float) -> tuple[float, float]:
    return _recurrent_moments(gates, float(f"{q:.4g}"))


def _is_recurrent(layer: Layer) -> bool:
    return layer.op.upper() in ("LSTM", "GRU", "RNN", "SIMPLERNN") or any(
        t.role is Role.RECURRENT for t in layer.tensors
    )


def propagate(
    model: LoadedModel, analyses: Iterable[Any], band: tuple[float, float] = BAND
) -> SignalReport | None:
    """Predict the per-layer forward and backward second moments along the layer graph."""
    if not model.has_graph:
        return None
    second: dict[int, float] = {}
    for a in analyses:
        s = a.stats
        if s is not None and math.isfinite(s.std) and math.isfinite(s.mean):
            second[id(a.tensor)] = s.std**2 + s.mean**2
    report = SignalReport(band=band)
    q_out: dict[str, float] = {}
    folded = folded_batchnorm_layers(model, analyses)
    for layer in model.layers:
        kernel = layer.kernel
        if kernel is None or id(kernel) not in second:
            continue
        ins = [q_out[src] for src in layer.inputs if src in q_out]
        q_in = float(np.mean(ins)) if ins else 1.0
        if kernel.role is Role.EMBEDDING:
            q_out[layer.name] = 1.0  # the network's input: scales are measured relative to it
            report.layers.append(
                LayerSignal(
                    layer.name,
                    layer.op,
                    None,
                    0,
                    0,
                    second[id(kernel)],
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    note="embedding (input)",
                )
            )
            continue
        fan_in, fan_out = kernel.fan_in or 0, kernel.fan_out or 0
        if not fan_in or not fan_out:
            continue
        w2 = second[id(kernel)]
        raw_pre = fan_in * w2 * q_in
        act = layer.activation
        if act is None:
            report.unknown_activations += 1
        note = None
        normalized = layer.normalized or layer.name in folded
        if layer.name in folded:
            note = "BatchNorm folded into the convolution at export (exactly-zero bias)"
        q_pre = 1.0 if normalized else raw_pre
        if _is_recurrent(layer):
            gates = _gate_count(layer)
            act = Activation(K.TANH, source="recurrent")
            note = f"recurrent ({ {4: 'LSTM', 3: 'GRU'}.get(gates, 'RNN') }): gated, tanh-bounded state"
            fwd, slope2 = recurrent_moments(gates, q_pre)
        else:
            fwd, slope2 = activation_moments(act, q_pre)
        out = fwd + (q_in if layer.residual else 0.0)
        back = fan_out * w2 * slope2
        if normalized and raw_pre > 0:
            back /= raw_pre
        q_out[layer.name] = out
        report.layers.append(
            LayerSignal(
                layer=layer.name,
                op=layer.op,
                activation=act.label if act is not None else None,
                fan_in=fan_in,
                fan_out=fan_out,
                weight_second_moment=w2,
                q_in=q_in,
                q_pre=q_pre,
                q_out=out,
                forward_gain=out / q_in if q_in > 0 else float("nan"),
                backward_gain=back + (1.0 if layer.residual else 0.0),
                normalized=normalized,
                residual=layer.residual,
                note=note,
            )
        )
    consumed = _backward(model, report)
    lo, hi = band
    for s in report.layers:
        if s.layer not in consumed and len(report.layers) > 1:
            continue  # an output layer
        if report.forward_exit is None and not (lo <= s.q_out <= hi):
            report.forward_exit = s.layer
    for s in reversed(report.layers):
        if report.backward_exit is None and s.grad_in is not None and not (lo <= s.grad_in <= hi):
            report.backward_exit = s.layer
    return report if report.layers else None


_CONV_OPS = ("conv", "convtranspose")
# the name torch's legacy ONNX exporter gives an initializer it computed (a folded conv weight):
# "onnx::Conv_497"; parameters keep their module path
_FOLDED_WEIGHT = r"^onnx::Conv(Transpose)?_\d+$"  # compiled on first use (re's cache): start-up


def folded_batchnorm_layers(model: LoadedModel, analyses: Iterable[Any]) -> set[str]:
    """Convolutions whose BatchNorm an exporter folded into them.

    torch.onnx (and other eval-mode exporters) fold Conv → BatchNorm into one Conv:
    w' = w·γ/sqrt(var+ε), b' = β + (b − mean)·γ/sqrt(var+ε). At init (mean 0, var 1, γ 1, β 0)
    that leaves w unchanged and a bias of exactly zero on a conv torch builds without one
    (``bias=False`` precedes every BatchNorm in torchvision/timm). A torch conv with its own bias
    draws it from U(±1/sqrt(fan_in)): never all exact zeros.

    A zero bias alone is no evidence: torchvision's VGG, AlexNet-style stacks and many user
    inits set conv biases to zero on purpose (``nn.init.constant_(m.bias, 0)``), and treating
    those as normalized would hide a signal that really vanishes or explodes. The evidence is the
    weight's name: the legacy exporter's fold (``fuseConvBatchNorm`` in
    torch/csrc/jit/passes/onnx/eval_peephole.cpp) computes a new weight constant, which the
    exporter names ``onnx::Conv_<n>``; a conv that was not folded keeps its parameter's name
    (``features.0.weight``). So a conv counts as folded when its weight is such a computed
    constant and its bias is exactly zero (or shared: see below). Then, in training, the
    BatchNorm rescales with batch statistics and the signal is reset there.
    """
    if (model.framework or "").lower() not in ("pytorch", "torch"):
        return set()
    zero_bias: set[int] = set()
    for a in analyses:
        s = a.stats
        if (
            a.tensor.role is Role.BIAS
            and s is not None
            and s.size > 1
            and s.std == 0
            and s.mean == 0
            and s.min == 0
            and s.max == 0
        ):
            zero_bias.add(id(a.tensor))
    out: set[str] = set()
    biasless: set[str] = set()
    for layer in model.layers:
        if layer.normalized or not layer.op.lower().startswith(_CONV_OPS):
            continue
        kernel = layer.kernel
        if kernel is None or not re.match(_FOLDED_WEIGHT, kernel.name):
            continue  # the conv's own parameter, not a constant the exporter computed
        if any(t.role is Role.BIAS and id(t) in zero_bias for t in layer.tensors):
            out.add(layer.name)
        elif not any(t.role is Role.BIAS for t in layer.tensors):
            biasless.add(layer.name)
    # ONNX stores one copy of identical constants: two folded convs of the same width share one
    # zero bias, and the loader hands it to one of them. Once the export shows folding, a conv
    # with no bias of its own is a folded one whose bias is shared.
    if out and not any(layer.normalized for layer in model.layers):
        out |= biasless
    return out


def _backward(model: LoadedModel, report: SignalReport) -> set[str]:
    """Cumulative gradient second moment at each layer's input, from the outputs back.

    Returns the names of the layers something consumes (the others are outputs)."""
    consumers: dict[str, list[str]] = {}
    index = {s.layer: i for i, s in enumerate(report.layers)}
    for layer in model.layers:
        if layer.name not in index:
            continue
        for src in layer.inputs:
            consumers.setdefault(src, []).append(layer.name)
    grad_in: dict[str, float] = {}
    for i in range(len(report.layers) - 1, -1, -1):
        s = report.layers[i]
        downstream = [grad_in[c] for c in consumers.get(s.layer, []) if c in grad_in]
        g_out = max(downstream) if downstream else 1.0
        grad_in[s.layer] = s.backward_gain * g_out
        report.layers[i] = _replace(s, grad_in=grad_in[s.layer])
    return {name for name, users in consumers.items() if users}


def _replace(s: LayerSignal, **changes: Any) -> LayerSignal:
    from dataclasses import replace

    return replace(s, **changes)


def sparkline(values: list[float], lo: float = -4.0, hi: float = 4.0) -> str:
    """A compact chart of log10 values: one character per layer (▁ low … █ high)."""
    bars = "▁▂▃▄▅▆▇█"
    out = []
    for v in values:
        if not (v > 0 and math.isfinite(v)):
            out.append("·")
            continue
        x = (min(max(math.log10(v), lo), hi) - lo) / (hi - lo)
        out.append(bars[min(len(bars) - 1, int(x * len(bars)))])
    return "".join(out)
