"""Quantized Hugging Face checkpoints: decode the documented layouts, name the rest.

A quantized Linear is not stored as one float ``weight``; read naively its integer codes look like
an exploding init. Each layout below is recognised by the tensor names its writer uses:

- GPTQ (AutoGPTQ ``qlinear_cuda_old.QuantLinear.pack``, checkpoint_format ``gptq``):
  ``qweight`` int32 (in*bits/32, out) packs ``32/bits`` input rows per int32, lowest bits first;
  ``qzeros`` int32 (groups, out*bits/32) packs output columns the same way and stores ``zero - 1``;
  ``scales`` (groups, out); ``g_idx`` (in,) the group of each input row.
  ``W[i, o] = scales[g, o] * (q[i, o] - (z[g, o] + 1))``, ``g = g_idx[i]`` (or ``i // group_size``);
  ``gptq_v2`` checkpoints store ``z`` without the ``- 1``.
- AWQ GEMM (AutoAWQ ``WQLinear_GEMM``; transformers ``integrations/awq.py``): ``qweight`` int32
  (in, out/8) packs 8 output columns per int32 in the order ``AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]``
  (nibble k holds output column ``AWQ_ORDER[k]`` of its group of 8), ``qzeros``
  (groups, out/8) alike, ``scales`` (groups, out); ``W[i, o] = (q[i, o] - z[g, o]) * s[g, o]``.
- bitsandbytes LLM.int8 (``Int8Params``): int8 ``weight`` (out, in) with ``SCB`` (out,) row
  absmax: ``W = weight * SCB[:, None] / 127``.
- FP8 (compressed-tensors / transformers FineGrainedFP8): float8_e4m3fn ``weight`` with
  ``weight_scale`` (scalar, per-channel (out, 1)) or ``weight_scale_inv`` per 2-D block:
  ``W = weight * scale`` broadcast (blocks repeated over the weight).
- bitsandbytes 4-bit (``Params4bit``: uint8 ``weight`` + ``weight.absmax`` / ``quant_map`` /
  ``quant_state.bitsandbytes__nf4|fp4``): not decoded here; named in ``skipped``.

Decoded kernels are analysed under the stored name of their packed tensor (``x.qweight``,
``x.weight``) in torch's (out, in) layout; the scales/zeros stay listed as loose tensors.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..analysis.fans import torch_fans
from ..model import Layer, LoadedModel, Role, SkipReason, StoredTensor, WeightTensor

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # AutoAWQ awq/utils/packing_utils.py
_BNB4_PARTS = (
    "weight.absmax",
    "weight.quant_map",
    "weight.nested_absmax",
    "weight.nested_quant_map",
    "weight.quant_state.bitsandbytes__nf4",
    "weight.quant_state.bitsandbytes__fp4",
)


def _unpack_rows(packed: np.ndarray, bits: int) -> np.ndarray:
    """int32 (r, c) -> (r * 32/bits, c): value j of each word, lowest bits first, along rows."""
    per = 32 // bits
    words = packed.astype(np.uint32)
    shifts = (np.arange(per, dtype=np.uint32) * bits)[None, :, None]
    vals = (words[:, None, :] >> shifts) & np.uint32((1 << bits) - 1)
    return vals.reshape(packed.shape[0] * per, packed.shape[1]).astype(np.int32)


def _unpack_cols(packed: np.ndarray, bits: int, order: tuple[int, ...] | None = None) -> np.ndarray:
    """int32 (r, c) -> (r, c * 32/bits) along columns; ``order[k]`` = column held by nibble k."""
    per = 32 // bits
    words = packed.astype(np.uint32)
    shifts = (np.arange(per, dtype=np.uint32) * bits)[None, None, :]
    vals = (words[:, :, None] >> shifts) & np.uint32((1 << bits) - 1)  # (r, c, nibble)
    if order is not None:
        out = np.empty_like(vals)
        out[:, :, list(order)] = vals  # nibble k holds column order[k]
        vals = out
    return vals.reshape(packed.shape[0], packed.shape[1] * per).astype(np.int32)


def _gptq_loader(
    qw: WeightTensor,
    qz: WeightTensor,
    sc: WeightTensor,
    gi: WeightTensor | None,
    bits: int,
    v2: bool,
) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        q = _unpack_rows(np.asarray(qw.load()), bits)  # (in, out)
        z = _unpack_cols(np.asarray(qz.load()), bits)[:, : q.shape[1]] + (0 if v2 else 1)
        s = np.asarray(sc.load(), dtype=np.float32)
        n_in = q.shape[0]
        g = (
            np.asarray(gi.load()).astype(np.int64)
            if gi is not None
            else np.arange(n_in) // max(1, n_in // s.shape[0])
        )
        w = s[g] * (q - z[g]).astype(np.float32)
        return np.ascontiguousarray(w.T)  # torch Linear layout (out, in)

    return load


def _awq_loader(
    qw: WeightTensor, qz: WeightTensor, sc: WeightTensor, bits: int
) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        q = _unpack_cols(np.asarray(qw.load()), bits, AWQ_ORDER)  # (in, out)
        z = _unpack_cols(np.asarray(qz.load()), bits, AWQ_ORDER)
        s = np.asarray(sc.load(), dtype=np.float32)
        n_in = q.shape[0]
        g = np.arange(n_in) // max(1, n_in // s.shape[0])
        w = (q - z[g]).astype(np.float32) * s[g]
        return np.ascontiguousarray(w.T)

    return load


def _scaled_loader(w: WeightTensor, s: WeightTensor, divide127: bool) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        values = np.asarray(w.load()).astype(np.float32)
        scale = np.asarray(s.load()).astype(np.float32)
        if divide127:  # LLM.int8: per-row absmax
            return values * (scale.reshape(-1, 1) / 127.0)
        if scale.size == 1 or (
            scale.ndim == values.ndim
            and all(a in (1, b) for a, b in zip(scale.shape, values.shape))
        ):
            return values * scale.reshape(scale.shape if scale.ndim == values.ndim else ())
        if scale.ndim == 1 and scale.shape[0] == values.shape[0]:
            return values * scale.reshape(-1, *([1] * (values.ndim - 1)))
        # block scales (DeepSeek-V3 weight_scale_inv): one scale per (b0, b1) tile
        b0 = -(-values.shape[0] // scale.shape[0])
        b1 = -(-values.shape[1] // scale.shape[1])
        full = np.repeat(np.repeat(scale, b0, axis=0), b1, axis=1)
        return values * full[: values.shape[0], : values.shape[1]]

    return load


def _fp8_scale_ok(w: WeightTensor, s: WeightTensor) -> bool:
    ws, ss = w.shape, s.shape
    if len(ws) < 2:
        return False
    if int(np.prod(ss)) == 1:
        return True
    if len(ss) == len(ws) and all(a in (1, b) for a, b in zip(ss, ws)):
        return True
    if len(ss) == 1 and ss[0] == ws[0]:
        return True
    return len(ss) == 2 == len(ws) and ss[0] <= ws[0] and ss[1] <= ws[1]


def _kernel(
    name: str,
    layer: str,
    shape: tuple[int, int],
    dtype: str,
    load: Callable[[], np.ndarray],
    note: str,
) -> WeightTensor:
    fi, fo = torch_fans(shape)
    return WeightTensor(
        name=name,
        layer=layer,
        op="Linear",
        role=Role.KERNEL,
        shape=shape,
        dtype=dtype,
        load=load,
        fan_in=fi,
        fan_out=fo,
        unit_axis=0,
        notes=[note],
    )


def _quant_config(config: dict[str, Any] | None) -> dict[str, Any]:
    qc = (config or {}).get("quantization_config")
    return qc if isinstance(qc, dict) else {}


def apply(model: LoadedModel, config: dict[str, Any] | None) -> None:
    """Rewrite the quantized Linears of a state-dict model in place (see the module doc)."""
    tensors = model.tensors()
    by_name = {t.name: t for t in tensors}
    groups: dict[str, dict[str, WeightTensor]] = defaultdict(dict)
    for t in tensors:
        prefix, _, leaf = t.name.rpartition(".")
        groups[prefix][leaf] = t
    qc = _quant_config(config)
    method = str(qc.get("quant_method", "")).lower()
    bits_cfg = qc.get("bits", qc.get("w_bit"))
    v2 = str(qc.get("checkpoint_format", "")).lower() == "gptq_v2"
    new_kernels: dict[str, WeightTensor] = {}  # layer -> kernel
    drop: set[str] = set()  # names removed from analysis (skipped)
    demote: dict[str, str] = {}  # name -> note (kept as loose OTHER: scales, zeros)
    counts: dict[str, int] = defaultdict(int)
    for prefix, parts in groups.items():
        full: Callable[..., str] = lambda leaf, prefix=prefix: (
            f"{prefix}.{leaf}" if prefix else leaf
        )
        qw, qz, sc = parts.get("qweight"), parts.get("qzeros"), parts.get("scales")
        if (
            qw is not None
            and qz is not None
            and sc is not None
            and len(qw.shape) == 2
            and len(sc.shape) == 2
            and qw.dtype.startswith("int")
        ):
            out = int(sc.shape[1])
            if method == "awq" or (
                method != "gptq"
                and "g_idx" not in parts
                and qw.shape[1] * 8 == out
                and qw.shape[0] != out
            ):
                bits = int(bits_cfg) if isinstance(bits_cfg, int) else 4
                if bits != 4 or qw.shape[1] * 8 != out:
                    drop.add(qw.name)
                    model.skipped.append((qw.name, f"AWQ {bits}-bit layout {qw.shape} not decoded"))
                    continue
                kern = _kernel(
                    qw.name,
                    prefix,
                    (out, int(qw.shape[0])),
                    "int4 (AWQ dequantized)",
                    _awq_loader(qw, qz, sc, bits),
                    "AWQ GEMM int4: (q - zero) * scale",
                )
                counts["AWQ"] += 1
            else:
                bits = 4
                if isinstance(bits_cfg, int):
                    bits = bits_cfg
                elif "g_idx" in parts and parts["g_idx"].shape:  # g_idx has one entry per input
                    bits = 32 * int(qw.shape[0]) // max(1, int(parts["g_idx"].shape[0]))
                if bits not in (2, 4, 8) or qw.shape[1] != out:
                    drop.add(qw.name)
                    model.skipped.append(
                        (qw.name, f"GPTQ {bits}-bit layout {qw.shape} not decoded")
                    )
                    continue
                n_in = int(qw.shape[0]) * 32 // bits
                kern = _kernel(
                    qw.name,
                    prefix,
                    (out, n_in),
                    f"int{bits} (GPTQ dequantized)",
                    _gptq_loader(qw, qz, sc, parts.get("g_idx"), bits, v2),
                    f"GPTQ int{bits}: scale * (q - zero)",
                )
                counts["GPTQ"] += 1
            new_kernels[prefix] = kern
            drop.add(qw.name)
            for leaf in ("qzeros", "scales", "g_idx"):
                if leaf in parts:
                    demote[full(leaf)] = f"quantization parameter of {qw.name} (used to decode it)"
            continue
        w = parts.get("weight")
        if w is None:
            continue
        if any(full(p) in by_name for p in _BNB4_PARTS) or full("weight.absmax") in by_name:
            drop.add(w.name)
            kind = "nf4" if full("weight.quant_state.bitsandbytes__nf4") in by_name else "fp4/4-bit"
            model.skipped.append((w.name, f"bitsandbytes {kind} packed weight not decoded"))
            for p in _BNB4_PARTS:
                if full(p) in by_name:
                    demote[full(p)] = f"bitsandbytes quant state of {w.name}"
            _mark(
                model,
                w.name,
                SkipReason.QUANTIZED_NOT_DECODED,
                f"bitsandbytes {kind} packed weight not decoded",
            )
            counts["bitsandbytes-4bit (skipped)"] += 1
            continue
        scb = parts.get("SCB")
        if (
            scb is not None
            and w.dtype == "int8"
            and len(w.shape) == 2
            and scb.shape[:1] == w.shape[:1]
        ):
            new_kernels[prefix] = _kernel(
                w.name,
                prefix,
                (int(w.shape[0]), int(w.shape[1])),
                "int8 (LLM.int8 dequantized)",
                _scaled_loader(w, scb, True),
                "bitsandbytes LLM.int8: weight * SCB / 127",
            )
            drop.add(w.name)
            demote[scb.name] = f"row absmax of {w.name} (used to decode it)"
            counts["LLM.int8"] += 1
            continue
        scale = parts.get("weight_scale") or parts.get("weight_scale_inv")
        if scale is not None and w.dtype.startswith(("float8", "int8")) and _fp8_scale_ok(w, scale):
            shape = (int(w.shape[0]), int(w.shape[1]))
            if len(w.shape) != 2:
                continue
            kind = "FP8" if w.dtype.startswith("float8") else "INT8"
            new_kernels[prefix] = _kernel(
                w.name,
                prefix,
                shape,
                f"{w.dtype} (scaled)",
                _scaled_loader(w, scale, False),
                f"{kind} weight * {scale.name.rpartition('.')[2]}",
            )
            drop.add(w.name)
            demote[scale.name] = f"scale of {w.name} (used to decode it)"
            counts[kind] += 1
        elif (scale is not None and not w.dtype.startswith(("float", "bfloat"))) or (
            w.dtype == "uint8" and len(w.shape) >= 2
        ):
            # a scale we cannot apply, or uint8 codes with no scale at all: the stored values
            # are not the weight (an FP8 weight with no scale is its own value and stays)
            drop.add(w.name)
            model.skipped.append(
                (
                    w.name,
                    f"{w.dtype} weight with a scale layout we do not apply"
                    if scale is not None
                    else "uint8 codes without a scale",
                )
            )
            _mark(model, w.name, SkipReason.QUANTIZED_NOT_DECODED, "quantized codes not decoded")
    if not (new_kernels or drop or demote):
        return
    _rewrite(model, new_kernels, drop, demote)
    if counts:
        model.notes.append(
            "quantized weights: "
            + ", ".join(f"{n} {k}" for k, n in counts.items())
            + " (decoded where the layout is documented, else listed as skipped)"
        )


def _rewrite(
    model: LoadedModel, new_kernels: dict[str, WeightTensor], drop: set[str], demote: dict[str, str]
) -> None:
    loose: list[WeightTensor] = []
    for t in model.loose_tensors:
        if t.name in drop:
            continue
        if t.name in demote:
            t.role, t.op, t.fan_in, t.fan_out, t.unit_axis = Role.OTHER, "Quant", None, None, None
            t.notes.append(demote[t.name])
        loose.append(t)
    layers: dict[str, Layer] = {}
    layer: Layer | None  # the last loop looks layers up by name
    for layer in model.layers:
        kept = []
        for t in layer.tensors:
            if t.name in drop:
                continue
            if t.name in demote:
                t.role, t.op, t.fan_in, t.fan_out, t.unit_axis = (
                    Role.OTHER,
                    "Quant",
                    None,
                    None,
                    None,
                )
                t.notes.append(demote[t.name])
                loose.append(t)
                continue
            kept.append(t)
        layer.tensors = kept
        layers[layer.name] = layer
    for name, kern in new_kernels.items():
        layer = layers.get(name)
        if layer is None:
            layer = layers[name] = Layer(name=name, op="Linear")
        layer.op = "Linear"
        layer.tensors.insert(0, kern)
        for t in layer.tensors:
            t.layer = name
    model.layers = [layer for layer in layers.values() if layer.tensors]
    model.loose_tensors = loose
    if model.inventory is not None:
        names = {k.name for k in new_kernels.values()}
        model.inventory = [
            replace(s, weight_like=True) if s.name in names else s for s in model.inventory
        ]


def _mark(model: LoadedModel, name: str, skip: SkipReason, detail: str) -> None:
    """Set the skip of ``name`` in an inventory the loader already built."""
    if model.inventory is None:
        return
    model.inventory = [
        StoredTensor(s.name, s.shape, s.dtype, s.nbytes, True, skip, detail)
        if s.name == name
        else s
        for s in model.inventory
    ]
