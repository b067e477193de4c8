"""Structural conventions that make a "too small" or "zero" kernel intentional (init-schemes.md §5).

- GPT-2 / Megatron scale the residual output projections by 1/sqrt(2·n_layer): the depth comes
  from the Hugging Face config (``n_layer``, ``num_hidden_layers``...) or, for a bare state_dict,
  from the block indices in the tensor names (``h.11.``, ``layers.23.``).
- Fixup zero-initialises (and T-Fixup / SkipInit down-scale) the last layer of each residual
  branch: a kernel whose output joins a residual Add may be zero or small on purpose.
- Zero-init of the last BatchNorm gamma of a block (timm ``zero_init_last``) and LayerScale
  gammas (1e-5..1e-1) are norm-like scales, never kernels: no kernel rule looks at them.

Nothing here decides a finding: it adds facts (metadata, per-layer flags) that the rules read.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..model import Layer, LoadedModel, WeightTensor

if TYPE_CHECKING:
    from .results import SchemeResult

_DEPTH_KEYS = ("n_layer", "num_hidden_layers", "num_layers", "n_layers", "num_decoder_layers")
# the index of a repeated block inside a tensor name: transformer.h.11.attn, model.layers.3.mlp,
# encoder.layer.5.output, blocks.7.attn
_BLOCK_INDEX = re.compile(
    r"(?:^|[._/])(?:h|layers|layer|blocks|block|decoder\.layers|"
    r"encoder\.layers)[._/](\d+)[._/]"
)
# names of the last kernel of a residual branch in common code bases
RESIDUAL_BRANCH_END = re.compile(
    r"(?:^|[./])(c_proj|o_proj|down_proj|out_proj|dense_4h_to_h|fc2|wo|conv3|conv2|"
    r"output\.dense|proj)(\.weight|/kernel)?$",
    re.I,
)


def model_depth(model: LoadedModel) -> int | None:
    """Number of repeated blocks: from the HF config when present, else from tensor names."""
    cfg = model.metadata.get("hf_config") or {}
    for key in _DEPTH_KEYS:
        value = cfg.get(key)
        if isinstance(value, int) and value > 0:
            return value
    indices: set[int] = set()
    for t in model.tensors():
        m = _BLOCK_INDEX.search(t.name)
        if m:
            indices.add(int(m.group(1)))
    if len(indices) >= 2 and min(indices) == 0 and max(indices) == len(indices) - 1:
        return len(indices)  # contiguous 0..n-1: a stack of n blocks
    return None


def enrich_metadata(model: LoadedModel) -> None:
    """Add the facts identification needs (``n_layer``) to ``model.metadata`` (idempotent)."""
    if "n_layer" not in model.metadata and "inferred_n_layer" not in model.metadata:
        depth = model_depth(model)
        if depth is not None:
            cfg_has = any(
                isinstance((model.metadata.get("hf_config") or {}).get(k), int) for k in _DEPTH_KEYS
            )
            model.metadata["n_layer" if cfg_has else "inferred_n_layer"] = depth


def residual_branch_end(tensor: WeightTensor, layer: Layer | None) -> bool:
    """Whether this kernel plausibly ends a residual branch (its output joins a skip Add).

    With a graph the loader tells us (``Layer.residual``); without one, the names GPT-2, LLaMA,
    BERT, T5 and torchvision ResNets use for a block's last projection are the evidence.
    """
    if layer is not None and layer.residual:
        return True
    return bool(RESIDUAL_BRANCH_END.search(tensor.name)) and bool(_BLOCK_INDEX.search(tensor.name))


def consumed_layers(model: LoadedModel) -> set[str] | None:
    """Names of the weighted layers whose output another weighted layer reads (graph files);
    None when the file has no graph."""
    if not model.has_graph:
        return None
    return {src for layer in model.layers for src in layer.inputs}


def output_layer(model: LoadedModel, tensor: WeightTensor, layer: Layer | None) -> bool:
    """Whether this kernel is the model's output projection: nothing weighted comes after it.

    With a graph: no weighted layer consumes it (and some layer consumes others, so the graph
    really has edges). Without one: it is named like a head (``head``, ``classifier``, ``fc``
    as the last kernel, ``lm_head``...) and it is the last kernel of the file or of its branch.
    """
    from .convention_tables import HEAD_NAME

    consumed = consumed_layers(model)
    if consumed and layer is not None and model.has_graph:
        # only a real graph says what consumes what: a config's partial wiring (gated MLP
        # pairs) leaves most layers "unconsumed" (a zeroed DeepSeek q_b_proj read as a head)
        return layer.name not in consumed
    kernels = [lay for lay in model.layers if lay.kernel is not None and len(lay.kernel.shape) >= 2]
    if len(kernels) < 2:
        return False  # a lone kernel says nothing about what comes after it
    # "last" needs the file's order to be the model's: a pickled state_dict keeps module order,
    # a safetensors header is sorted by name (layers.1.self_attn.q_b_proj sorts last)
    ordered = not model.format.startswith("safetensors")
    last = ordered and layer is not None and kernels[-1] is layer
    return bool(HEAD_NAME.search(tensor.name)) or (
        last
        and bool(
            re.search(r"(^|[._/])(fc|linear|out|output|dense|proj)([._/]|$)", tensor.name, re.I)
        )
    )


def library_default(tensor: WeightTensor, scheme: SchemeResult | None) -> str | None:
    """The label of the library default init this kernel carries, if it is one (tables)."""
    from .convention_tables import default_init

    if scheme is None:
        return None
    rows = [
        default_init(
            tensor.convention,
            scheme.rule,
            scheme.distribution,
            mode=scheme.mode,
            std=scheme.expected_std,
        )
    ]
    rows += [
        default_init(tensor.convention, c.rule, c.distribution, mode=c.mode, std=c.expected_std)
        for c in getattr(scheme, "alternatives", ())
    ]
    row = next((r for r in rows if r is not None), None)
    return row.label if row is not None else None


def config_init_ranges(metadata: dict[str, Any]) -> list[float]:
    """Every ``initializer_range`` a Hugging Face config.json sets, sub-configs included
    (BLIP's vision_config sets 1e-10: the documented draw for its vision tower)."""
    out: list[float] = []

    def walk(node: object, depth: int = 0) -> None:
        if depth > 4 or not isinstance(node, dict):
            return
        for key, value in node.items():
            # initializer_range in most models; init_std in a few (CPM-Ant: N(0, init_std = 1.0))
            if (
                key in ("initializer_range", "init_std")
                and isinstance(value, (int, float))
                and value > 0
            ):
                out.append(float(value))
            elif isinstance(value, dict):
                walk(value, depth + 1)

    walk(metadata.get("hf_config") or {})
    return out
