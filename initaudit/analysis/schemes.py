"""Initialization schemes declared as data: each row says how a framework computes the std of a
kernel from its fans (init-schemes.md §1, §2, §4; checked against torch/nn/init.py,
keras/src/initializers/random_initializers.py and jax/_src/nn/initializers.py).

A *candidate* is a row expanded for one tensor: rule x mode x gain x family, with the std it
predicts. Identification (identify.py) scores every candidate against the data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from ..model import Role, WeightTensor
from .results import Candidate

# realised std of a normal truncated at +-2 of its own sigma, per unit sigma
TN2_STD_FACTOR = 0.87962566103423978

NORMAL, TRUNC, UNIFORM = "normal", "truncated_normal", "uniform"
ALL_FAMILIES = (NORMAL, TRUNC, UNIFORM)

SQRT2 = math.sqrt(2.0)

Fans = tuple[int, int]


@dataclass(frozen=True)
class VarianceRule:
    """A fan-based rule: Var(W) = numerator / fan, before the gain."""

    rule: str  # vocabulary of the JSON report
    mode: str  # fan_in, fan_out, fan_avg
    variance: Callable[[int, int], float]
    families: tuple[str, ...]
    gains: tuple[tuple[float, str, float], ...]  # (gain, why, prior weight)
    prior: float
    label: str


def _fan_in(scale: float) -> Callable[[int, int], float]:
    return lambda fi, fo: scale / fi


def _fan_out(scale: float) -> Callable[[int, int], float]:
    return lambda fi, fo: scale / fo


def _fan_avg(scale: float) -> Callable[[int, int], float]:
    return lambda fi, fo: 2.0 * scale / (fi + fo)


VARIANCE_RULES: tuple[VarianceRule, ...] = (
    VarianceRule(
        "he", "fan_in", _fan_in(2.0), ALL_FAMILIES, ((1.0, "relu", 1.0),), 1.0, "He/Kaiming"
    ),
    VarianceRule(
        "he", "fan_out", _fan_out(2.0), ALL_FAMILIES, ((1.0, "relu", 1.0),), 0.6, "He/Kaiming"
    ),
    VarianceRule(
        "glorot",
        "fan_avg",
        _fan_avg(1.0),
        ALL_FAMILIES,
        ((1.0, "", 1.0), (5.0 / 3.0, "tanh", 0.3), (SQRT2, "relu", 0.3)),
        1.0,
        "Glorot/Xavier",
    ),
    VarianceRule(
        "lecun",
        "fan_in",
        _fan_in(1.0),
        ALL_FAMILIES,
        ((1.0, "", 1.0), (5.0 / 3.0, "tanh", 0.3), (0.75, "selu", 0.2)),
        1.0,
        "LeCun",
    ),
    # torch's default Linear/Conv init: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in))
    VarianceRule(
        "torch_default",
        "fan_in",
        _fan_in(1.0 / 3.0),
        (UNIFORM,),
        ((1.0, "", 1.0),),
        1.5,
        "torch default",
    ),
    # Keras applications' EfficientNet head: VarianceScaling(1/3, fan_out, uniform)
    VarianceRule(
        "variance_scaling",
        "fan_out",
        _fan_out(1.0 / 3.0),
        (UNIFORM,),
        ((1.0, "", 1.0),),
        0.3,
        "VarianceScaling(1/3, fan_out)",
    ),
)

# fixed-sigma conventions: (std or bound, family, prior, label)
FIXED_STDS: tuple[tuple[float, str, float, str], ...] = (
    (0.02, NORMAL, 1.0, "N(0, 0.02) (BERT/GPT-2/LLaMA/ViT)"),
    (0.02 * TN2_STD_FACTOR, TRUNC, 0.5, "trunc_normal(0.02, ±2σ) (TF BERT, timm _tf_)"),
    (0.01, NORMAL, 0.5, "N(0, 0.01)"),
    (0.05, NORMAL, 0.5, "RandomNormal(0.05) (Keras)"),
    (0.05 * TN2_STD_FACTOR, TRUNC, 0.5, "TruncatedNormal(0.05) (Keras)"),
    (0.05 / math.sqrt(3.0), UNIFORM, 0.8, "U(±0.05) (Keras RandomUniform / Embedding)"),
    (0.1, NORMAL, 0.3, "N(0, 0.1)"),
    (0.1 / math.sqrt(3.0), UNIFORM, 0.3, "U(±0.1)"),
    (0.001, NORMAL, 0.3, "N(0, 0.001)"),
    (1.0, NORMAL, 0.5, "N(0, 1)"),
)


def _family_label(family: str) -> str:
    return {NORMAL: "normal", TRUNC: "truncated normal", UNIFORM: "uniform"}[family]


def variance_candidates(fan_in: int, fan_out: int) -> Iterable[tuple[Candidate, float]]:
    """(candidate, prior) for every fan-based rule, gain and family."""
    return _variance_candidates(int(fan_in), int(fan_out))


@lru_cache(maxsize=256)  # a model repeats a few (fan_in, fan_out) pairs: build each list once
def _variance_candidates(fan_in: int, fan_out: int) -> tuple[tuple[Candidate, float], ...]:
    return tuple(_iter_variance_candidates(fan_in, fan_out))


def _iter_variance_candidates(fan_in: int, fan_out: int) -> Iterable[tuple[Candidate, float]]:
    for vr in VARIANCE_RULES:
        base = vr.variance(fan_in, fan_out)
        if not base > 0:
            continue
        for gain, why, gain_prior in vr.gains:
            for family in vr.families:
                std = gain * math.sqrt(base)
                if vr.rule == "torch_default":
                    label = "torch default U(±1/sqrt(fan_in))"
                elif vr.rule == "variance_scaling":
                    label = "VarianceScaling(1/3, fan_out, uniform) (Keras EfficientNet head)"
                else:
                    g = f", gain {gain:.3g}{' (' + why + ')' if why else ''}" if gain != 1.0 else ""
                    label = f"{vr.label} {_family_label(family)} ({vr.mode}{g})"
                cand = Candidate(
                    rule=vr.rule,
                    distribution=family,
                    mode=vr.mode,
                    gain=gain,
                    expected_std=std,
                    label=label,
                )
                yield cand, vr.prior * gain_prior
                # Keras 2.0-2.1 truncated without the 0.8796 correction
                if family == TRUNC and vr.rule in ("he", "glorot", "lecun"):
                    uncorrected = replace(
                        cand,
                        expected_std=std * TN2_STD_FACTOR,
                        label=label + " uncorrected (Keras 2.0-2.1)",
                    )
                    yield uncorrected, 0.05 * vr.prior * gain_prior


def _fixed(
    std: float, label: str, distribution: str = NORMAL, source: str | None = None
) -> Candidate:
    """A fixed-scale scheme (no fan rule): N(0, std) unless another family is named."""
    return Candidate(
        rule="fixed",
        distribution=distribution,
        mode=None,
        gain=1.0,
        expected_std=std,
        label=label,
        source=source,
    )


def fixed_candidates(
    extra: Iterable[tuple[float, str, float, str]] = (),
) -> Iterable[tuple[Candidate, float]]:
    extra = tuple(extra)
    if not extra:
        return _FIXED_CANDIDATES()
    return tuple(_iter_fixed_candidates(extra))


@lru_cache(maxsize=1)
def _FIXED_CANDIDATES() -> tuple[tuple[Candidate, float], ...]:  # noqa: N802 - a constant
    return tuple(_iter_fixed_candidates(()))


def _iter_fixed_candidates(
    extra: tuple[tuple[float, str, float, str], ...],
) -> Iterable[tuple[Candidate, float]]:
    for std, family, prior, label in (*FIXED_STDS, *extra):
        yield _fixed(std, label, family), prior * 0.6


_RNN_NAME = re.compile(r"(^|[._/])(weight|kernel)_(ih|hh|hr)(_l\d+)?(_reverse)?$", re.I)
# output projections that feed a residual Add in transformer blocks (GPT-2 c_proj, LLaMA o_proj /
# down_proj, BERT-style attention.output.dense is *not* rescaled by HF, so it is not listed)
RESIDUAL_OUT_NAME = re.compile(
    r"(c_proj|o_proj|down_proj|out_proj|dense_4h_to_h|fc2|\bwo\b|w2)"
    r"(\.weight)?$",
    re.I,
)


def _rnn_hidden_sizes(tensor: WeightTensor) -> list[tuple[int, float]]:
    """(hidden size, prior) a torch RNN/LSTM/GRU tensor may have been drawn with.

    torch stacks the gates along dim 0: weight_ih (G·H, in), weight_hh (G·H, H). When the loader
    knows the gate count we use it; otherwise (a bare state_dict with no common prefix) every
    gate count that divides dim 0 is a candidate, and weight_hh's dim 1 is H itself.
    """
    shape = tensor.shape
    if (
        len(shape) == 3
        and tensor.op.upper() in ("RNN", "LSTM", "GRU")
        and tensor.unit_axis is not None
    ):
        # ONNX RNN/LSTM/GRU W and R: (directions, G·H, in) with the gates along axis 1
        # (onnx/defs/rnn/defs.cc); torch.onnx exports torch's weights there unchanged
        return [(shape[tensor.unit_axis] // max(tensor.gates, 1), 1.0)]
    if len(shape) != 2:
        return []
    if tensor.gates > 1 and tensor.unit_axis is not None:
        return [(shape[tensor.unit_axis] // tensor.gates, 1.0)]
    m = _RNN_NAME.search(tensor.name)
    if not m and tensor.op not in ("RNN", "LSTM", "GRU"):
        return []
    if m and m.group(3).lower() == "hh":
        return [(int(shape[1]), 1.0)]
    return [(int(shape[0]) // g, 0.5) for g in (4, 3, 1) if shape[0] % g == 0]


def hf_residual_std(metadata: dict[str, Any]) -> float | None:
    """GPT-2's re-drawn residual projections: initializer_range / sqrt(2·n_layer)."""
    n_layer = metadata.get("n_layer") or metadata.get("inferred_n_layer")
    if not isinstance(n_layer, int) or n_layer < 1:
        return None
    base = metadata.get("initializer_range")
    base = float(base) if isinstance(base, (int, float)) and base > 0 else 0.02
    return base / math.sqrt(2.0 * n_layer)


def framework_candidates(
    tensor: WeightTensor, metadata: dict[str, Any]
) -> Iterable[tuple[Candidate, float]]:
    """Conventions tied to a layer type or a config file rather than to a fan rule."""
    # torch RNN/LSTM/GRU: every parameter U(+-1/sqrt(hidden_size))
    for hidden, prior in _rnn_hidden_sizes(tensor):
        if hidden > 0:
            yield (
                Candidate(
                    rule="torch_default",
                    distribution=UNIFORM,
                    mode="hidden",
                    gain=1.0,
                    expected_std=1.0 / math.sqrt(3.0 * hidden),
                    label=f"torch RNN default U(±1/sqrt(hidden={hidden}))",
                    source="torch",
                ),
                1.5 * prior,
            )
    # Flax Embed: N(0, 1/D) (variance_scaling(1, fan_in, normal, out_axis=0))
    if tensor.role is Role.EMBEDDING and len(tensor.shape) == 2:
        dim = tensor.shape[1]
        yield _fixed(1.0 / math.sqrt(dim), "Flax Embed N(0, 1/D)"), 0.5
    init_range = metadata.get("initializer_range") if metadata else None
    if isinstance(init_range, (int, float)) and init_range > 0 and abs(init_range - 0.02) > 1e-9:
        label = f"N(0, {init_range:g}) (initializer_range)"
        yield _fixed(float(init_range), label, source="hf"), 0.8
    residual = hf_residual_std(metadata or {})
    if residual is not None and tensor.role is not Role.EMBEDDING:
        named = bool(RESIDUAL_OUT_NAME.search(tensor.name))
        n_layer = metadata.get("n_layer") or metadata.get("inferred_n_layer")
        label = (
            f"N(0, {residual:.3g}) residual projection "
            f"(initializer_range/sqrt(2·{n_layer}), GPT-2/Megatron)"
        )
        yield _fixed(residual, label, source="hf"), 1.0 if named else 0.05
    yield from _t5_candidates(tensor, metadata or {})


def _t5_candidates(
    tensor: WeightTensor, metadata: dict[str, Any]
) -> Iterable[tuple[Candidate, float]]:
    """T5's factor-based init: the query projection is N(0, factor·(d_model·d_kv)^-1/2).

    The other T5 kernels (wi, wo, k, v, o) are LeCun-like fan_in rules already covered by the
    variance rules, and the shared embedding is N(0, factor).
    """
    cfg = metadata.get("hf_config") or {}
    d_model, d_kv = cfg.get("d_model"), cfg.get("d_kv")
    if not (isinstance(d_model, int) and isinstance(d_kv, int) and d_model > 0 and d_kv > 0):
        return
    factor = cfg.get("initializer_factor", 1.0)
    factor = float(factor) if isinstance(factor, (int, float)) and factor > 0 else 1.0
    yield (
        _fixed(
            factor / math.sqrt(d_model * d_kv), "T5 query N(0, (d_model·d_kv)^-1/2)", source="hf"
        ),
        1.0 if re.search(r"(^|[._])q(\.weight)?$", tensor.name) else 0.05,
    )
    # relative_attention_bias (and every d_model-fan kernel when factor != 1)
    yield (
        _fixed(factor / math.sqrt(d_model), "T5 N(0, factor·d_model^-1/2)", source="hf"),
        1.0 if "relative_attention_bias" in tensor.name or abs(factor - 1.0) > 1e-9 else 0.05,
    )


def all_candidates(
    tensor: WeightTensor, metadata: dict[str, Any] | None = None
) -> list[tuple[Candidate, float]]:
    out: list[tuple[Candidate, float]] = []
    if tensor.fan_in and tensor.fan_out:
        out.extend(variance_candidates(tensor.fan_in, tensor.fan_out))
    out.extend(fixed_candidates())
    out.extend(framework_candidates(tensor, metadata or {}))
    return out


def fan_based_stds(fan_in: int, fan_out: int) -> dict[str, float]:
    """The std every gain-1 fan rule predicts; used by the scale rules (exploding/vanishing)."""
    return {
        "he_fan_in": math.sqrt(2.0 / fan_in),
        "he_fan_out": math.sqrt(2.0 / fan_out),
        "glorot": math.sqrt(2.0 / (fan_in + fan_out)),
        "lecun": math.sqrt(1.0 / fan_in),
        "torch_default": math.sqrt(1.0 / (3.0 * fan_in)),
    }
