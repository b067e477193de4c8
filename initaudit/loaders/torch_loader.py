"""PyTorch checkpoints read with numpy alone: torch.save zips, legacy files, TorchScript, .pt2.

Nothing here imports torch or runs anything a file contains (checkpoint-formats.md):

* pickles go through :mod:`._pickle`, which only ever builds inert descriptions of tensors,
  storages and module objects;
* tensor bytes are memory-mapped from stored zip members (:mod:`._zip`) or from the data region
  of a legacy file and viewed with ``as_strided`` after every offset/size/stride was bounds-checked
  against the bytes that are really there;
* TorchScript ``code/`` files are parsed with ``ast.parse`` and walked by a tiny abstract
  interpreter that tracks which weighted submodule's output reaches which activation;
* ``.pt2`` graphs are plain JSON.

Activations come from the file's structure only: ``nn.Sequential`` order in pickled modules, the
``forward`` code of TorchScript, the aten graph of ``.pt2``. Anything else stays ``None``.
"""

from __future__ import annotations

import ast
import json
import math
import mmap
import re
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, cast

import numpy as np

from ..activations import parse_activation
from ..analysis.fans import torch_fans
from ..model import (
    Activation,
    ActivationKind,
    Convention,
    Layer,
    LoadedModel,
    LoadError,
    Role,
    UnsafeContent,
    UnsafeLoadError,
    WeightTensor,
)
from . import _pickle as P
from . import reparam, torch_inventory
from ._ranged import byte_source, read_items
from ._scan import SCAN_CAP, scan_blob, scan_zip, unvetted
from ._shared import UnderConstruction, describe
from ._zip import SafeZip
from .statedict import FlatTensor, group_state_dict
from .torch_mapping import map_frozen_constants, note_rebuilt, promote_raw_parameters

_mld: ModuleType | None
try:  # ml_dtypes is a runtime dependency; keep the import failure readable
    import ml_dtypes as _mld
except ImportError:  # pragma: no cover - declared in pyproject
    _mld = None

MAX_DEPTH = 200  # nesting of containers/modules we follow in a checkpoint object
MAX_NODES = 5_000_000
MAX_CODE_BYTES = 64 * 2**20
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# --------------------------------------------------------------------------------------------
# dtypes: one table, no branches
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _DType:
    name: str
    itemsize: int
    swap_unit: int  # byte-swap granularity for big-endian files (complex: per component)
    numpy: np.dtype | None  # None: no numpy equivalent (skipped with a reason)


def _ml(name: str) -> np.dtype | None:
    return np.dtype(getattr(_mld, name)) if _mld is not None and hasattr(_mld, name) else None


DTYPES: dict[str, _DType] = {
    d.name: d
    for d in (
        _DType("float32", 4, 4, np.dtype(np.float32)),
        _DType("float64", 8, 8, np.dtype(np.float64)),
        _DType("float16", 2, 2, np.dtype(np.float16)),
        _DType("bfloat16", 2, 2, _ml("bfloat16")),
        _DType("float8_e4m3fn", 1, 1, _ml("float8_e4m3fn")),
        _DType("float8_e5m2", 1, 1, _ml("float8_e5m2")),
        _DType("float8_e4m3fnuz", 1, 1, _ml("float8_e4m3fnuz")),
        _DType("float8_e5m2fnuz", 1, 1, _ml("float8_e5m2fnuz")),
        _DType("float8_e8m0fnu", 1, 1, _ml("float8_e8m0fnu")),
        _DType("int64", 8, 8, np.dtype(np.int64)),
        _DType("int32", 4, 4, np.dtype(np.int32)),
        _DType("int16", 2, 2, np.dtype(np.int16)),
        _DType("int8", 1, 1, np.dtype(np.int8)),
        _DType("uint8", 1, 1, np.dtype(np.uint8)),
        _DType("uint16", 2, 2, np.dtype(np.uint16)),
        _DType("uint32", 4, 4, np.dtype(np.uint32)),
        _DType("uint64", 8, 8, np.dtype(np.uint64)),
        _DType("bool", 1, 1, np.dtype(np.bool_)),
        _DType("complex64", 8, 4, np.dtype(np.complex64)),
        _DType("complex128", 16, 8, np.dtype(np.complex128)),
        _DType("complex32", 4, 2, None),
        _DType("float4_e2m1fn_x2", 1, 1, None),
        _DType("qint8", 1, 1, None),
        _DType("quint8", 1, 1, None),
        _DType("qint32", 4, 4, None),
        _DType("quint4x2", 1, 1, None),
        _DType("quint2x4", 1, 1, None),
    )
}

# torch/_export/serde/schema.py ScalarType codes (.pt2)
PT2_DTYPES: dict[int, str] = {
    1: "uint8",
    2: "int8",
    3: "int16",
    4: "int32",
    5: "int64",
    6: "float16",
    7: "float32",
    8: "float64",
    9: "complex32",
    10: "complex64",
    11: "complex128",
    12: "bool",
    13: "bfloat16",
    28: "uint16",
    29: "float8_e4m3fn",
    30: "float8_e5m2",
    31: "float8_e4m3fnuz",
    32: "float8_e5m2fnuz",
    33: "float8_e8m0fnu",
    34: "uint32",
    35: "uint64",
}


# --------------------------------------------------------------------------------------------
# module vocabulary (class short names as torch.nn spells them)
# --------------------------------------------------------------------------------------------
WEIGHTED_MODULES = frozenset(
    {
        "Linear",
        "LazyLinear",
        "Bilinear",
        "NonDynamicallyQuantizableLinear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "LazyConv1d",
        "LazyConv2d",
        "LazyConv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "LazyConvTranspose1d",
        "LazyConvTranspose2d",
        "LazyConvTranspose3d",
        "Embedding",
        "EmbeddingBag",
        "RNN",
        "LSTM",
        "GRU",
        "RNNCell",
        "LSTMCell",
        "GRUCell",
        "MultiheadAttention",
    }
)
NORM_MODULES = frozenset(
    {
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "SyncBatchNorm",
        "LazyBatchNorm1d",
        "LazyBatchNorm2d",
        "LazyBatchNorm3d",
        "LayerNorm",
        "GroupNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "LocalResponseNorm",
        "RMSNorm",
        "CrossMapLRN2d",
    }
)
PASS_THROUGH_MODULES = frozenset(
    {
        "Dropout",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "AlphaDropout",
        "FeatureAlphaDropout",
        "Flatten",
        "Unflatten",
        "Identity",
        "MaxPool1d",
        "MaxPool2d",
        "MaxPool3d",
        "AvgPool1d",
        "AvgPool2d",
        "AvgPool3d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveAvgPool3d",
        "AdaptiveMaxPool1d",
        "AdaptiveMaxPool2d",
        "AdaptiveMaxPool3d",
        "LPPool1d",
        "LPPool2d",
        "Upsample",
        "UpsamplingNearest2d",
        "UpsamplingBilinear2d",
        "ZeroPad1d",
        "ZeroPad2d",
        "ZeroPad3d",
        "ConstantPad1d",
        "ConstantPad2d",
        "ConstantPad3d",
        "ReflectionPad1d",
        "ReflectionPad2d",
        "ReflectionPad3d",
        "ReplicationPad1d",
        "ReplicationPad2d",
        "ReplicationPad3d",
        "CircularPad1d",
        "CircularPad2d",
        "CircularPad3d",
        "PixelShuffle",
        "PixelUnshuffle",
        "ChannelShuffle",
    }
)
# activation module -> (vocabulary name, attribute holding its parameter)
ACTIVATION_MODULES: dict[str, tuple[str, str | None]] = {
    "ReLU": ("relu", None),
    "LeakyReLU": ("leaky_relu", "negative_slope"),
    "PReLU": ("prelu", None),
    "ELU": ("elu", "alpha"),
    "CELU": ("celu", "alpha"),
    "SELU": ("selu", None),
    "Sigmoid": ("sigmoid", None),
    "Hardsigmoid": ("hardsigmoid", None),
    "Tanh": ("tanh", None),
    "Softmax": ("softmax", None),
    "LogSoftmax": ("logsoftmax", None),
    "Softmax2d": ("softmax", None),
    "Softplus": ("softplus", None),
    "GELU": ("gelu", None),
    "SiLU": ("silu", None),
    "Mish": ("mish", None),
    "ReLU6": ("relu6", None),
    "Hardtanh": ("hardtanh", None),
    "Hardswish": ("hardswish", None),
    "Softsign": ("Softsign", None),
    "Tanhshrink": ("Tanhshrink", None),
    "LogSigmoid": ("LogSigmoid", None),
    "RReLU": ("RReLU", None),
    "GLU": ("GLU", None),
    "Softmin": ("Softmin", None),
    "Threshold": ("Threshold", None),
}
# functional / aten activation names -> (vocabulary name, positional index of the parameter, kw)
ACTIVATION_FUNCS: dict[str, tuple[str, int | None, str | None]] = {
    "relu": ("relu", None, None),
    "relu_": ("relu", None, None),
    "leaky_relu": ("leaky_relu", 1, "negative_slope"),
    "leaky_relu_": ("leaky_relu", 1, "negative_slope"),
    "elu": ("elu", 1, "alpha"),
    "elu_": ("elu", 1, "alpha"),
    "celu": ("celu", 1, "alpha"),
    "selu": ("selu", None, None),
    "selu_": ("selu", None, None),
    "sigmoid": ("sigmoid", None, None),
    "sigmoid_": ("sigmoid", None, None),
    "hardsigmoid": ("hardsigmoid", None, None),
    "tanh": ("tanh", None, None),
    "tanh_": ("tanh", None, None),
    "softmax": ("softmax", None, None),
    "_softmax": ("softmax", None, None),
    "log_softmax": ("logsoftmax", None, None),
    "_log_softmax": ("logsoftmax", None, None),
    "softplus": ("softplus", None, None),
    "gelu": ("gelu", None, None),
    "gelu_": ("gelu", None, None),
    "silu": ("silu", None, None),
    "silu_": ("silu", None, None),
    "mish": ("mish", None, None),
    "relu6": ("relu6", None, None),
    "hardtanh": ("hardtanh", None, None),
    "hardtanh_": ("hardtanh", None, None),
    "hardswish": ("hardswish", None, None),
    "hardswish_": ("hardswish", None, None),
    "prelu": ("prelu", None, None),
    "_prelu_kernel": ("prelu", None, None),
}
PASS_THROUGH_FUNCS = frozenset(
    {
        "dropout",
        "dropout_",
        "feature_dropout",
        "alpha_dropout",
        "feature_alpha_dropout",
        "native_dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "flatten",
        "reshape",
        "view",
        "_unsafe_view",
        "contiguous",
        "squeeze",
        "unsqueeze",
        "clone",
        "detach",
        "alias",
        "to",
        "type_as",
        "float",
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "adaptive_avg_pool3d",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool3d",
        "_adaptive_avg_pool2d",
        "max_pool2d_with_indices",
        "pad",
        "constant_pad_nd",
        "upsample_nearest2d",
        "identity",
        "_to_copy",
        "expand",
        "permute",
        "transpose",
    }
)
NORM_FUNCS = frozenset(
    {
        "batch_norm",
        "layer_norm",
        "group_norm",
        "instance_norm",
        "native_batch_norm",
        "native_layer_norm",
        "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_functional",
        "rms_norm",
        "native_group_norm",
        "local_response_norm",
    }
)
# aten ops whose weight argument makes a layer in .pt2 graphs -> op name for the layer
PT2_WEIGHTED_OPS: dict[str, str] = {
    "linear": "Linear",
    "conv1d": "Conv1d",
    "conv2d": "Conv2d",
    "conv3d": "Conv3d",
    "convolution": "Conv",
    "conv_transpose1d": "ConvTranspose1d",
    "conv_transpose2d": "ConvTranspose2d",
    "conv_transpose3d": "ConvTranspose3d",
    "embedding": "Embedding",
    "addmm": "Linear",
    "lstm": "LSTM",
    "gru": "GRU",
    "rnn_tanh": "RNN",
    "rnn_relu": "RNN",
    "bilinear": "Bilinear",
}

_STATE_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
    "state_dict_ema",
    "ema",
    "model_ema",
    "ema_state_dict",
)
_SKIP_KEYS = frozenset(
    {
        "optimizer",
        "optimizer_states",
        "optimizer_state_dict",
        "optim",
        "optimizers",
        "lr_schedulers",
        "scheduler",
        "schedulers",
        "lr_scheduler",
        "callbacks",
        "loops",
        "amp_scaler",
        "scaler",
        "grad_scaler",
        "native_amp_scaling_state",
        "hyper_parameters",
        "hparams",
    }
)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def load(path: Path, fmt: str, options: Any) -> LoadedModel:
    """Read a PyTorch checkpoint of format ``fmt`` (see loaders/__init__.py) without torch."""
    readers: dict[str, Callable[[Path, Any], LoadedModel]] = {
        "pytorch-zip": _load_zip,
        "torchscript": _load_torchscript,
        "pt2": _load_pt2,
        "pytorch-legacy": _load_legacy,
    }
    reader = readers.get(fmt)
    if reader is None:
        raise LoadError(f"torch loader cannot read format {fmt!r}")
    _current().clear()
    try:
        try:
            return reader(Path(path), options)
        except LoadError:
            raise
        except RecursionError:
            raise LoadError("checkpoint nests objects too deeply") from None
        except MemoryError:
            raise LoadError(
                "checkpoint needs more memory than available (resource bomb?)"
            ) from None
        except (OSError, ValueError, struct.error) as exc:  # last line of defence: one line
            raise LoadError(
                f"cannot read PyTorch checkpoint ({type(exc).__name__}: {exc})"
            ) from None
    except LoadError as exc:
        # findings made before the error stand (torch would have run them before failing)
        prior = list(getattr(exc, "unsafe", ()))
        if fmt != "pytorch-legacy" and _current() and not _current()[0].unsafe:
            # the strict zip reader refused the archive: a laxer reader may not, so scan raw
            from ._scan import scan_zip_raw

            scan_zip_raw(Path(path), _current()[0], source=byte_source(options))
        found = list(prior)
        for m in _current():
            found += [u for u in m.unsafe if u not in found]
        if len(found) > len(prior):
            raise UnsafeLoadError(str(exc), found) from None
        raise
    finally:
        _current().clear()


# the model under construction (per thread), so an error raised deep in a reader keeps its
# findings
_current = UnderConstruction()


# --------------------------------------------------------------------------------------------
# storage sources and tensor materialisation
# --------------------------------------------------------------------------------------------
class _ZipSource:
    """Storages stored as ``<dir>/<key>`` members of a zip archive."""

    def __init__(self, zf: SafeZip, directory: str, big_endian: bool) -> None:
        self.zf, self.directory, self.big_endian = zf, directory, big_endian
        # a remote archive: a storage several tensors use (tied weights) is fetched once and
        # held until the last of them has loaded
        self._pending: dict[str, int] = {}
        self._held: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def claim(self, key: str) -> None:
        """One more tensor reads this storage."""
        self._pending[key] = self._pending.get(key, 0) + 1

    def member(self, key: str) -> str:
        return f"{self.directory}{key}"

    def nbytes(self, key: str) -> int | None:
        m = self.zf.get(self.member(key))
        if m is None:
            return None
        if not m.stored:
            raise LoadError(
                f"storage {self.member(key)!r} is compressed: tensor data must be stored"
            )
        return m.size

    def window(self, key: str, offset: int, length: int) -> np.ndarray:
        if self.zf.source is None or self._pending.get(key, 0) <= 1 and key not in self._held:
            return self.zf.window(self.member(key), offset, length)
        with self._lock:
            whole = self._held.get(key)
            if whole is None:
                whole = self.zf.memmap(self.member(key))
            self._pending[key] -= 1
            if self._pending[key] > 0:
                self._held[key] = whole
            else:
                self._held.pop(key, None)
        return whole[offset : offset + length]

    @property
    def sample_seed(self) -> int | None:
        return self.zf.sample_seed

    def read_items(
        self, key: str, offset: int, shape: tuple[int, ...], itemsize: int
    ) -> tuple[bytes, tuple[int, ...]]:
        """A remote storage's tensor read as samples (only with ``sample_seed`` set)."""
        assert self.zf.source is not None
        m = self.zf.member(self.member(key))
        return read_items(self.zf.source, m.data_offset + offset, shape, itemsize)


class _LegacySource:
    """Storages laid out one after another after the pickles of a pre-1.6 file."""

    def __init__(self, path: Path, spans: dict[str, tuple[int, int]], big_endian: bool) -> None:
        self.path, self.spans, self.big_endian = path, spans, big_endian

    def member(self, key: str) -> str:
        return f"storage {key}"

    def nbytes(self, key: str) -> int | None:
        span = self.spans.get(key)
        return None if span is None else span[1]

    def window(self, key: str, offset: int, length: int) -> np.ndarray:
        start, size = self.spans[key]
        if length == 0 or size == 0:
            return np.empty(0, np.uint8)
        return np.memmap(
            self.path, dtype=np.uint8, mode="r", offset=start + offset, shape=(length,)
        )


@dataclass
class _Entry:
    """One named tensor found in the checkpoint object."""

    name: str
    value: Any  # TensorRef | InlineArray | UnsupportedTensor


def _flat_tensor(name: str, t: P.TensorRef, source: Any, options: Any) -> FlatTensor | str:
    """Validate a TensorRef against the stored bytes; return a lazy FlatTensor or a skip reason."""
    dt = DTYPES.get(t.dtype)
    if dt is None:
        return f"unknown dtype {t.dtype}"
    st = t.storage
    stored = source.nbytes(st.key)
    if stored is None:
        raise LoadError(
            f"tensor {name!r}: its storage {source.member(st.key)!r} is missing (truncated archive?)"
        )
    if st.numel < 0:  # .pt2 raw weight: the storage is whatever the member holds
        if stored % dt.itemsize:
            raise LoadError(
                f"tensor {name!r}: {source.member(st.key)!r} holds {stored} bytes, "
                f"not a multiple of {dt.name}'s {dt.itemsize}"
            )
        st.numel = stored
    unit = (
        1 if st.dtype is None else DTYPES[st.dtype].itemsize if st.dtype in DTYPES else dt.itemsize
    )
    declared = st.numel * unit
    if declared != stored:
        raise LoadError(
            f"tensor {name!r}: storage {source.member(st.key)!r} declares {declared} bytes "
            f"but holds {stored}"
        )
    if len(t.size) != len(t.stride):
        raise LoadError(f"tensor {name!r}: {len(t.size)} sizes but {len(t.stride)} strides")
    if any(s < 0 for s in t.size) or any(s < 0 for s in t.stride) or t.offset < 0:
        raise LoadError(f"tensor {name!r}: negative size, stride or offset")
    numel = math.prod(t.size)
    max_bytes = int(getattr(options, "max_tensor_bytes", 64 * 2**30))
    if numel * dt.itemsize > max_bytes:
        raise LoadError(f"tensor {name!r} declares shape {t.size} ({numel} elements): absurd size")
    base, limit = 0, stored // dt.itemsize
    if st.view is not None:  # legacy storage view: (view_key, offset, size) in elements
        try:
            base, limit = int(st.view[1]), int(st.view[1]) + int(st.view[2])
        except (TypeError, ValueError, IndexError):
            raise LoadError(f"tensor {name!r}: malformed storage view") from None
        if limit > stored // dt.itemsize or base < 0:
            raise LoadError(f"tensor {name!r}: storage view reaches beyond its storage")
    start = base + t.offset
    if numel:
        last = start + sum((n - 1) * s for n, s in zip(t.size, t.stride))
        if last >= limit:
            raise LoadError(
                f"tensor {name!r}: shape {t.size} with strides {t.stride} at offset "
                f"{t.offset} reaches beyond its storage ({limit} elements)"
            )
    span = max(limit - start, 1)
    if numel * dt.itemsize > _REPEAT_BYTES and numel > _REPEAT_FACTOR * span:
        # zero or overlapping strides: a few stored values viewed as billions (a 1.5 KB file
        # declaring 10**10 elements took 30 s to analyse); their distinct values are few
        return (
            f"shape {tuple(t.size)} with strides {tuple(t.stride)} repeats at most {span} stored "
            f"elements as {numel} (zero or overlapping strides): not analysed"
        )
    if dt.numpy is None:
        return f"dtype {dt.name} has no numpy equivalent"
    size, stride, big = t.size, t.stride, bool(getattr(source, "big_endian", False))
    # only the elements the tensor spans are read (a view of a larger storage, a remote
    # archive: the rest of the storage is never fetched)
    extent = (last - start + 1) if numel else 0
    contiguous = tuple(stride) == _c_strides(tuple(size))

    def load() -> np.ndarray:
        if numel == 0:
            return np.empty(size, dtype=dt.numpy)
        if getattr(source, "sample_seed", None) is not None and contiguous:
            # a remote archive read as samples (--sample-only): whole rows of the tensor
            raw, got = source.read_items(st.key, start * dt.itemsize, tuple(size), dt.itemsize)
            return _as_values(np.frombuffer(raw, np.uint8), dt, big).reshape(got)
        values = _as_values(
            source.window(st.key, start * dt.itemsize, extent * dt.itemsize), dt, big
        )
        return np.lib.stride_tricks.as_strided(
            values,
            shape=size,
            strides=tuple(s * dt.itemsize for s in stride),
            writeable=False,
        )

    return FlatTensor(name=name, shape=tuple(size), dtype=dt.name, load=load)


_REPEAT_BYTES = 64 * 2**20  # an expanded view this large that repeats its storage is skipped
_REPEAT_FACTOR = 4


def _c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def _as_values(raw: np.ndarray, dt: Any, big: bool) -> np.ndarray:
    """Stored bytes (uint8) as the tensor's dtype, byte-swapped from a big-endian archive."""
    if big and dt.swap_unit > 1:
        raw = raw.view(f">u{dt.swap_unit}").astype(f"<u{dt.swap_unit}")
    return raw.view(dt.numpy)


def _inline_flat(name: str, t: P.InlineArray) -> FlatTensor | str:
    arr = t.array
    if arr.dtype.kind not in "biufc":
        return f"inline array of dtype {arr.dtype} is not numeric"
    return FlatTensor(name=name, shape=tuple(arr.shape), dtype=t.dtype, load=lambda: arr)


def _materialise(
    entries: list[_Entry], source: Any, options: Any, model: LoadedModel
) -> tuple[list[FlatTensor], dict[str, str]]:
    """FlatTensors for readable entries; the rest go to ``model.skipped``. Also returns the
    tensor-name -> first-name map of tensors that share a storage (tied weights)."""
    flats: list[FlatTensor] = []
    first_owner: dict[str, str] = {}
    shared: dict[str, str] = {}
    for e in entries:
        v = e.value
        if isinstance(v, P.TensorRef):
            if source is None:
                model.skipped.append((e.name, "tensor data outside this pickle"))
                continue
            ft = _flat_tensor(e.name, v, source, options)
            key = v.storage.key
            if not isinstance(ft, str) and hasattr(source, "claim"):
                source.claim(key)
            if key in first_owner:
                shared[e.name] = first_owner[key]
            else:
                first_owner[key] = e.name
        elif isinstance(v, P.InlineArray):
            ft = _inline_flat(e.name, v)
        elif isinstance(v, np.ndarray):
            ft = _inline_flat(e.name, P.InlineArray(v, v.dtype.name))
        elif isinstance(v, P.UnsupportedTensor):
            ft = v.reason
        else:
            continue
        if isinstance(ft, str):
            model.skipped.append((e.name, ft))
        else:
            flats.append(ft)
    return flats, shared


# --------------------------------------------------------------------------------------------
# walking unpickled objects
# --------------------------------------------------------------------------------------------
def _is_tensor(v: Any) -> bool:
    # numpy arrays rebuilt by the restricted unpickler (a pickled dict of arrays) count too
    return isinstance(v, (P.TensorRef, P.InlineArray, P.UnsupportedTensor)) or (
        isinstance(v, np.ndarray) and v.ndim >= 1 and v.dtype.kind in "biuf"
    )


class _Walker:
    """Depth- and size-bounded traversal of the inert object tree (no recursion bombs)."""

    def __init__(self) -> None:
        self.nodes = 0

    def tick(self, depth: int) -> None:
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise LoadError(f"checkpoint object nests deeper than {MAX_DEPTH} levels")
        if self.nodes > MAX_NODES:
            raise LoadError("checkpoint object has too many entries (resource bomb?)")

    def tensors(
        self, obj: Any, prefix: str, depth: int = 0, seen: set[int] | None = None
    ) -> Iterator[_Entry]:
        """Every tensor under ``obj`` named by its dotted path (state_dict naming)."""
        seen = set() if seen is None else seen
        self.tick(depth)
        obj = P.unwrap(obj)
        if _is_tensor(obj):
            yield _Entry(prefix or "tensor", obj)
            return
        if isinstance(obj, (dict, list, tuple, P.Stub)):
            if id(obj) in seen:
                return
            seen.add(id(obj))
        join: Callable[[Any], str] = lambda k: f"{prefix}.{k}" if prefix else str(k)
        if isinstance(obj, P.Stub):
            if _is_module_stub(obj):
                node = self.module_tree(obj, prefix, depth)
                yield from node.entries()
                return
            for k, v in list(obj.items.items()) + list(obj.state.items()):
                yield from self.tensors(v, join(k), depth + 1, seen)
            for i, v in enumerate(obj.list_items):
                yield from self.tensors(v, join(i), depth + 1, seen)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from self.tensors(v, join(k), depth + 1, seen)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from self.tensors(v, join(i), depth + 1, seen)

    def module_tree(self, stub: P.Stub, path: str, depth: int = 0) -> _ModuleNode:
        """nn.Module stubs (``_modules``/``_parameters``/``_buffers``) and TorchScript objects."""
        self.tick(depth)
        node = _ModuleNode(path=path, qualname=stub.qualname, attrs={})
        state = stub.state
        if "_modules" in state or "_parameters" in state:
            for group in ("_parameters", "_buffers"):
                params = state.get(group)
                if isinstance(params, dict):
                    for k, v in params.items():
                        v = P.unwrap(v)
                        if _is_tensor(v):
                            node.tensors.append((str(k), v))
            mods = state.get("_modules")
            if isinstance(mods, dict):
                for k, v in mods.items():
                    if isinstance(v, P.Stub):
                        node.children.append(self.module_tree(v, _join(path, str(k)), depth + 1))
            # a damaged pickle can put any object where attribute names go
            node.attrs = {
                k: v for k, v in state.items() if isinstance(k, str) and not k.startswith("_")
            }
        else:  # TorchScript: submodules, tensors and attributes share one dict
            for k, v in state.items():
                v = P.unwrap(v)
                if isinstance(v, P.Stub) and _is_module_stub(v):
                    node.children.append(self.module_tree(v, _join(path, str(k)), depth + 1))
                elif _is_tensor(v):
                    node.tensors.append((str(k), v))
                elif isinstance(k, str):
                    node.attrs[k] = v
        return node


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_module_stub(obj: Any) -> bool:
    if not isinstance(obj, P.Stub):
        return False
    return "_modules" in obj.state or "_parameters" in obj.state or obj.kind == "torchscript"


_MANGLE = re.compile(r"\.___torch_mangle_\d+")


def _plain_class(qualname: str) -> str:
    """``__torch__.torch.nn.modules.linear.___torch_mangle_0.Linear`` -> ``torch.nn.modules.linear.Linear``."""
    q = _MANGLE.sub("", qualname)
    return q[len("__torch__.") :] if q.startswith("__torch__.") else q


@dataclass(eq=False)
class _ModuleNode:
    path: str
    qualname: str
    attrs: dict[str, Any]
    tensors: list[tuple[str, Any]] = field(default_factory=list)
    children: list[_ModuleNode] = field(default_factory=list)

    @property
    def cls(self) -> str:
        """Short class name (``Linear``)."""
        return _plain_class(self.qualname).rpartition(".")[2]

    @property
    def is_torch_class(self) -> bool:
        return _plain_class(self.qualname).startswith("torch.nn.")

    def walk(self) -> Iterator[_ModuleNode]:
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def entries(self) -> Iterator[_Entry]:
        for node in self.walk():
            for name, t in node.tensors:
                yield _Entry(_join(node.path, name), t)

    def weighted(self) -> bool:
        if self.cls in WEIGHTED_MODULES:
            return True
        if self.cls in NORM_MODULES or self.cls in ACTIVATION_MODULES:
            return False
        return (
            any(
                isinstance(t, P.TensorRef) and n == "weight" and len(t.size) >= 2
                for n, t in self.tensors
            )
            and not self.children
        )


# --------------------------------------------------------------------------------------------
# building the model
# --------------------------------------------------------------------------------------------
def _new_model(path: Path, fmt: str) -> LoadedModel:
    model = LoadedModel(path=str(path), format=fmt, framework="pytorch")
    _current().append(model)
    return model


def _build_layers(
    model: LoadedModel,
    flats: list[FlatTensor],
    shared: dict[str, str],
    modules: dict[str, _ModuleNode] | None,
) -> None:
    layers, loose = group_state_dict(flats, Convention.TORCH)
    if modules:
        order = {f.name: i for i, f in enumerate(flats)}
        layers, loose = _refine_with_modules(layers, loose, modules, order)
    model.layers, model.loose_tensors = layers, loose
    if shared:
        for t in model.tensors():
            if t.name in shared:
                t.notes.append(f"shares storage with {shared[t.name]}")
        model.notes.append(
            f"{len(shared)} tensor(s) share storage with another (tied weights): "
            "each is reported under its own name"
        )


def _refine_with_modules(
    layers: list[Layer],
    loose: list[WeightTensor],
    modules: dict[str, _ModuleNode],
    order: dict[str, int],
) -> tuple[list[Layer], list[WeightTensor]]:
    """Use the module classes of a pickled/scripted model to fix roles, ops and unit axes."""
    tensors = sorted(
        [t for layer in layers for t in layer.tensors] + loose,
        key=lambda t: order.get(t.name, len(order)),
    )  # the file's order
    for t in tensors:
        node = modules.get(t.layer)
        if node is None:
            continue
        cls = node.cls
        leaf = t.name.rpartition(".")[2]
        if cls in NORM_MODULES:
            t.op = cls
            if leaf in ("weight", "bias"):
                t.role = Role.NORM_SCALE if leaf == "weight" else Role.NORM_SHIFT
                t.fan_in = t.fan_out = t.unit_axis = None
        elif cls in ACTIVATION_MODULES:
            t.op, t.role, t.fan_in, t.fan_out, t.unit_axis = cls, Role.OTHER, None, None, None
        elif cls in WEIGHTED_MODULES or node.weighted():
            t.op = cls
            if cls in ("Embedding", "EmbeddingBag") and leaf == "weight" and len(t.shape) == 2:
                t.role, t.unit_axis = Role.EMBEDDING, 0
                t.fan_in, t.fan_out = torch_fans(t.shape)
            if cls.startswith(("ConvTranspose", "LazyConvTranspose")) and t.role is Role.KERNEL:
                t.unit_axis = 1  # (in, out/g, *k): output units run along dim 1
            groups = node.attrs.get("groups")
            if isinstance(groups, int) and groups > 1 and t.role is Role.KERNEL:
                t.notes.append(f"groups={groups}")
    # regroup: a module with a weight-like tensor is a layer; loose otherwise
    keep_roles = {
        Role.KERNEL,
        Role.BIAS,
        Role.NORM_SCALE,
        Role.NORM_SHIFT,
        Role.EMBEDDING,
        Role.RECURRENT,
    }
    by_layer: dict[str, list[WeightTensor]] = {}
    for t in tensors:
        by_layer.setdefault(t.layer, []).append(t)
    old = {layer.name: layer for layer in layers}
    new_layers: list[Layer] = []
    new_loose: list[WeightTensor] = []
    for name, ts in by_layer.items():
        if not any(t.role in keep_roles for t in ts):
            new_loose.extend(ts)
            continue
        layer = old.get(name) or Layer(name=name, op=ts[0].op)
        layer.tensors = ts
        node = modules.get(name)
        if node is not None and (
            node.cls in WEIGHTED_MODULES or node.cls in NORM_MODULES or node.weighted()
        ):
            layer.op = node.cls
        new_layers.append(layer)
    return new_layers, new_loose


def _activation_from_module(node: _ModuleNode, source: str) -> Activation:
    name, attr = ACTIVATION_MODULES[node.cls]
    param = node.attrs.get(attr) if attr else None
    param = (
        float(param) if isinstance(param, (int, float)) and not isinstance(param, bool) else None
    )
    act = parse_activation(name, param=param, source=source)
    raw = node.cls if param is None else f"{node.cls}({param:g})"
    if node.cls == "GELU" and isinstance(node.attrs.get("approximate"), str):
        raw = f"GELU(approximate={node.attrs['approximate']!r})"
    return Activation(act.kind, act.param, source, raw)  # type: ignore[union-attr]


def _sequence(node: _ModuleNode, flattened: set[int]) -> list[_ModuleNode]:
    """Children of a Sequential with nested Sequentials flattened (they run in order too)."""
    out: list[_ModuleNode] = []
    for child in node.children:
        if child.cls == "Sequential" and child.is_torch_class:
            flattened.add(id(child))
            out.extend(_sequence(child, flattened))
        else:
            out.append(child)
    return out


def _sequential_activations(root: _ModuleNode) -> tuple[dict[str, Activation | None], set[str]]:
    """Activations of weighted modules inside ``nn.Sequential`` containers, by module path.

    Returns (path -> activation, paths whose output is normalized before the activation).
    """
    acts: dict[str, Activation | None] = {}
    normalized: set[str] = set()
    nested: set[int] = set()
    for node in root.walk():
        if not (node.cls == "Sequential" and node.is_torch_class) or id(node) in nested:
            continue
        current: str | None = None
        for item in _sequence(node, nested):
            if item.cls in ACTIVATION_MODULES:
                if current is not None:
                    acts[current] = _activation_from_module(item, "sequential")
                    current = None
            elif item.cls in NORM_MODULES:
                if current is not None:
                    normalized.add(current)
            elif item.cls in PASS_THROUGH_MODULES:
                continue
            elif item.weighted():
                if current is not None:  # straight into the next weighted layer
                    acts[current] = Activation(
                        ActivationKind.LINEAR, source="sequential", raw="(none)"
                    )
                current = item.path
            else:  # a block whose forward we cannot see: what follows `current` is unknown
                current = None
        if current is not None and node is root:
            acts[current] = Activation(
                ActivationKind.LINEAR, source="sequential", raw="graph output"
            )
    return acts, normalized


def _apply_activations(
    model: LoadedModel, acts: dict[str, Activation | None], normalized: set[str]
) -> None:
    for layer in model.layers:
        if layer.name in acts:
            layer.activation = acts[layer.name]
        if layer.name in normalized:
            layer.normalized = True


def _report_pickle(model: LoadedModel, ctx: P.UnpickleContext) -> None:
    for item in ctx.unsafe:
        if item not in model.unsafe:
            model.unsafe.append(item)
    if ctx.class_refs:
        names = ", ".join(ctx.class_refs[:8]) + (" ..." if len(ctx.class_refs) > 8 else "")
        model.notes.append(
            f"pickle references classes rebuilt as inert stubs (never imported; "
            f"torch.load would import them): {names}"
        )


def _select_weights(root: Any, model: LoadedModel) -> list[tuple[str, Any]]:
    """Pick every model out of a checkpoint object: (name prefix, object) pairs.

    The primary model (the first of ``_STATE_KEYS``) keeps its state_dict names; every other
    entry that holds weights (EMA copy, discriminator, heads...) is read too, under its key.
    """
    root = P.unwrap(root)
    if not isinstance(root, dict) or isinstance(root, P.Stub):
        return [("", root)]
    direct = [k for k, v in root.items() if _is_tensor(P.unwrap(v))]
    if direct and not any(k in _SKIP_KEYS for k in root):
        return [("", root)]
    for key in _STATE_KEYS:
        if key in root and _holds_weights(root[key]):
            primary = P.unwrap(root[key])
            others = [
                k
                for k in root
                if k != key
                and k not in _SKIP_KEYS
                and P.unwrap(root[k]) is not primary
                and _holds_weights(root[k])
            ]
            ignored = [str(k) for k in root if k in _SKIP_KEYS]
            note = f"weights read from checkpoint[{key!r}]"
            if others:
                note += "; also read, each under its key: " + ", ".join(str(k) for k in others[:6])
            if ignored:
                note += f"; ignored (training state): {', '.join(ignored[:6])}"
            model.notes.append(note)
            return [("", root[key])] + [(str(k), root[k]) for k in others]
    kept = {k: v for k, v in root.items() if k not in _SKIP_KEYS}
    dropped = [str(k) for k in root if k in _SKIP_KEYS]
    if dropped:
        model.notes.append(f"ignored non-model entries: {', '.join(dropped[:6])}")
    return [("", kept)]


def _holds_weights(value: Any) -> bool:
    value = P.unwrap(value)
    if isinstance(value, P.Stub):
        return _is_module_stub(value)
    if isinstance(value, dict):
        return any(
            _is_tensor(P.unwrap(v)) or isinstance(v, dict) for v in list(value.values())[:1000]
        )
    return False


def _model_from_object(
    model: LoadedModel, root: Any, source: Any, options: Any, *, hf_dir: Path | None
) -> LoadedModel:
    """Shared by zip and legacy files: state_dict / checkpoint dict / whole module."""
    walker = _Walker()
    entries: list[_Entry] = []
    trees: list[_ModuleNode] = []
    for prefix, obj in _select_weights(root, model):
        obj = P.unwrap(obj)
        if isinstance(obj, P.Stub) and _is_module_stub(obj):
            tree = walker.module_tree(obj, prefix)
            trees.append(tree)
            entries.extend(tree.entries())
        else:
            entries.extend(walker.tensors(obj, prefix))
    flats, shared = _materialise(entries, source, options, model)
    flats, rebuilt = reparam.reconstruct(flats)
    modules = {n.path: n for tree in trees for n in tree.walk()}
    _build_layers(model, flats, shared, modules or None)
    note_rebuilt(model, rebuilt)
    promote_raw_parameters(
        model, {e.name for e in entries if isinstance(e.value, P.TensorRef) and e.value.is_param}
    )
    for tree in trees:
        acts, normalized = _sequential_activations(tree)
        _apply_activations(model, acts, normalized)
    if trees:
        model.metadata["root_module"] = _plain_class(trees[0].qualname)
        model.notes.append(
            "whole nn.Module pickle: activations read from nn.Sequential order only; "
            "functional activations inside forward() are not stored in the file"
        )
    elif not entries:
        model.notes.append("the checkpoint holds no tensors")
    model.inventory = torch_inventory.build(
        model, root, entries, rebuilt, _SKIP_KEYS, _itemsize, walker.tick, _storage_sizes(source)
    )
    if hf_dir is not None and not trees:
        _maybe_apply_hf_config(model, hf_dir)
    return model


def _storage_sizes(source: Any) -> dict[str, int] | None:
    """key -> byte size of every storage the archive holds (for the inventory's cross-check)."""
    if isinstance(source, _LegacySource):
        return {k: size for k, (_, size) in source.spans.items()}
    if isinstance(source, _ZipSource):
        out: dict[str, int] = {}
        for name in source.zf.names():
            if name.startswith(source.directory) and not name.endswith("/"):
                m = source.zf.get(name)
                out[name[len(source.directory) :]] = m.size if m is not None else 0
        return out
    return None


def _itemsize(dtype: str) -> int:
    dt = DTYPES.get(dtype)
    return dt.itemsize if dt is not None else 1


def _maybe_apply_hf_config(model: LoadedModel, directory: Path) -> None:
    # HF-CONFIG CALL SITE: a Hugging Face config.json beside a state_dict supplies activations
    try:
        from .hf import apply_hf_config
    except ImportError:
        return
    apply_hf_config(model, directory)


# --------------------------------------------------------------------------------------------
# torch.save zip archives
# --------------------------------------------------------------------------------------------
def _archive_prefix(zf: SafeZip, marker: str) -> str:
    """The top folder holding ``marker`` at depth one (its name is arbitrary).

    Resolved as torch's reader does: names compared case-insensitively. Several candidate
    folders are an error (every pickle of the archive was scanned before, see
    :func:`._scan.scan_zip`, so their findings survive it).
    """
    want = "/" + marker.casefold()
    hits = sorted(
        {n[: -len(marker)] for n in zf.names() if n.count("/") == 1 and n.casefold().endswith(want)}
    )
    if not hits:
        raise LoadError(f"torch archive has no top-level */{marker}")
    if len(hits) > 1:  # torch would pick one by entry order; a scanner must not guess
        raise LoadError(f"torch archive has {len(hits)} */{marker} members (ambiguous)")
    return hits[0]


def _byteorder(zf: SafeZip, prefix: str) -> bool:
    """True for big-endian archives."""
    m = zf.get(prefix + "byteorder")
    if m is None:
        return False
    text = zf.read(prefix + "byteorder", cap=64).decode("ascii", errors="replace").strip()
    if text not in ("little", "big"):
        raise LoadError(f"torch archive has an unknown byteorder {text!r}")
    return text == "big"


def _storage_loader(source: Any) -> Callable[[Any], Any]:
    def persistent_load(pid: Any) -> Any:
        return P.parse_storage_pid(pid)

    return persistent_load


def _load_zip(path: Path, options: Any) -> LoadedModel:
    model = _new_model(path, "pytorch-zip")
    # a remote archive (initaudit.remote): the same reader over ranged requests
    remote = byte_source(options)
    # local: every storage is a memmap of the archive by path (stored members only)
    model.fork_safe = remote is None
    with SafeZip(path, remote) as zf:
        scan_zip(zf, model)
        prefix = _archive_prefix(zf, "data.pkl")
        source = _ZipSource(zf, prefix + "data/", _byteorder(zf, prefix))
        pkl = prefix + "data.pkl"
        data = zf.read(pkl)
        root, _, ctx = P.unpickle(data, location=pkl, persistent_load=_storage_loader(source))
        _report_pickle(model, ctx)
        if source.big_endian:
            model.notes.append("big-endian archive: tensors byte-swapped on load")
        return _model_from_object(model, root, source, options, hf_dir=path.parent)


# --------------------------------------------------------------------------------------------
# legacy (pre-1.6) files
# --------------------------------------------------------------------------------------------
def _load_legacy(path: Path, options: Any) -> LoadedModel:
    model = _new_model(path, "pytorch-legacy")
    model.fork_safe = True  # local only; every storage is a memmap of the file by path
    with open(path, "rb") as fh:
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            raise LoadError("file is empty") from None
    try:
        return _read_legacy(path, memoryview(mm), model, options)
    finally:
        try:
            mm.close()
        except BufferError:  # a memoryview slice still alive: the GC closes it later
            pass


def _read_legacy(path: Path, buf: memoryview, model: LoadedModel, options: Any) -> LoadedModel:
    loc = path.name
    # one context for every pickle of the file: torch.load unpickles each of them, so a finding
    # in the magic-number, protocol, sys_info or key-list pickle counts as much as the root's
    ctx = P.UnpickleContext(location=loc)
    try:
        magic, pos, ctx = P.unpickle(buf, location=loc, ctx=ctx)
        if magic != LEGACY_MAGIC:
            # a plain pickle, not torch's legacy layout: read it (restricted) for what it holds
            _report_pickle(model, ctx)
            if pos < len(buf):  # pickle.load-style readers may read further pickles
                scan_blob(
                    bytes(buf[pos : pos + (256 << 20)]),
                    f"{loc} (after the first pickle)",
                    model,
                    required=False,
                )
            model.format = "pytorch-legacy"
            model.notes.append(
                "plain pickle file (not a torch checkpoint layout): no tensor storages"
            )
            return _model_from_object(model, magic, None, options, hf_dir=None)
        protocol, pos, ctx = P.unpickle(buf, location=loc, pos=pos, ctx=ctx)
        sys_info, pos, ctx = P.unpickle(buf, location=loc, pos=pos, ctx=ctx)
    finally:
        _report_pickle(model, ctx)
    if protocol != 1001:
        raise LoadError(f"unsupported legacy torch protocol {protocol!r}")
    little = not (isinstance(sys_info, dict) and sys_info.get("little_endian") is False)
    storages: dict[str, P.StorageRef] = {}

    def persistent_load(pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            return pid[1] if len(pid) > 1 else P.Placeholder("module")
        ref = P.parse_storage_pid(pid)
        storages.setdefault(ref.key, ref)
        return ref

    try:
        root, pos, ctx = P.unpickle(
            buf, location=loc, pos=pos, persistent_load=persistent_load, ctx=ctx
        )
        keys, pos, ctx = P.unpickle(buf, location=loc, pos=pos, ctx=ctx)
    finally:
        _report_pickle(model, ctx)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise LoadError("legacy checkpoint: malformed storage key list")
    spans: dict[str, tuple[int, int]] = {}
    order: Literal["little", "big"] = "little" if little else "big"
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise LoadError(f"legacy checkpoint: storage {key!r} is not referenced by the pickle")
        if pos + 8 > len(buf):
            raise LoadError(f"legacy checkpoint truncated before storage {key!r}")
        numel = int.from_bytes(buf[pos : pos + 8], order)
        pos += 8
        unit = DTYPES[ref.dtype].itemsize if ref.dtype in DTYPES else 1
        nbytes = numel * unit
        if numel != ref.numel:
            raise LoadError(
                f"legacy checkpoint: storage {key!r} declares {ref.numel} elements "
                f"but its record holds {numel}"
            )
        if pos + nbytes > len(buf):
            raise LoadError(f"legacy checkpoint truncated inside storage {key!r}")
        spans[key] = (pos, nbytes)
        pos += nbytes
    source = _LegacySource(path, spans, big_endian=not little)
    # storages referenced but absent from the key list stay missing -> LoadError on use
    return _model_from_object(model, root, source, options, hf_dir=path.parent)


# --------------------------------------------------------------------------------------------
# TorchScript
# --------------------------------------------------------------------------------------------
def _load_torchscript(path: Path, options: Any) -> LoadedModel:
    model = _new_model(path, "torchscript")
    model.has_graph = True
    with SafeZip(path) as zf:
        scan_zip(zf, model)
        prefix = _archive_prefix(zf, "data.pkl")
        big = _byteorder(zf, prefix)
        source = _ZipSource(zf, prefix + "data/", big)
        pkl = prefix + "data.pkl"
        root, _, ctx = P.unpickle(
            zf.read(pkl), location=pkl, persistent_load=_storage_loader(source)
        )
        _report_pickle(model, ctx)
        root = P.unwrap(root)
        if not (isinstance(root, P.Stub) and _is_module_stub(root)):
            raise LoadError("TorchScript archive: data.pkl does not hold a scripted module")
        tree = _Walker().module_tree(root, "")
        entries = list(tree.entries())
        entries.extend(_torchscript_constants(zf, prefix, model))
        const_source = _ZipSource(zf, prefix + "constants/", big)
        flats, shared = _materialise(
            [e for e in entries if not e.name.startswith("CONSTANTS.")], source, options, model
        )
        cflats, _ = _materialise(
            [e for e in entries if e.name.startswith("CONSTANTS.")],
            const_source if _has_dir(zf, prefix + "constants/") else source,
            options,
            model,
        )
        modules = {n.path: n for n in tree.walk()}
        _build_layers(model, flats + cflats, shared, modules)
        code = _read_code(zf, prefix, model)
        map_frozen_constants(model, code)
        model.inventory = torch_inventory.build(
            model,
            {
                "data": root,
                "CONSTANTS": [e.value for e in entries if e.name.startswith("CONSTANTS.")],
            },
            entries,
            [],
            frozenset(),
            _itemsize,
            _Walker().tick,
            _storage_sizes(source),
        )
    model.metadata["root_module"] = _plain_class(tree.qualname)
    model.notes.append("TorchScript code was parsed statically (ast), never executed")
    if code:
        acts, normalized, notes = _TSInterpreter(code, tree).run()
        model.notes.extend(notes)
        _apply_activations(model, acts, normalized)
    else:
        model.notes.append("TorchScript archive has no readable code/: activations unknown")
    return model


def _has_dir(zf: SafeZip, directory: str) -> bool:
    return any(n.startswith(directory) for n in zf.names())


def _torchscript_constants(zf: SafeZip, prefix: str, model: LoadedModel) -> list[_Entry]:
    name = prefix + "constants.pkl"
    if zf.get(name) is None:
        return []
    value, _, ctx = P.unpickle(zf.read(name), location=name, persistent_load=P.parse_storage_pid)
    _report_pickle(model, ctx)
    items = value if isinstance(value, (tuple, list)) else ()
    return [
        _Entry(f"CONSTANTS.c{i}", P.unwrap(v))
        for i, v in enumerate(items)
        if _is_tensor(P.unwrap(v))
    ]


_DANGEROUS_CODE_NAMES = frozenset(
    {
        "os",
        "posix",
        "nt",
        "subprocess",
        "sys",
        "__import__",
        "eval",
        "exec",
        "open",
        "compile",
        "builtins",
        "__builtins__",
        "importlib",
        "socket",
        "shutil",
        "pty",
        "runpy",
        "webbrowser",
        "ctypes",
        "pickle",
        "marshal",
        "globals",
        "locals",
        "breakpoint",
    }
)


def _read_code(zf: SafeZip, prefix: str, model: LoadedModel) -> dict[str, ast.Module]:
    """Parse ``code/__torch__/**.py`` into module-qualname -> AST; flag dangerous references."""
    code_dir = prefix + "code/"
    out: dict[str, ast.Module] = {}
    total = 0
    for name in zf.names():
        if not (name.startswith(code_dir) and name.endswith(".py")):
            continue
        text = zf.read(name, cap=MAX_CODE_BYTES)
        total += len(text)
        if total > MAX_CODE_BYTES:
            raise LoadError("TorchScript archive holds more code than the 64 MiB limit")
        rel = name[len(code_dir) : -3]
        try:
            tree = ast.parse(text.decode("utf-8", errors="replace"), filename=rel)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            model.notes.append(
                f"TorchScript code {rel}.py could not be parsed: activations may be unknown"
            )
            continue
        _flag_code(tree, name, model)
        out[rel.replace("/", ".")] = tree
    return out


def _flag_code(tree: ast.Module, member: str, model: LoadedModel) -> None:
    """Ordinary TorchScript code is the format, not a finding; references to the OS are."""
    seen: set[str] = set()
    bound = {
        a.arg
        for n in ast.walk(tree)
        if isinstance(n, ast.arguments)
        for a in n.args + n.kwonlyargs + n.posonlyargs
    }
    bound |= {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    for node in ast.walk(tree):
        hit = None
        if isinstance(node, ast.Name) and node.id in _DANGEROUS_CODE_NAMES and node.id not in bound:
            hit = node.id
        elif isinstance(node, ast.Attribute) and node.attr in (
            "system",
            "popen",
            "Popen",
            "__import__",
        ):
            hit = f"...{node.attr}"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            bad = [
                n for n in names if n.split(".")[0] not in ("torch", "__torch__", "typing", "math")
            ]
            hit = f"import {', '.join(bad)}" if bad else None
        if hit and hit not in seen:
            seen.add(hit)
            item = UnsafeContent(
                what=f"TorchScript code references {hit} (never executed)", location=member
            )
            if item not in model.unsafe:
                model.unsafe.append(item)


# -- a tiny abstract interpreter over TorchScript forward() code ------------------------------
@dataclass(frozen=True)
class _Mod:
    node: _ModuleNode


@dataclass(frozen=True)
class _Fn:
    qualname: str


@dataclass(frozen=True)
class _T:
    """A tensor value: the weighted modules whose raw output it still is."""

    srcs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Const:
    value: Any


@dataclass(frozen=True)
class _Tuple:
    items: tuple[Any, ...]


_UNKNOWN = _T()
_LINEAR = Activation(ActivationKind.LINEAR, source="torchscript", raw="(none)")
_OUTPUT = Activation(ActivationKind.LINEAR, source="torchscript", raw="graph output")
_OPAQUE = "opaque"  # observation: the output went into an op we cannot see through


class _TSInterpreter:
    MAX_CALL_DEPTH = 40
    MAX_STEPS = 200_000

    def __init__(self, code: dict[str, ast.Module], tree: _ModuleNode) -> None:
        self.classes: dict[str, ast.ClassDef] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        for module, parsed in code.items():
            for stmt in parsed.body:
                if isinstance(stmt, ast.ClassDef):
                    self.classes[f"{module}.{stmt.name}"] = stmt
                elif isinstance(stmt, ast.FunctionDef):
                    self.functions[f"{module}.{stmt.name}"] = stmt
        self.tree = tree
        self.obs: dict[str, list[Any]] = {}
        self.normalized: set[str] = set()
        self.steps = 0
        self.notes: list[str] = []

    # -- results ------------------------------------------------------------------------------
    def run(self) -> tuple[dict[str, Activation | None], set[str], list[str]]:
        try:
            result = self.call_module(self.tree, [_T()], depth=0, top=True)
            for src in self.tensor_srcs(result):
                self.observe(src, _OUTPUT)
        except _Abort as exc:
            self.notes.append(
                f"TorchScript forward() analysis stopped early ({exc}): some activations unknown"
            )
        acts: dict[str, Activation | None] = {}
        conflicts = []
        for path, seen in self.obs.items():
            kinds = {(a.kind, a.param) if isinstance(a, Activation) else a for a in seen}
            if len(kinds) == 1 and isinstance(seen[0], Activation):
                acts[path] = seen[0]
            else:
                acts[path] = None
                if len(kinds) > 1:
                    conflicts.append(path)
        if conflicts:
            self.notes.append(
                "outputs of " + ", ".join(conflicts[:5]) + " reach several different "
                "operations in forward(): activation left unknown"
            )
        return acts, self.normalized, self.notes

    def observe(self, src: str, act: Any) -> None:
        self.obs.setdefault(src, []).append(act)

    def tensor_srcs(self, value: Any) -> set[str]:
        if isinstance(value, _T):
            return set(value.srcs)
        if isinstance(value, _Tuple):
            out: set[str] = set()
            for v in value.items:
                out |= self.tensor_srcs(v)
            return out
        return set()

    def consume(self, values: list[Any], act: Any) -> None:
        for v in values:
            for src in self.tensor_srcs(v):
                self.observe(src, act)

    # -- calls ----------------------------------------------------------------------------------
    def call_module(
        self,
        node: _ModuleNode,
        args: list[Any],
        depth: int,
        top: bool = False,
        method: str = "forward",
    ) -> Any:
        cls = self.classes.get(node.qualname)
        func = None
        if cls is not None:
            func = next(
                (s for s in cls.body if isinstance(s, ast.FunctionDef) and s.name == method), None
            )
        if method == "forward" and not top:
            if node.weighted():
                self.consume(args, _LINEAR)
                return _T(frozenset({node.path}))
            if node.cls in NORM_MODULES:
                srcs = (
                    frozenset().union(*(self.tensor_srcs(a) for a in args)) if args else frozenset()
                )
                self.normalized.update(srcs)
                return _T(srcs)
            # activation modules: their compiled forward carries the constants (slope, alpha);
            # the class name is the fallback when the code is missing
            if func is None and node.cls in ACTIVATION_MODULES and node.is_torch_class:
                self.consume(args, _activation_from_module(node, "torchscript"))
                return _UNKNOWN
            if func is None and node.cls in PASS_THROUGH_MODULES and node.is_torch_class:
                return args[0] if args else _UNKNOWN
        if func is None:
            self.consume(args, _OPAQUE)
            return _UNKNOWN
        return self.invoke(func, [_Mod(node)] + list(args), {}, depth + 1)

    def invoke(
        self, func: ast.FunctionDef, args: list[Any], kwargs: dict[str, Any], depth: int
    ) -> Any:
        if depth > self.MAX_CALL_DEPTH:
            raise _Abort("call depth limit")
        env: dict[str, Any] = {}
        params = func.args.args
        defaults = func.args.defaults
        first_default = len(params) - len(defaults)
        for i, p in enumerate(params):
            if i < len(args):
                env[p.arg] = args[i]
            elif p.arg in kwargs:
                env[p.arg] = kwargs[p.arg]
            elif i >= first_default:
                env[p.arg] = self.constant(defaults[i - first_default])
            else:
                env[p.arg] = _UNKNOWN
        result = self.block(func.body, env, depth)
        return result if result is not None else _Const(None)

    # -- statements -----------------------------------------------------------------------------
    def block(self, body: list[ast.stmt], env: dict[str, Any], depth: int) -> Any:
        for stmt in body:
            self.steps += 1
            if self.steps > self.MAX_STEPS:
                raise _Abort("step limit")
            if isinstance(stmt, ast.Return):
                return self.expr(stmt.value, env, depth) if stmt.value is not None else _Const(None)
            if isinstance(stmt, ast.Assign):
                value = self.expr(stmt.value, env, depth)
                for target in stmt.targets:
                    self.assign(target, value, env)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                self.assign(stmt.target, self.expr(stmt.value, env, depth), env)
            elif isinstance(stmt, ast.AugAssign):
                self.expr(stmt.value, env, depth)
                self.assign(stmt.target, _UNKNOWN, env)
            elif isinstance(stmt, ast.Expr):
                self.expr(stmt.value, env, depth)
            elif isinstance(stmt, ast.If):
                cond = self.expr(stmt.test, env, depth)
                if isinstance(cond, _Const) and isinstance(cond.value, bool):
                    result = self.block(stmt.body if cond.value else stmt.orelse, env, depth)
                    if result is not None:
                        return result
                else:
                    left, right = dict(env), dict(env)
                    r1 = self.block(stmt.body, left, depth)
                    r2 = self.block(stmt.orelse, right, depth)
                    env.update(self.merge(left, right))
                    if r1 is not None and r2 is not None:
                        return self.join(r1, r2)
                    if r1 is not None or r2 is not None:
                        return r1 if r1 is not None else r2
            elif isinstance(stmt, (ast.For, ast.While)):
                if isinstance(stmt, ast.For):
                    self.assign(stmt.target, _UNKNOWN, env)
                self.block(stmt.body, env, depth)  # once: observations, not iteration counts
            elif isinstance(stmt, (ast.With, ast.Try)):
                self.block(stmt.body, env, depth)
        return None

    def assign(self, target: ast.expr, value: Any, env: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = (
                value.items
                if isinstance(value, _Tuple) and len(value.items) == len(target.elts)
                else None
            )
            for i, elt in enumerate(target.elts):
                self.assign(elt, items[i] if items else _UNKNOWN, env)

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {
            k: self.join(a[k], b[k]) if k in a and k in b else (a.get(k, b.get(k)))
            for k in set(a) | set(b)
        }

    @staticmethod
    def join(x: Any, y: Any) -> Any:
        if x == y:
            return x
        if isinstance(x, _T) and isinstance(y, _T):
            return _T(x.srcs | y.srcs)
        return _UNKNOWN

    # -- expressions ----------------------------------------------------------------------------
    @staticmethod
    def constant(node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return _Const(node.value)
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
        ):
            v = node.operand.value
            return _Const(-v) if isinstance(v, (int, float)) else _UNKNOWN
        return _UNKNOWN

    def dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def expr(self, node: ast.expr, env: dict[str, Any], depth: int) -> Any:
        if isinstance(node, (ast.Constant, ast.UnaryOp)) and self.constant(node) is not _UNKNOWN:
            return self.constant(node)
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            return _Fn(node.id)
        if isinstance(node, ast.Attribute):
            base = self.expr(node.value, env, depth)
            if isinstance(base, _Mod):
                child = next(
                    (
                        c
                        for c in base.node.children
                        if c.path.rpartition(".")[2] == node.attr or c.path == node.attr
                    ),
                    None,
                )
                if child is not None:
                    return _Mod(child)
                attr = base.node.attrs.get(node.attr)
                if isinstance(attr, (int, float, bool, str)) or attr is None:
                    return _Const(attr) if node.attr in base.node.attrs else _UNKNOWN
                return _UNKNOWN
            if isinstance(base, _Fn):
                return _Fn(f"{base.qualname}.{node.attr}")
            if isinstance(base, _T):
                return ("method", base, node.attr)  # bound tensor method, resolved at the call
            return _UNKNOWN
        if isinstance(node, ast.Call):
            return self.call(node, env, depth)
        if isinstance(node, (ast.Tuple, ast.List)):
            return _Tuple(tuple(self.expr(e, env, depth) for e in node.elts))
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                self.expr(part, env, depth)
            return _UNKNOWN
        if isinstance(node, ast.Subscript):
            base = self.expr(node.value, env, depth)
            index = self.expr(node.slice, env, depth)
            if (
                isinstance(base, _Tuple)
                and isinstance(index, _Const)
                and isinstance(index.value, int)
            ):
                if -len(base.items) <= index.value < len(base.items):
                    return base.items[index.value]
            self.consume([base], _OPAQUE)
            return _UNKNOWN
        if isinstance(node, (ast.BinOp, ast.BoolOp)):
            parts = [node.left, node.right] if isinstance(node, ast.BinOp) else node.values
            self.consume([self.expr(p, env, depth) for p in parts], _OPAQUE)
            return _UNKNOWN
        if isinstance(node, ast.IfExp):
            self.expr(node.test, env, depth)
            return self.join(self.expr(node.body, env, depth), self.expr(node.orelse, env, depth))
        return _UNKNOWN

    def call(self, node: ast.Call, env: dict[str, Any], depth: int) -> Any:
        func = self.expr(node.func, env, depth)
        args = [self.expr(a, env, depth) for a in node.args]
        kwargs = {k.arg: self.expr(k.value, env, depth) for k in node.keywords if k.arg}
        # getattr(self, "0"): Sequential/ModuleList children
        if (
            isinstance(func, _Fn)
            and func.qualname == "getattr"
            and len(args) == 2
            and isinstance(args[0], _Mod)
            and isinstance(args[1], _Const)
        ):
            child = next(
                (
                    c
                    for c in args[0].node.children
                    if c.path.rpartition(".")[2] == str(args[1].value)
                ),
                None,
            )
            return _Mod(child) if child is not None else _UNKNOWN
        # module.forward(...) / module.method(...)
        if isinstance(node.func, ast.Attribute):
            owner = self.expr(node.func.value, env, depth)
            if isinstance(owner, _Mod):
                return self.call_module(owner.node, args, depth, method=node.func.attr)
        if isinstance(func, tuple) and func and func[0] == "method":  # tensor.method(...)
            _, tensor, name = func
            return self.apply_op(name, [tensor, *args], kwargs)
        if isinstance(func, _Fn):
            short = func.qualname.rpartition(".")[2]
            if short in ACTIVATION_FUNCS or short in PASS_THROUGH_FUNCS or short in NORM_FUNCS:
                return self.apply_op(short, args, kwargs)
            target = self.functions.get(func.qualname)
            if target is not None:
                return self.invoke(target, args, kwargs, depth + 1)
        self.consume(args + list(kwargs.values()), _OPAQUE)
        return _UNKNOWN

    def apply_op(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        tensors = [a for a in args if isinstance(a, _T)]
        if name in ACTIVATION_FUNCS:
            vocab, pos, kw = ACTIVATION_FUNCS[name]
            param = None
            raw_param = kwargs.get(kw) if kw else None
            if raw_param is None and pos is not None and len(args) > pos:
                raw_param = args[pos]
            if (
                isinstance(raw_param, _Const)
                and isinstance(raw_param.value, (int, float))
                and not isinstance(raw_param.value, bool)
            ):
                param = float(raw_param.value)
            act = parse_activation(vocab, param=param, source="torchscript")
            raw = name if param is None else f"{name}({param:g})"
            self.consume(tensors[:1], Activation(act.kind, act.param, "torchscript", raw))  # type: ignore[union-attr]
            return _UNKNOWN
        if name in NORM_FUNCS:
            srcs = frozenset().union(*(t.srcs for t in tensors[:1])) if tensors else frozenset()
            self.normalized.update(srcs)
            return _T(srcs)
        if name in PASS_THROUGH_FUNCS:
            return tensors[0] if tensors else _UNKNOWN
        self.consume(tensors, _OPAQUE)
        return _UNKNOWN


class _Abort(Exception):
    pass


# --------------------------------------------------------------------------------------------
# .pt2 (torch.export.save)
# --------------------------------------------------------------------------------------------
def _load_pt2(path: Path, options: Any) -> LoadedModel:
    model = _new_model(path, "pt2")
    model.has_graph = True
    with SafeZip(path) as zf:
        scan_zip(
            zf, model
        )  # data.pkl of a torch zip dressed as .pt2, sample inputs, opaque objects
        prefix = _archive_prefix(zf, "archive_format")
        big = _byteorder(zf, prefix)
        models = sorted(
            n for n in zf.names() if n.startswith(prefix + "models/") and n.endswith(".json")
        )
        if not models:
            raise LoadError(".pt2 archive has no models/*.json")
        if len(models) > 1:
            model.notes.append(
                f".pt2 archive holds {len(models)} programs; reading "
                f"{models[0][len(prefix) :]} only"
            )
        model_name = models[0][len(prefix + "models/") : -len(".json")]
        program = _read_json(zf, models[0])
        flats: list[FlatTensor] = []
        shared: dict[str, str] = {}
        listed: dict[str, dict[str, Any]] = {}  # kind -> fqn -> tensor, for the inventory
        for kind in ("weights", "constants"):
            cfg_name = f"{prefix}data/{kind}/{model_name}_{kind}_config.json"
            if zf.get(cfg_name) is None:
                continue
            config = _read_json(zf, cfg_name).get("config", {})
            if not isinstance(config, dict):
                raise LoadError(f"{cfg_name}: 'config' is not an object")
            source = _ZipSource(zf, f"{prefix}data/{kind}/", big)
            _scan_pt2_pickled(zf, f"{prefix}data/{kind}/", config, model)
            entries = [_Entry(fqn, _pt2_tensor(fqn, meta, model)) for fqn, meta in config.items()]
            f, s = _materialise([e for e in entries if e.value is not None], source, options, model)
            flats.extend(f)
            shared.update(s)
            listed[kind] = {e.name: e.value for e in entries if e.value is not None}
        _build_layers(model, flats, shared, None)
        model.inventory = torch_inventory.build(
            model,
            listed,
            [_Entry(n, v) for group in listed.values() for n, v in group.items()],
            [],
            frozenset(),
            _itemsize,
            _Walker().tick,
        )
    acts, normalized, ops = _pt2_graph_activations(program, model)
    _apply_activations(model, acts, normalized)
    for layer in model.layers:
        op = ops.get(layer.name)
        if op:
            layer.op = op
            for t in layer.tensors:
                t.op = op
                if op.startswith("ConvTranspose") and t.role is Role.KERNEL:
                    t.unit_axis = 1
                if op == "Embedding" and t.role is Role.KERNEL:
                    t.role = Role.EMBEDDING
    model.notes.append(".pt2 graph read from models/*.json (aten ops); nothing was executed")
    return model


def _scan_pt2_pickled(
    zf: SafeZip, directory: str, config: dict[str, Any], model: LoadedModel
) -> None:
    """``use_pickle`` weights/constants: torch.export.load runs ``torch.load(weights_only=False)``
    (or ``pickle.loads``) on them; raw ones are bytes and skipped by the generic scan."""
    for fqn, meta in config.items():
        if not isinstance(meta, dict):
            continue
        path_name = meta.get("path_name")
        # torch/export/pt2_archive/_package.py: use_pickle tensors go through torch.load
        # (weights_only=False), custom_obj_* through torch's C unpickler, opaque_obj_* pickle.loads
        if not (
            meta.get("use_pickle") or str(path_name).startswith(("custom_obj_", "opaque_obj_"))
        ):
            continue
        member = zf.get(f"{directory}{path_name}") if isinstance(path_name, str) else None
        if member is None:
            model.notes.append(f".pt2 pickled entry {fqn!r} has no member {path_name!r}")
            continue
        if member.size > SCAN_CAP:  # torch.export.load would unpickle it: not vetted = flagged
            unvetted(
                model, member.name, f"{member.size} bytes, above the scan limit", b"", required=True
            )
            continue
        scan_blob(zf.read(member, cap=SCAN_CAP), member.name, model, required=True)


def _read_json(zf: SafeZip, name: str) -> dict[str, Any]:
    try:
        value = json.loads(zf.read(name).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise LoadError(f"{name} is not valid JSON ({describe(exc)})") from None
    if not isinstance(value, dict):
        raise LoadError(f"{name} is not a JSON object")
    return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, dict) and isinstance(value.get("as_int"), int):
        return int(value["as_int"])
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _pt2_tensor(fqn: str, meta: Any, model: LoadedModel) -> Any:
    if not isinstance(meta, dict) or not isinstance(meta.get("tensor_meta"), dict):
        return P.UnsupportedTensor("malformed .pt2 weight entry")
    if meta.get("use_pickle"):
        return P.UnsupportedTensor("pickled tensor (tensor subclass) in .pt2: not read")
    tm = meta["tensor_meta"]
    dtype = PT2_DTYPES.get(tm.get("dtype"))
    if dtype is None:
        return P.UnsupportedTensor(f"unknown .pt2 dtype code {tm.get('dtype')!r}")
    sizes = [_as_int(s) for s in tm.get("sizes", [])]
    strides = [_as_int(s) for s in tm.get("strides", [])]
    offset = _as_int(tm.get("storage_offset", {"as_int": 0}))
    if any(v is None for v in sizes + strides) or offset is None:
        return P.UnsupportedTensor("symbolic shape in .pt2 weight metadata")
    if tm.get("layout", 7) != 7:
        return P.UnsupportedTensor("non-strided tensor layout")
    path_name = meta.get("path_name")
    if not isinstance(path_name, str) or "/" in path_name or path_name.startswith("."):
        raise LoadError(f".pt2 weight {fqn!r} has an invalid path_name")
    dt = DTYPES[dtype]
    storage = P.StorageRef(key=path_name, dtype=None, numel=-1, location="cpu", type_name="pt2")
    return P.TensorRef(storage, int(offset), tuple(sizes), tuple(strides), dt.name)  # type: ignore[arg-type]


def _pt2_graph_activations(
    program: dict[str, Any], model: LoadedModel
) -> tuple[dict[str, Activation | None], set[str], dict[str, str]]:
    """Walk graph_module.graph.nodes: weighted aten ops, then what consumes their outputs."""
    gm = program.get("graph_module") or {}
    graph = gm.get("graph") or {}
    nodes = graph.get("nodes") or []
    sig = gm.get("signature") or {}
    input_fqn: dict[str, str] = {}
    for spec in sig.get("input_specs") or []:
        if not isinstance(spec, dict):
            continue
        for body in spec.values():
            if not isinstance(body, dict):
                continue
            arg = body.get("arg") or {}
            name = arg.get("name") or (arg.get("as_tensor") or {}).get("name")
            fqn = (
                body.get("parameter_name")
                or body.get("buffer_name")
                or body.get("tensor_constant_name")
            )
            if isinstance(name, str) and isinstance(fqn, str):
                input_fqn[name] = fqn
    layer_names = {layer.name for layer in model.layers}
    producers: dict[str, frozenset[str]] = {}  # tensor value name -> weighted layers it still is
    obs: dict[str, list[Any]] = {}
    normalized: set[str] = set()
    ops: dict[str, str] = {}

    def observe(value_names: list[str], act: Any) -> None:
        for v in value_names:
            for src in producers.get(v, ()):
                obs.setdefault(src, []).append(act)

    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict):
            continue
        target = str(node.get("target", ""))
        op = (
            target.split(".")[-2]
            if target.startswith("torch.ops.aten.")
            else target.rpartition(".")[2]
        )
        tensor_args, named = _pt2_node_args(node)
        outs = _pt2_outputs(node)
        if op in PT2_WEIGHTED_OPS:
            weight_fqn = next(
                (input_fqn[a] for n, a in named if n == "weight" and a in input_fqn), None
            )
            if weight_fqn is None:
                weight_fqn = next((input_fqn[a] for a in tensor_args[1:] if a in input_fqn), None)
            data_args = [a for a in tensor_args if a not in input_fqn]
            observe(data_args, _LINEAR_PT2)
            layer = weight_fqn.rpartition(".")[0] if weight_fqn else None
            # tied weights are lifted once: the calling module (nn_module_stack) names the layer
            caller = _pt2_module_path(node)
            if caller in layer_names:
                layer = caller
            if layer in layer_names:
                name = PT2_WEIGHTED_OPS[op]
                if op == "convolution" and _pt2_scalar(node, "transposed") is True:
                    name = "ConvTranspose"
                ops[layer] = name
                for o in outs[:1]:
                    producers[o] = frozenset({layer})
            continue
        if op in ACTIVATION_FUNCS:
            vocab, _, kw = ACTIVATION_FUNCS[op]
            param = _pt2_scalar(node, kw) if kw else None
            param = (
                float(param)
                if isinstance(param, (int, float)) and not isinstance(param, bool)
                else None
            )
            act = parse_activation(vocab, param=param, source="graph")
            raw = f"aten.{op}" + (f"({param:g})" if param is not None else "")
            observe(tensor_args[:1], Activation(act.kind, act.param, "graph", raw))  # type: ignore[union-attr]
            observe(tensor_args[1:], _OPAQUE)
            continue
        if op in NORM_FUNCS or op in PASS_THROUGH_FUNCS or op == "getitem":
            srcs = frozenset().union(*(producers.get(a, frozenset()) for a in tensor_args[:1]))
            if op in NORM_FUNCS:
                normalized.update(srcs)
            if op == "getitem" and _pt2_scalar(node, None, index=1) not in (0, None):
                srcs = frozenset()
            for o in outs[:1]:
                producers[o] = srcs
            observe(tensor_args[1:], _OPAQUE)
            continue
        observe(tensor_args, _OPAQUE)
    for spec in sig.get("output_specs") or []:
        if isinstance(spec, dict) and isinstance(spec.get("user_output"), dict):
            arg = spec["user_output"].get("arg") or {}
            name = (arg.get("as_tensor") or {}).get("name")
            if isinstance(name, str):
                observe([name], _OUTPUT_PT2)
    acts: dict[str, Activation | None] = {}
    for layer, seen in obs.items():
        kinds = {(a.kind, a.param) if isinstance(a, Activation) else a for a in seen}
        acts[layer] = seen[0] if len(kinds) == 1 and isinstance(seen[0], Activation) else None
    return acts, normalized, ops


_LINEAR_PT2 = Activation(ActivationKind.LINEAR, source="graph", raw="(none)")
_OUTPUT_PT2 = Activation(ActivationKind.LINEAR, source="graph", raw="graph output")


def _pt2_module_path(node: dict[str, Any]) -> str | None:
    """The innermost module of ``metadata.nn_module_stack`` ("key,path,class;..."), if any."""
    stack = (node.get("metadata") or {}).get("nn_module_stack")
    if not isinstance(stack, str) or not stack:
        return None
    parts = stack.split(";")[-1].split(",")
    return parts[1] if len(parts) >= 3 and parts[1] else None


def _pt2_arg_tensors(arg: Any) -> list[str]:
    if not isinstance(arg, dict):
        return []
    if isinstance(arg.get("as_tensor"), dict):
        name = arg["as_tensor"].get("name")
        return [name] if isinstance(name, str) else []
    if isinstance(arg.get("as_tensors"), list):
        # the filter keeps only string names
        return cast(
            list[str],
            [
                t.get("name")
                for t in arg["as_tensors"]
                if isinstance(t, dict) and isinstance(t.get("name"), str)
            ],
        )
    if isinstance(arg.get("as_optional_tensor"), dict):
        return _pt2_arg_tensors(arg["as_optional_tensor"])
    return []


def _pt2_node_args(node: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    tensors: list[str] = []
    named: list[tuple[str, str]] = []
    for inp in node.get("inputs") or []:
        if not isinstance(inp, dict):
            continue
        for t in _pt2_arg_tensors(inp.get("arg")):
            tensors.append(t)
            named.append((str(inp.get("name")), t))
    return tensors, named


def _pt2_outputs(node: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for o in node.get("outputs") or []:
        out.extend(_pt2_arg_tensors(o))
    return out


def _pt2_scalar(node: dict[str, Any], name: str | None, index: int | None = None) -> Any:
    for i, inp in enumerate(node.get("inputs") or []):
        if not isinstance(inp, dict):
            continue
        if (name is not None and inp.get("name") == name) or (index is not None and i == index):
            arg = inp.get("arg") or {}
            for key in ("as_float", "as_int", "as_bool"):
                if key in arg:
                    return arg[key]
            scalar = arg.get("as_scalar")
            if isinstance(scalar, dict):
                for key in ("as_float", "as_int", "as_bool"):
                    if key in scalar:
                        return scalar[key]
    return None
