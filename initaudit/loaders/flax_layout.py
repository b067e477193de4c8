"""Flax / JAX parameter trees -> layers, in Flax's layout and fan rules.

Flax stores a Dense kernel as (in, out) and a Conv kernel as (*window, in, out)
(flax/linen/linear.py, flax/nnx/nn/linear.py); its default kernel init is
``lecun_normal`` = variance_scaling(1, "fan_in", "truncated_normal") whose fans are
jax.nn.initializers._compute_fans with in_axis=-2, out_axis=-1: the Keras rule
(:func:`initaudit.analysis.fans.keras_fans`). Other defaults, same sources:

- biases ``zeros``; LayerNorm/BatchNorm ``scale`` ones, ``bias`` zeros;
- ``Embed.embedding``: ``variance_scaling(1.0, "fan_in", "normal", out_axis=0)`` on
  (num_embeddings, features): in_axis=-2 and out_axis=0 are the same axis, so
  _compute_fans gives fan_in = fan_out = features (std 1/sqrt(features));
- ``DenseGeneral`` / nnx ``LinearGeneral`` (attention query/key/value (embed, heads, head_dim),
  out (heads, head_dim, embed)): the init sees the kernel flattened to (prod(in axes),
  prod(features)), so fan_in = embed for q/k/v and heads*head_dim for out. Told from a Conv
  kernel by name (query/key/value), by a bias of rank >= 2 (the features) or, for the output
  projection, by its query/key/value siblings (:func:`_dense_general`).

Names are the tree path joined with ".", so Hugging Face Flax checkpoints get the same layer
names as their PyTorch twins (``bert.encoder.layer.0.intermediate.dense``) and
:func:`initaudit.loaders.hf.apply_hf_config` maps their activations. A top-level Flax
collection name (``params``, ``batch_stats``) is dropped from the *layer* name (kept in the
tensor name) so a BatchNorm's scale and its running stats land in one layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from ..model import Convention, Layer, Role, WeightTensor
from .statedict import FlatTensor

COLLECTIONS = frozenset({"params", "batch_stats", "cache", "intermediates", "spectral_stats"})
# train-state members that are not the model's parameters (optax moments mirror the params and
# would be audited as kernels: never)
NON_MODEL = frozenset({"opt_state", "step", "rng", "rngs", "tx", "apply_fn", "dropout_rng"})
_QKV = re.compile(r"(^|[._])(query|key|value|qkv|q|k|v|q_proj|k_proj|v_proj)$", re.IGNORECASE)
_OUT = re.compile(r"(^|[._])(out|o|out_proj|o_proj|output)$", re.IGNORECASE)
_NORM = re.compile(r"(norm|ln|bn)", re.IGNORECASE)


def layer_name(name: str) -> tuple[str, str]:
    """(layer, leaf) of a dotted Flax path, the collection prefix dropped from the layer."""
    if name.endswith((".value", ".raw_value")):
        # nnx Variables serialize as {"kernel": {"value": array}} (nnx.split state, orbax)
        name = name.rpartition(".")[0]
    prefix, _, leaf = name.rpartition(".")
    head, _, rest = prefix.partition(".")
    if head in COLLECTIONS and rest:
        prefix = rest
    return prefix or leaf, leaf


def flax_tensor(ft: FlatTensor) -> WeightTensor:
    layer, leaf = layer_name(ft.name)
    shape = ft.shape
    rank = len(shape)
    role, op = Role.OTHER, "Tensor"
    fan_in = fan_out = unit_axis = None
    matrix_shape: tuple[int, int] | None = None
    if leaf == "kernel" and rank >= 2:
        role = Role.KERNEL
        if rank == 3 and _QKV.search(layer):
            op = "DenseGeneral"
            fan_in, fan_out = int(shape[0]), int(shape[1]) * int(shape[2])
            matrix_shape = (fan_in, fan_out)
        elif rank == 3 and _OUT.search(layer) and "attention" in layer.lower():
            op = "DenseGeneral"
            fan_in, fan_out = int(shape[0]) * int(shape[1]), int(shape[2])
            matrix_shape = (fan_in, fan_out)
        else:
            op = "Dense" if rank == 2 else f"Conv{rank - 2}d"
            receptive = math.prod(int(d) for d in shape[:-2])
            fan_in, fan_out = int(shape[-2]) * receptive, int(shape[-1]) * receptive
            unit_axis = rank - 1
    elif leaf == "embedding" and rank == 2:
        role, op = Role.EMBEDDING, "Embed"
        fan_in = fan_out = int(shape[1])  # see module docstring: in_axis == out_axis
        unit_axis = 0
    elif leaf == "bias":
        role = (
            Role.NORM_SHIFT if _NORM.search(layer.rpartition(".")[2]) and rank == 1 else Role.BIAS
        )
    elif leaf == "scale" and rank == 1:
        role, op = Role.NORM_SCALE, "Norm"
    elif leaf in ("mean", "var") and rank == 1:
        role, op = Role.NORM_STAT, "Norm"
    return WeightTensor(
        name=ft.name,
        layer=layer,
        op=op,
        role=role,
        shape=shape,
        dtype=ft.dtype,
        load=ft.load,
        fan_in=fan_in,
        fan_out=fan_out,
        convention=Convention.JAX,
        unit_axis=unit_axis,
        matrix_shape=matrix_shape,
    )


def group_flax(tensors: Iterable[FlatTensor]) -> tuple[list[Layer], list[WeightTensor]]:
    """(layers, loose tensors) in first-appearance order; a layer owns the tensors of its path."""
    layers: dict[str, Layer] = {}
    loose: list[WeightTensor] = []
    for ft in tensors:
        wt = flax_tensor(ft)
        if wt.role is Role.OTHER:
            loose.append(wt)
            continue
        layer = layers.get(wt.layer)
        if layer is None:
            layer = layers[wt.layer] = Layer(name=wt.layer, op=wt.op)
        if wt.role in (Role.NORM_SCALE, Role.NORM_STAT) and layer.op in ("Tensor",):
            layer.op = "Norm"
        if wt.role in (Role.KERNEL, Role.EMBEDDING):
            layer.op = wt.op
        layer.tensors.append(wt)
    for layer in layers.values():  # a norm layer's bias is its shift, whatever the layer's name
        if any(t.role is Role.NORM_SCALE for t in layer.tensors):
            layer.op = "Norm"
            for t in layer.tensors:
                if t.role is Role.BIAS:
                    t.role = Role.NORM_SHIFT
    _dense_general(layers)
    return list(layers.values()), loose


def _as_dense_general(kernel: WeightTensor, n_in: int) -> None:
    """DenseGeneral / nnx.LinearGeneral: the init sees (prod(in axes), prod(features))."""
    fan_in = math.prod(int(d) for d in kernel.shape[:n_in])
    fan_out = math.prod(int(d) for d in kernel.shape[n_in:])
    kernel.op = "DenseGeneral"
    kernel.fan_in, kernel.fan_out = fan_in, fan_out
    kernel.matrix_shape = (fan_in, fan_out)
    kernel.unit_axis = None


def _dense_general(layers: dict[str, Layer]) -> None:
    """Kernels of rank >= 3 that are DenseGeneral rather than Conv, told apart by the file itself:

    - a bias of rank >= 2 equal to the kernel's trailing axes is DenseGeneral's ``features``
      (a Conv bias is 1-D): ``LinearGeneral(96, (4, 32))`` has kernel (96, 4, 32), bias (4, 32);
    - an attention output projection (heads, head_dim, embed) beside query/key/value kernels
      (embed, heads, head_dim) in the same parent (linen/nnx MultiHeadAttention under any name).
    """
    for layer in layers.values():
        kernel = next((t for t in layer.tensors if t.role is Role.KERNEL), None)
        if kernel is None or len(kernel.shape) < 3 or kernel.op == "DenseGeneral":
            continue
        bias = next((t for t in layer.tensors if t.role is Role.BIAS), None)
        if bias is not None and 2 <= len(bias.shape) < len(kernel.shape):
            if tuple(kernel.shape[-len(bias.shape) :]) == tuple(bias.shape):
                _as_dense_general(kernel, len(kernel.shape) - len(bias.shape))
                layer.op = "DenseGeneral"
                continue
        parent, _, leaf = layer.name.rpartition(".")
        if len(kernel.shape) != 3 or not _OUT.search("." + leaf):
            continue
        heads, head_dim, embed = (int(d) for d in kernel.shape)
        for sibling in ("query", "key", "value", "q", "k", "v", "q_proj", "k_proj", "v_proj"):
            other = layers.get(f"{parent}.{sibling}" if parent else sibling)
            sib = next((t for t in other.tensors if t.role is Role.KERNEL), None) if other else None
            if sib is not None and tuple(int(d) for d in sib.shape)[1:] == (heads, head_dim):
                _as_dense_general(kernel, 2)
                layer.op = "DenseGeneral"
                break
