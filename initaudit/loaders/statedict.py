"""Group a flat ``name -> tensor`` mapping (torch state_dict, safetensors, npz) into layers.

A bare state_dict has no graph: roles come from the parameter names the frameworks use
(``weight``/``bias``, ``running_mean``, ``weight_hh_l0``, ``in_proj_weight``...), fans from the
shape in the given convention, and the activation stays unknown (None) unless a hint or a
Hugging Face ``config.json`` supplies it. Nothing here guesses an activation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..analysis.fans import fans as conv_fans
from ..model import Convention, Layer, Loader, Role, WeightTensor

_NORM_PARTS = re.compile(
    r"(^|[._])(norm|layernorm|layer_norm|ln|ln_\d+|ln_f|bn|bn\d+|batchnorm|batch_norm|rmsnorm|"
    r"groupnorm|group_norm|gn|instancenorm|final_layer_norm|norm\d+|post_attention_layernorm|"
    r"input_layernorm|ln\d+|layer_norm\d*)([._]|$)",
    re.I,
)
_EMBED_PARTS = re.compile(
    r"(embed|embedding|embeddings|wte|wpe|tok_embeddings|word_embeddings|"
    r"position_embeddings|token_type_embeddings|lm_head_embed)"
    # T5/BART's tied table is the module `shared` itself; `shared_expert` / `shared_mlp` (MoE
    # models' always-on expert) are Linear kernels, and read as embeddings their N(0, 1) went
    # unreported (an embedding's default)
    r"|(^|\.)shared(\.|$)",
    re.I,
)
_RNN_LEAF = re.compile(r"^(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?$")
# transformers 5's fused MoE experts: one (experts, out, in) parameter per projection, no
# `.weight` leaf (Qwen2/3-MoE, DeepSeek, Mixtral... `experts.gate_up_proj`, `experts.down_proj`);
# a few (gpt-oss, Llama 4, Aria) store (experts, in, out): told apart by the sibling's shapes
_EXPERT_IN = ("gate_up_proj", "up_proj", "gate_proj", "w1", "w3")  # read the hidden state
_EXPERT_OUT = ("down_proj", "w2")  # write the hidden state
_EXPERTS = r"(^|\.)experts$"  # compiled on first use (re's cache): start-up


@dataclass(frozen=True)
class FlatTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    load: Loader


def _is_norm(prefix: str) -> bool:
    return bool(_NORM_PARTS.search(prefix))


def group_state_dict(
    tensors: Iterable[FlatTensor], convention: Convention = Convention.TORCH
) -> tuple[list[Layer], list[WeightTensor]]:
    """Return (layers, loose tensors) in the order the names first appear."""
    layers: dict[str, Layer] = {}
    loose: list[WeightTensor] = []
    for ft in tensors:
        prefix, _, leaf = ft.name.rpartition(".")
        if not prefix:
            prefix, leaf = ft.name, ft.name
        rank = len(ft.shape)
        role = Role.OTHER
        op = "Tensor"
        gates = 1
        lower = leaf.lower()
        m = _RNN_LEAF.match(lower)
        if m:
            op = "RNN"
            kind = m.group(2)
            if m.group(1) == "bias":
                role = Role.BIAS
            else:
                role = Role.RECURRENT if kind in ("hh", "hr") else Role.KERNEL
        elif lower in (
            "running_mean",
            "running_var",
            "num_batches_tracked",
            "moving_mean",
            "moving_variance",
        ):
            role, op = Role.NORM_STAT, "Norm"
        elif lower in ("in_proj_weight",):
            role, op = Role.KERNEL, "MultiheadAttention"
        elif lower in ("in_proj_bias",):
            role, op = Role.BIAS, "MultiheadAttention"
        elif lower in ("gamma", "beta") or (_is_norm(prefix) and rank == 1):
            op = "Norm"
            role = Role.NORM_SHIFT if lower in ("bias", "beta", "b", "shift") else Role.NORM_SCALE
        elif lower in ("bias", "b", "biases"):
            role = Role.BIAS
        elif lower in ("weight", "kernel", "w", "weights"):
            if rank >= 2 and _EMBED_PARTS.search(prefix) and rank == 2:
                role, op = Role.EMBEDDING, "Embedding"
            elif rank >= 2:
                role = Role.KERNEL
                op = "Linear" if rank == 2 else f"Conv{rank - 2}d" if rank <= 5 else "Tensor"
            else:
                role = Role.OTHER  # PReLU slopes, scalar scales
        elif rank == 2 and _EMBED_PARTS.search(ft.name):
            role, op = Role.EMBEDDING, "Embedding"
        elif rank == 3 and lower in _EXPERT_IN + _EXPERT_OUT and re.search(_EXPERTS, prefix):
            role, op = Role.KERNEL, "Experts"

        fan_in = fan_out = None
        unit_axis = None
        if op == "Experts":
            # one Linear per expert, (experts, out, in) until the siblings say otherwise (below);
            # the units checked are the experts (a duplicated or zeroed expert)
            fan_in, fan_out, unit_axis = ft.shape[2], ft.shape[1], 0
        elif role in (Role.KERNEL, Role.RECURRENT, Role.EMBEDDING) and rank >= 2:
            fan_in, fan_out = conv_fans(ft.shape, convention)
            unit_axis = 0 if convention in (Convention.TORCH, Convention.ONNX) else rank - 1
        wt = WeightTensor(
            name=ft.name,
            layer=prefix,
            op=op,
            role=role,
            shape=ft.shape,
            dtype=ft.dtype,
            load=ft.load,
            fan_in=fan_in,
            fan_out=fan_out,
            convention=convention,
            unit_axis=unit_axis,
            gates=gates,
        )
        if role in (Role.OTHER, Role.NORM_STAT) and prefix not in layers:
            loose.append(wt)
            continue
        layer = layers.get(prefix)
        if layer is None:
            layer = layers[prefix] = Layer(name=prefix, op=op)
        elif layer.op in ("Tensor", "Norm") and op not in ("Tensor", "Norm"):
            layer.op = op
        layer.tensors.append(wt)

    for layer in layers.values():
        _orient_experts(layer)
    # RNN gates: torch stacks (gates*hidden, in); hidden comes from weight_hh (gates*hidden, hidden)
    for layer in layers.values():
        if layer.op != "RNN":
            continue
        hh = [t for t in layer.tensors if t.role is Role.RECURRENT and len(t.shape) == 2]
        if hh:
            hidden = hh[0].shape[1]
            for t in layer.tensors:
                if t.shape and t.shape[0] % hidden == 0:
                    t.gates = t.shape[0] // hidden
                    if t.role is Role.RECURRENT:
                        t.op = {4: "LSTM", 3: "GRU"}.get(t.gates, "RNN")
            layer.op = {4: "LSTM", 3: "GRU"}.get(hh[0].gates, "RNN")
    return list(layers.values()), loose


def _orient_experts(layer: Layer) -> None:
    """Fused experts stored (experts, in, out): the projection reading the hidden state and the
    one writing it share the hidden size, on axis 2 and 1 when stored (experts, out, in), on
    axis 1 and 2 when stored (experts, in, out); only the second, unambiguous, flips the fans."""
    fused = {t.name.rpartition(".")[2].lower(): t for t in layer.tensors if t.op == "Experts"}
    reads = [t for k, t in fused.items() if k in _EXPERT_IN]
    writes = [t for k, t in fused.items() if k in _EXPERT_OUT]
    if not reads or not writes:
        return
    r, w = reads[0].shape, writes[0].shape
    if r[1] == w[2] and r[2] != w[1]:
        for t in fused.values():
            t.fan_in, t.fan_out = t.shape[1], t.shape[2]
