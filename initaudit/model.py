"""The framework-neutral model every loader returns.

A loader turns a checkpoint into a :class:`LoadedModel`: a list of :class:`Layer` objects, each
holding its :class:`WeightTensor` objects with their role, fan-in/fan-out (in the convention of
the framework that wrote the tensor) and the activation that follows the layer. Tensor values are
loaded lazily through ``WeightTensor.load`` so that a loader never holds the whole model in RAM.

Nothing here imports a framework; everything is plain data.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .analysis.results import KeyedReads


class Role(str, enum.Enum):
    """What a tensor is for; decides which rules look at it."""

    KERNEL = "kernel"  # Linear/Dense/Conv/MatMul weights: the tensors init schemes are about
    BIAS = "bias"
    NORM_SCALE = "norm_scale"  # LayerNorm/BatchNorm gamma: 1 by design
    NORM_SHIFT = "norm_shift"  # beta: 0 by design
    NORM_STAT = "norm_stat"  # running mean / variance buffers
    EMBEDDING = "embedding"
    RECURRENT = "recurrent"  # RNN/LSTM/GRU hidden-to-hidden kernels
    OTHER = "other"


# the roles an init scheme is about (identification, state and the scheme rules look at these)
SCHEMED_ROLES: frozenset[Role] = frozenset({Role.KERNEL, Role.RECURRENT, Role.EMBEDDING})
# the same, as the role strings of the report (TensorReport.role) that reporters read
SCHEMED_ROLE_NAMES: frozenset[str] = frozenset(r.value for r in SCHEMED_ROLES)


class ActivationKind(str, enum.Enum):
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    PRELU = "prelu"
    ELU = "elu"
    SELU = "selu"
    SIGMOID = "sigmoid"
    HARD_SIGMOID = "hard_sigmoid"
    TANH = "tanh"
    SOFTMAX = "softmax"
    SOFTPLUS = "softplus"
    GELU = "gelu"
    SILU = "silu"
    MISH = "mish"
    RELU6 = "relu6"
    LINEAR = "linear"  # output goes straight to another weighted layer or the graph output
    OTHER = "other"  # an activation we recognise as one but have no rule for (param holds its name)


SATURATING = frozenset(
    {
        ActivationKind.SIGMOID,
        ActivationKind.TANH,
        ActivationKind.SOFTMAX,
        ActivationKind.HARD_SIGMOID,
    }
)
RELU_LIKE = frozenset(
    {ActivationKind.RELU, ActivationKind.LEAKY_RELU, ActivationKind.PRELU, ActivationKind.RELU6}
)


# the negative slope a leaky activation has when the file does not say: torch nn.LeakyReLU and
# ONNX LeakyRelu default to 0.01 (torch/nn/modules/activation.py, onnx LeakyRelu-16 alpha);
# nn.PReLU starts at init=0.25 (torch/nn/modules/activation.py) and learns it per channel
DEFAULT_NEGATIVE_SLOPE = {ActivationKind.LEAKY_RELU: 0.01, ActivationKind.PRELU: 0.25}


@dataclass(frozen=True)
class Activation:
    """The activation that follows a layer. ``None`` in the model means *unknown*."""

    kind: ActivationKind
    # negative slope for leaky_relu / alpha for elu; None when not applicable
    param: float | None = None
    # where we learnt it: "graph", "config", "hint", "hf-config", "sequential", "torchscript"...
    source: str = "graph"
    # the name the file used, for display ("Relu", "gelu_new", "LeakyReLU(0.2)")
    raw: str | None = None

    @property
    def negative_slope(self) -> float | None:
        """The slope on the negative side of a leaky ReLU or PReLU (the file's, else the
        framework default); None for every other activation."""
        default = DEFAULT_NEGATIVE_SLOPE.get(self.kind)
        if default is None:
            return None
        return self.param if self.param is not None else default

    @property
    def label(self) -> str:
        if self.kind is ActivationKind.OTHER and self.raw:
            return self.raw
        if self.param is not None and self.kind in (ActivationKind.LEAKY_RELU, ActivationKind.ELU):
            return f"{self.kind.value}({self.param:g})"
        return self.kind.value


class Convention(str, enum.Enum):
    """Whose fan rules apply (init-schemes.md §3)."""

    TORCH = "torch"
    KERAS = "keras"
    JAX = "jax"
    ONNX = "onnx"  # MatMul/Gemm/Conv shapes; Conv follows torch


Loader = Callable[[], np.ndarray]


@dataclass
class WeightTensor:
    """One stored tensor, with everything the analysis needs to know about it."""

    name: str
    layer: str
    op: str  # the layer's type as the file names it: "Gemm", "Conv", "Linear", "Dense", ...
    role: Role
    shape: tuple[int, ...]
    dtype: str  # storage dtype name ("float32", "bfloat16", "int8 (dequantized)"...)
    load: Loader  # returns the values as a numpy array (may be a memmap); never cached here
    fan_in: int | None = None
    fan_out: int | None = None
    convention: Convention = Convention.TORCH
    # axis that indexes output units (rows of a Linear, filters of a Conv); used by
    # duplicate-neurons. None when the tensor has no unit structure.
    unit_axis: int | None = None
    # (rows, cols) flattening for the orthogonality test; None = framework default
    matrix_shape: tuple[int, int] | None = None
    # for RNN kernels: number of stacked gates (LSTM 4, GRU 3, RNN 1) along unit_axis
    gates: int = 1
    notes: list[str] = field(default_factory=list)
    # the inventory name (StoredTensor.name) these values come from when it differs from
    # ``name``: a slice of a packed tensor (Attention's QKV) or a tensor shared by two files.
    # A stored tensor counts as analysed only when every tensor derived from it was.
    stored: str | None = None

    @property
    def stored_name(self) -> str:
        return self.stored if self.stored is not None else self.name

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


@dataclass
class Layer:
    """A weighted operation and the tensors it owns."""

    name: str
    op: str
    tensors: list[WeightTensor] = field(default_factory=list)
    # what follows this layer's output; None = unknown (never guessed)
    activation: Activation | None = None
    # a normalization (BatchNorm/LayerNorm/...) sits between this layer and its activation
    normalized: bool = False
    # names of the weighted layers whose output reaches this layer's input (graph order);
    # empty when the file carries no graph
    inputs: list[str] = field(default_factory=list)
    # a residual Add joins this layer's output (through the activation) with another path
    residual: bool = False

    @property
    def kernel(self) -> WeightTensor | None:
        for t in self.tensors:
            if t.role in (Role.KERNEL, Role.EMBEDDING):
                return t
        return None


@dataclass(frozen=True)
class UnsafeContent:
    """Something the file would make us execute or reach; never run, always reported."""

    what: str  # "pickle GLOBAL os system", "Keras Lambda layer 'lambda'", "external data path ../x"
    location: str | None = None  # tensor/layer/member name where it sits


@dataclass
class LoadedModel:
    """What a loader returns; the analysis and the rules only ever see this."""

    path: str
    format: str  # "onnx", "pytorch-zip", "pytorch-legacy", "torchscript", "pt2", "safetensors", "keras", "keras-h5", "npz", "in-memory"
    layers: list[Layer] = field(default_factory=list)
    # tensors that belong to no weighted layer (buffers, scalars, loose parameters)
    loose_tensors: list[WeightTensor] = field(default_factory=list)
    framework: str | None = None  # producer: "pytorch", "keras", "tf2onnx", "jax"...
    has_graph: bool = False  # False for bare state_dicts: activations come from hints or config
    unsafe: list[UnsafeContent] = field(default_factory=list)
    # things the loader could not analyse, with the reason (reported, never silent)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # notes for the user ("initializer also listed as graph input: may be overridden")
    notes: list[str] = field(default_factory=list)
    # free-form metadata: Hugging Face config.json, producer name, opset...
    metadata: dict[str, Any] = field(default_factory=dict)
    # every tensor the container stores, independent of layer mapping (see StoredTensor);
    # None = this loader does not enumerate yet (the engine then says so in a note)
    inventory: list[StoredTensor] | None = None
    # category of each ``skipped`` entry, by name (set through :meth:`skip`); entries without
    # one are categorised by the engine from their words (accounting.categorise)
    skip_categories: dict[str, SkipReason] = field(default_factory=dict)
    # every tensor loader only maps local files by path or decodes what the loader parsed (no
    # shared file offset, socket or library handle): the engine may then analyse the tensors in
    # forked processes (forkpool.py)
    fork_safe: bool = False

    def skip(self, name: str, reason: str, category: SkipReason) -> None:
        """Record a tensor the loader will not analyse, with its category."""
        self.skipped.append((name, reason))
        self.skip_categories.setdefault(name, category)

    def tensors(self) -> list[WeightTensor]:
        out = [t for layer in self.layers for t in layer.tensors]
        out.extend(self.loose_tensors)
        return out

    def layer(self, name: str) -> Layer | None:
        for layer in self.layers:
            if layer.name == name:
                return layer
        return None


class SkipReason(str, enum.Enum):
    """Why a stored tensor was not analysed. A public vocabulary (JSON ``skipped[].category``):
    extend, never rename."""

    UNSUPPORTED_DTYPE = "unsupported-dtype"  # a dtype we cannot decode (complex, string, fp4...)
    QUANTIZED_NOT_DECODED = "quantized-not-decoded"  # a packed/quantized layout we do not decode
    CONTROL_FLOW = "control-flow"  # inside an If/Loop/Scan body or function not walked
    UNRECOGNISED_OP = "unrecognised-op"  # consumed by an op whose weight layout we do not know
    UNMAPPED = "unmapped"  # enumerated in the container but never mapped to a layer or loose tensor
    TIME_BUDGET = "time-budget"  # --max-seconds ran out before it was reached
    UNREADABLE = "unreadable"  # its bytes could not be read (truncated, missing shard, bad path)
    UNSAFE = "unsafe"  # left unread because reading it would need executing or trusting content
    TOO_LARGE = "too-large"  # above a resource limit
    OTHER = "other"


@dataclass(frozen=True, eq=False)
class SkippedTensor(KeyedReads):
    """A tensor the audit did not analyse, and why (JSON ``skipped[]``): ``category`` is the
    :class:`SkipReason`, ``reason`` the words a user reads. Equal to another record, or to the
    dict of its JSON form (what these entries were before they were typed)."""

    name: str
    reason: str
    category: SkipReason

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason, "category": self.category.value}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SkippedTensor):
            return (self.name, self.reason, self.category) == (
                other.name,
                other.reason,
                other.category,
            )
        if isinstance(other, dict):
            return self.to_dict() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.name, self.reason, self.category))


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as the container stores it, enumerated independently of layer recognition.

    Loaders list every stored tensor here (``LoadedModel.inventory``); the engine compares this
    enumeration with what was analysed, so a tensor a loader forgot to map makes the file
    partial, never silently ok.
    """

    name: str  # the name it is analysed under when mapped (WeightTensor.name), else its key
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    # float or quantized, >= 2-D or an embedding: what an init scheme is about. 1-D float
    # vectors (biases, norms), scalars and integer buffers are stored but not weight-like.
    weight_like: bool
    # set when the loader knows it will not analyse this tensor (reported under ``skipped``)
    skip: SkipReason | None = None
    detail: str | None = None  # words for the skip ("If branch of node 'x'", "GPTQ int4 packed")


def is_weight_like(shape: tuple[int, ...], dtype: str, *, embedding: bool = False) -> bool:
    """The one definition of "weight-like" every loader's inventory uses."""
    d = dtype.lower()
    numeric = any(
        k in d for k in ("float", "bfloat", "int", "uint", "fp8", "e4m3", "e5m2", "quant")
    )
    if not numeric or d in ("bool",):
        return False
    if embedding:
        return len(shape) >= 2
    if d.startswith(("int", "uint")) and "quant" not in d and "dequant" not in d:
        # plain integer buffers (num_batches_tracked, position ids) are not weights; quantized
        # integer weights are named as such by their loader ("int8 (quantized)")
        return False
    return len([x for x in shape if int(x) > 1]) >= 2


class LoadError(Exception):
    """A file that cannot be read: one line naming the reason (the CLI adds the path)."""


class UnsafeLoadError(LoadError):
    """A file that could not be read to the end *after* unsafe content was found in it.

    The framework would already have run what was found before it failed (a pickle executes as
    it is read), so the finding must survive the error: the engine reports both.
    """

    def __init__(self, message: str, unsafe: list[UnsafeContent]) -> None:
        super().__init__(message)
        self.unsafe = list(unsafe)


class UnsupportedFormat(LoadError):
    pass
