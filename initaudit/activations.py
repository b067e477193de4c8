"""One vocabulary for activation names across ONNX ops, torch modules, Keras strings and
Hugging Face ``hidden_act`` values, plus the ``PATTERN=ACT`` hints users give for files that
carry no graph."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .model import DEFAULT_NEGATIVE_SLOPE, Activation, ActivationKind

if TYPE_CHECKING:  # pragma: no cover
    from .model import LoadedModel

K = ActivationKind

# lower-cased, with "_", "-" and spaces removed -> kind
_NAMES: dict[str, ActivationKind] = {
    "relu": K.RELU,
    "rectifiedlinear": K.RELU,
    "leakyrelu": K.LEAKY_RELU,
    "lrelu": K.LEAKY_RELU,
    "prelu": K.PRELU,
    "elu": K.ELU,
    "celu": K.ELU,
    "selu": K.SELU,
    "sigmoid": K.SIGMOID,
    "logistic": K.SIGMOID,
    "hardsigmoid": K.HARD_SIGMOID,
    "tanh": K.TANH,
    "softmax": K.SOFTMAX,
    "logsoftmax": K.SOFTMAX,
    "softplus": K.SOFTPLUS,
    "gelu": K.GELU,
    "gelunew": K.GELU,
    "gelupytorchtanh": K.GELU,
    "gelufast": K.GELU,
    "quickgelu": K.GELU,
    "geluaccurate": K.GELU,
    "gelu10": K.GELU,
    "gelupython": K.GELU,
    "approximategelu": K.GELU,
    "silu": K.SILU,
    "swish": K.SILU,
    "swiglu": K.SILU,
    "hardswish": K.SILU,
    "mish": K.MISH,
    "relu6": K.RELU6,
    "linear": K.LINEAR,
    "identity": K.LINEAR,
    "none": K.LINEAR,
}

# activations we recognise but have no rule for: kept as OTHER with their name (never relu-like)
_OTHER_KNOWN = {
    "hardtanh",
    "softsign",
    "rrelu",
    "glu",
    "logsigmoid",
    "tanhshrink",
    "softshrink",
    "hardshrink",
    "threshold",
    "exponential",
    "sin",
    "snake",
}

# default negative slopes (torch LeakyReLU 0.01, Keras 3 LeakyReLU 0.2, ONNX LeakyRelu 0.01)
DEFAULT_PARAM = {K.LEAKY_RELU: DEFAULT_NEGATIVE_SLOPE[K.LEAKY_RELU], K.ELU: 1.0}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.strip().lower())


def parse_activation(
    name: str | None, *, param: float | None = None, source: str = "graph", strict: bool = False
) -> Activation | None:
    """Map any framework's activation name to an :class:`Activation`.

    Unknown names give ``Activation(OTHER, raw=name)`` (we know *something* follows, not what),
    or ``None`` with ``strict`` (used for user hints, where a typo must be an error upstream).
    """
    if name is None:
        return None
    key = _key(name)
    kind = _NAMES.get(key)
    if kind is None:
        # "leaky_relu(0.2)" / "leakyrelu:0.2" carry their parameter in the text
        m = re.fullmatch(r"([a-z0-9]+)[(:=]([-+0-9.e]+)\)?", key)
        if m and m.group(1) in _NAMES:
            kind = _NAMES[m.group(1)]
            param = float(m.group(2))
    if kind is None:
        if key in _OTHER_KNOWN:
            return Activation(K.OTHER, None, source, name)
        return None if strict else Activation(K.OTHER, None, source, name)
    if param is None:
        param = DEFAULT_PARAM.get(kind)
    return Activation(kind, param, source, name)


@dataclass(frozen=True)
class ActivationHint:
    """``--activation 'PATTERN=ACT'``: a glob over layer (or tensor) names."""

    pattern: str
    activation: Activation

    @classmethod
    def parse(cls, text: str, source: str = "hint") -> ActivationHint:
        if "=" not in text:
            raise ValueError(f"activation hint {text!r} must look like 'PATTERN=ACTIVATION'")
        pattern, _, act = text.rpartition("=")
        if not pattern.strip() or not act.strip():
            raise ValueError(f"activation hint {text!r} must look like 'PATTERN=ACTIVATION'")
        activation = parse_activation(act, source=source, strict=True)
        if activation is None:
            known = ", ".join(sorted({k.value for k in ActivationKind if k is not K.OTHER}))
            raise ValueError(f"unknown activation {act!r} in hint {text!r} (known: {known})")
        return cls(pattern.strip(), activation)

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


def apply_hints(model: LoadedModel, hints: list[ActivationHint]) -> None:
    """Hints override what the file says for matching layers (last matching hint wins)."""
    if not hints:
        return
    for layer in model.layers:
        for hint in hints:
            if hint.matches(layer.name) or any(hint.matches(t.name) for t in layer.tensors):
                layer.activation = hint.activation
