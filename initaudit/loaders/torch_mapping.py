"""Mapping fixes shared by the torch readers: rebuilt reparametrisations, raw parameters."""

from __future__ import annotations

import ast
import re

from ..analysis.fans import torch_fans
from ..model import Layer, LoadedModel, Role, WeightTensor
from .reparam import Rebuilt

# loose parameters that are not kernels even when 2-D (ViT pos_embed/cls_token, queries, scales)
_NOT_KERNEL = re.compile(
    r"(pos|position|cls|token|query|queries|embed|scale|gamma|beta|"
    r"register|prompt|mask|temperature|logit)",
    re.IGNORECASE,
)
_FLOAT = ("float", "bfloat")


def note_rebuilt(model: LoadedModel, rebuilt: list[Rebuilt]) -> None:
    """Say, on each rebuilt tensor, which stored factors it comes from."""
    if not rebuilt:
        return
    by_name = {r.name: r for r in rebuilt}
    for t in model.tensors():
        r = by_name.get(t.name)
        if r is None:
            continue
        formula = "g * v / ||v||" if r.kind == "weight-norm" else "orig * mask"
        t.notes.append(f"{r.kind}: effective kernel rebuilt as {formula} from {', '.join(r.parts)}")
    kinds = sorted({r.kind for r in rebuilt})
    model.notes.append(
        f"{len(rebuilt)} reparametrised weight(s) ({', '.join(kinds)}) rebuilt into "
        "the kernel the layer multiplies by"
    )


def promote_raw_parameters(model: LoadedModel, param_names: set[str]) -> None:
    """A bare ``nn.Parameter`` (torch.save of a Parameter, or a list/dict of them) has no module
    to name its role. A >= 2-D float Parameter is a weight matrix in torch's (out, in, ...) layout
    unless its name says otherwise; it becomes a one-tensor layer so the init rules see it."""
    keep = []
    for t in model.loose_tensors:
        leaf = t.name.rpartition(".")[2]
        if (
            t.name in param_names
            and t.role is Role.OTHER
            and len(t.shape) >= 2
            and t.dtype.startswith(_FLOAT)
            and not _NOT_KERNEL.search(t.name)
            and min(t.shape) > 0
            and leaf not in ("weight_mask",)
        ):
            t.role, t.op = Role.KERNEL, "Parameter"
            t.fan_in, t.fan_out = torch_fans(t.shape)
            t.unit_axis = 0
            t.notes.append("raw nn.Parameter: read as a weight in torch (out, in, ...) layout")
            model.layers.append(Layer(name=t.name, op="Parameter", tensors=[t]))
        else:
            keep.append(t)
    model.loose_tensors = keep


# torch ops whose (weight, bias) arguments sit at these positions in TorchScript code
# (aten signatures: linear(input, weight, bias), conv2d(input, weight, bias, ...),
# embedding(weight, indices, ...))
_FROZEN_OPS: dict[str, tuple[str, int, int | None]] = {
    "linear": ("Linear", 1, 2),
    "conv1d": ("Conv1d", 1, 2),
    "conv2d": ("Conv2d", 1, 2),
    "conv3d": ("Conv3d", 1, 2),
    "_convolution": ("Conv", 1, 2),
    "convolution": ("Conv", 1, 2),
    "conv_transpose1d": ("ConvTranspose1d", 1, 2),
    "conv_transpose2d": ("ConvTranspose2d", 1, 2),
    "conv_transpose3d": ("ConvTranspose3d", 1, 2),
    "embedding": ("Embedding", 0, None),
}
_CONST = re.compile(r"^CONSTANTS\.c\d+$")


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def map_frozen_constants(model: LoadedModel, code: dict[str, ast.Module]) -> None:
    """``torch.jit.freeze`` inlines parameters as ``CONSTANTS.cN``; the code says which op
    consumes each one (``torch.linear(x, CONSTANTS.c0, CONSTANTS.c1)``). A constant used as an
    op's weight becomes that op's kernel (bias alike), named by the constant."""
    uses: dict[str, tuple[str, Role, str]] = {}  # constant -> (op, role, layer name)
    for tree in code.values():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = _dotted(node.func)
            spec = _FROZEN_OPS.get(fn.rpartition(".")[2]) if fn else None
            if spec is None:
                continue
            op, wi, bi = spec
            w = _dotted(node.args[wi]) if len(node.args) > wi else None
            if w is None or not _CONST.match(w):
                continue
            role = Role.EMBEDDING if op == "Embedding" else Role.KERNEL
            uses.setdefault(w, (op, role, w))
            b = _dotted(node.args[bi]) if bi is not None and len(node.args) > bi else None
            if b is not None and _CONST.match(b):
                uses.setdefault(b, (op, Role.BIAS, w))
    if not uses:
        return
    keep: list[WeightTensor] = []
    layers: dict[str, Layer] = {}
    for t in model.loose_tensors:
        use = uses.get(t.name)
        if use is None or t.role is not Role.OTHER or not t.dtype.startswith(_FLOAT):
            keep.append(t)
            continue
        op, role, layer_name = use
        if role is not Role.BIAS and len(t.shape) < 2:
            keep.append(t)
            continue
        t.op, t.role, t.layer = op, role, layer_name
        if role in (Role.KERNEL, Role.EMBEDDING):
            t.fan_in, t.fan_out = torch_fans(t.shape)
            t.unit_axis = 0
        t.notes.append(f"jit.freeze constant consumed by torch.{op.lower()} in the scripted code")
        layer = layers.get(layer_name)
        if layer is None:
            layer = layers[layer_name] = Layer(name=layer_name, op=op)
        layer.tensors.append(t)
    for layer in layers.values():  # kernel first, as a module's state_dict orders them
        layer.tensors.sort(key=lambda t: t.role is Role.BIAS)
    model.layers.extend(layers.values())
    model.loose_tensors = keep
    if layers:
        model.notes.append(
            f"{len(layers)} frozen (jit.freeze) constant(s) mapped to the ops that "
            "consume them in the TorchScript code"
        )
