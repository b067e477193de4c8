"""Hugging Face ``config.json`` support for state_dict-style checkpoints (safetensors, .bin).

A Hugging Face repository keeps a ``config.json`` beside the weights. It names the architecture
(``model_type``), the activation of the MLP (``hidden_act`` / ``activation_function`` /
``hidden_activation``...) and the init scale (``initializer_range``). The weights themselves
carry no graph, so this is the only trustworthy source of activations for them.

We map activations by layer-name patterns *per model family*: the modelling code of each family
fixes which Linear is followed by the configured activation. A layer no pattern covers keeps
``activation=None`` (unknown), never a guess.

Gated MLPs (LLaMA-style SwiGLU ``down(act(gate(x)) * up(x))``, T5 gated-gelu ``wi_0``/``wi_1``):
the gate projection gets the configured activation; the *up* projection gets LINEAR, because its
output enters an elementwise product, not a nonlinearity: for init purposes it is a linear
layer whose output is rescaled by the gate (the variance-preserving choice for it is the linear
one). Fused gate+up matrices (Phi-3 ``gate_up_proj``) are half of each, so they stay unknown.

GPT-2 style ``Conv1D`` stores its weight as (in, out), the transpose of ``nn.Linear``; for those
families the fans are recomputed with (in, out) semantics and ``unit_axis=1``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..activations import parse_activation
from ..model import Activation, ActivationKind, LoadedModel, Role

CONFIG_NAME = "config.json"
MAX_CONFIG_BYTES = 16 * 2**20
SOURCE = "hf-config"

# marker: "the activation the config names for this model's MLP"
HIDDEN = "<hidden_act>"


@dataclass(frozen=True)
class NameRule:
    """Layers whose name ends with ``pattern`` (at a dotted boundary) get ``act``."""

    pattern: str
    act: str | None  # an activation name, HIDDEN, or None (= known to be mixed: leave unknown)

    def matches(self, layer_name: str) -> bool:
        return re.search(rf"(?:^|\.)(?:{self.pattern})$", layer_name) is not None


def _rules(*pairs: tuple[str, str | None]) -> tuple[NameRule, ...]:
    return tuple(NameRule(p, a) for p, a in pairs)


LINEAR = "linear"

_BERT = _rules(
    (r"attention\.self\.(query|key|value)", LINEAR),
    (r"attention\.output\.dense", LINEAR),
    (r"intermediate\.dense", HIDDEN),
    (r"layer\.\d+\.output\.dense", LINEAR),
    (r"pooler\.dense", "tanh"),  # BertPooler: tanh(dense(h[:, 0]))
    (r"predictions\.transform\.dense", HIDDEN),
    (r"predictions\.decoder", LINEAR),
    (r"lm_head\.dense", "gelu"),  # RobertaLMHead uses gelu regardless of hidden_act
    (r"lm_head\.decoder", LINEAR),
    (r"classifier\.dense", "tanh"),  # RobertaClassificationHead
    (r"classifier\.out_proj", LINEAR),
    (r"(word|position|token_type)_embeddings", LINEAR),
    (r"classifier|qa_outputs|seq_relationship", LINEAR),
)
_GPT2 = _rules(
    (r"attn\.(c_attn|q_attn|c_proj)", LINEAR),
    (r"mlp\.c_fc", HIDDEN),
    (r"mlp\.c_proj", LINEAR),
    (r"wte|wpe|lm_head|score", LINEAR),
)
_LLAMA = _rules(
    (r"self_attn\.(q_proj|k_proj|v_proj|o_proj|qkv_proj)", LINEAR),
    (r"gate_proj", HIDDEN),
    (r"up_proj", LINEAR),  # multiplied by act(gate_proj(x)): see the module docstring
    (r"down_proj", LINEAR),
    (r"gate_up_proj", None),  # fused gate+up: half activation, half linear
    (r"experts\.\d+\.w1", HIDDEN),  # Mixtral experts: w1 gate, w3 up, w2 down
    (r"experts\.\d+\.(w2|w3)", LINEAR),
    (r"block_sparse_moe\.gate|mlp\.gate", "softmax"),  # MoE routers
    (r"embed_tokens|lm_head|score", LINEAR),
)
_T5 = _rules(
    (r"(SelfAttention|EncDecAttention)\.(q|k|v|o)", LINEAR),
    (r"DenseReluDense\.(wi|wi_0)", HIDDEN),
    (r"DenseReluDense\.wi_1", LINEAR),  # gated: multiplied by act(wi_0(x))
    (r"DenseReluDense\.wo", LINEAR),
    (r"shared|embed_tokens|lm_head", LINEAR),
)
_VIT = _rules(
    (r"attention\.attention\.(query|key|value)", LINEAR),
    (r"attention\.output\.dense", LINEAR),
    (r"intermediate\.dense", HIDDEN),
    (r"layer\.\d+\.output\.dense", LINEAR),
    (r"patch_embeddings\.projection", LINEAR),
    (r"pooler\.dense", "<pooler_act>"),
    (r"classifier", LINEAR),
)
_DISTILBERT = _rules(
    (r"attention\.(q_lin|k_lin|v_lin|out_lin)", LINEAR),
    (r"ffn\.lin1", HIDDEN),
    (r"ffn\.lin2", LINEAR),
    (r"pre_classifier", "relu"),  # DistilBertForSequenceClassification: ReLU after it
    (r"vocab_transform", HIDDEN),
    (r"vocab_projector|classifier|qa_outputs", LINEAR),
    (r"(word|position)_embeddings", LINEAR),
)
_NEOX = _rules(
    (r"attention\.(query_key_value|dense)", LINEAR),
    (r"mlp\.dense_h_to_4h", HIDDEN),
    (r"mlp\.dense_4h_to_h", LINEAR),
    (r"embed_in|embed_out", LINEAR),
)
_OPT = _rules(
    (r"self_attn\.(q_proj|k_proj|v_proj|out_proj)", LINEAR),
    (r"fc1", HIDDEN),
    (r"fc2", LINEAR),
    (r"embed_tokens|embed_positions|lm_head|project_in|project_out|score", LINEAR),
)
_BLOOM = _rules(
    (r"self_attention\.(query_key_value|dense)", LINEAR),
    (r"mlp\.dense_h_to_4h", HIDDEN),
    (r"mlp\.dense_4h_to_h", LINEAR),
    (r"word_embeddings|lm_head", LINEAR),
)
_PHI = _rules(
    (r"self_attn\.(q_proj|k_proj|v_proj|dense)", LINEAR),
    (r"mlp\.fc1", HIDDEN),
    (r"mlp\.fc2", LINEAR),
    (r"embed_tokens|lm_head", LINEAR),
)
# Applied to every Hugging Face model after its family: attention projections and LM heads are
# plain linear maps in every architecture transformers ships.
_GENERIC = _rules(
    (r"(self_attn|attention|attn)\.(q_proj|k_proj|v_proj|o_proj|out_proj)", LINEAR),
    (r"lm_head", LINEAR),
)

_FAMILIES: dict[str, tuple[NameRule, ...]] = {}
for _types, _table in (
    (
        (
            "bert",
            "roberta",
            "xlm-roberta",
            "camembert",
            "electra",
            "ernie",
            "megatron-bert",
            "data2vec-text",
            "layoutlm",
            "xlm-roberta-xl",
            "roberta-prelayernorm",
        ),
        _BERT,
    ),
    (("gpt2", "openai-gpt", "imagegpt", "decision_transformer"), _GPT2),
    (
        (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "olmo",
            "olmo2",
            "granite",
            "cohere",
            "phi3",
            "deepseek_v3",
            "smollm3",
            "ministral",
        ),
        _LLAMA,
    ),
    (("t5", "mt5", "umt5", "longt5"), _T5),
    (("vit", "deit", "vit_mae", "vit_msn"), _VIT),
    (("distilbert",), _DISTILBERT),
    (("gpt_neox", "gpt_neox_japanese"), _NEOX),
    (("opt",), _OPT),
    (("bloom", "falcon"), _BLOOM),
    (("phi",), _PHI),
):
    for _t in _types:
        _FAMILIES[_t] = _table

# families whose projections are transformers' Conv1D: weight stored (in, out)
CONV1D_TYPES = frozenset({"gpt2", "openai-gpt", "imagegpt", "decision_transformer"})
# compiled on first use (re's cache): start-up
_CONV1D_LAYER = r"(?:^|\.)(c_attn|q_attn|c_fc|c_proj)$"

# model families whose modelling code hard-codes the MLP activation (config key absent)
_FIXED_ACT = {"bloom": "gelu_pytorch_tanh"}


def read_hf_config(directory: Path) -> dict[str, Any] | None:
    """The parsed ``config.json`` in ``directory`` if it is a Hugging Face config, else None."""
    path = directory / CONFIG_NAME
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not ("model_type" in data or "architectures" in data):
        return None
    return data


def config_activation(config: dict[str, Any]) -> str | None:
    """The MLP activation name a Hugging Face config specifies, or None."""
    model_type = str(config.get("model_type", ""))
    if model_type in ("t5", "mt5", "umt5", "longt5"):
        act = config.get("dense_act_fn")
        if isinstance(act, str):
            return act
        proj = config.get("feed_forward_proj", "relu")
        if isinstance(proj, str):
            # T5Config: "gated-gelu" means gelu_new on wi_0; otherwise the name after "gated-"
            act = proj.split("-")[-1]
            return "gelu_new" if proj == "gated-gelu" else act
        return None
    if model_type in _FIXED_ACT:
        return _FIXED_ACT[model_type]
    # gemma prefers hidden_activation over the (legacy) hidden_act
    for key in ("hidden_activation", "hidden_act", "activation_function", "activation", "afn"):
        value = config.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _resolve(
    act: str | None, config: dict[str, Any], hidden: Activation | None
) -> Activation | None:
    if act is None:
        return None
    if act == HIDDEN:
        return hidden
    if act == "<pooler_act>":
        pooler = config.get("pooler_act", "tanh")
        return parse_activation(pooler, source=SOURCE) if isinstance(pooler, str) else None
    if act == LINEAR:
        return Activation(ActivationKind.LINEAR, None, SOURCE, "linear")
    return parse_activation(act, source=SOURCE)


def apply_hf_config(model: LoadedModel, directory: Path) -> None:
    """Fill in activations (and metadata) from ``directory/config.json`` if it is a HF config.

    Only layers whose activation is still unknown are touched: a graph, when there is one, wins.
    """
    config = read_hf_config(directory)
    # quantized Linears are recognised by their tensor names, with or without a config.json
    from .quantized_hf import apply as apply_quantization

    apply_quantization(model, config)
    from .peft import apply as apply_peft

    apply_peft(model, directory)
    if Path(model.path).is_dir():
        list_unread_weight_files(model, directory)
    if config is None:
        return
    model.metadata["hf_config"] = config
    init_range = config.get("initializer_range", config.get("init_std"))
    if isinstance(init_range, (int, float)) and not isinstance(init_range, bool):
        model.metadata["initializer_range"] = float(init_range)
    model.framework = "transformers"
    model_type = str(config.get("model_type", ""))
    act_name = config_activation(config)
    hidden = parse_activation(act_name, source=SOURCE) if act_name else None
    rules = _FAMILIES.get(model_type, ()) + _GENERIC
    mapped = 0
    for layer in model.layers:
        if layer.activation is not None:
            continue
        for rule in rules:
            if rule.matches(layer.name):
                layer.activation = _resolve(rule.act, config, hidden)
                mapped += layer.activation is not None
                break
    if model_type and model_type not in _FAMILIES:
        model.notes.append(
            f"Hugging Face model_type {model_type!r} has no layer map: only "
            "attention projections and lm_head get activations from config.json"
        )
    elif mapped:
        model.notes.append(
            f"activations of {mapped} layer(s) from config.json "
            f"(model_type {model_type!r}, activation {act_name!r})"
        )
    if model_type in CONV1D_TYPES:
        _conv1d_fans(model)


def _conv1d_fans(model: LoadedModel) -> None:
    """transformers' Conv1D computes x @ W + b with W (in, out): fans are (shape[0], shape[1])."""
    for layer in model.layers:
        if not re.search(_CONV1D_LAYER, layer.name):
            continue
        for t in layer.tensors:
            if t.role is Role.KERNEL and len(t.shape) == 2:
                t.fan_in, t.fan_out = int(t.shape[0]), int(t.shape[1])
                t.unit_axis = 1
                t.matrix_shape = (int(t.shape[0]), int(t.shape[1]))
                t.op = "Conv1D"
                t.notes.append("transformers Conv1D: weight stored (in, out)")
        layer.op = "Conv1D"


# files that hold weights in some format (transformers/diffusers/optimum/llama.cpp conventions)
WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".onnx",
    ".onnx_data",
    ".h5",
    ".keras",
    ".msgpack",
    ".gguf",
    ".npz",
    ".distcp",
    ".pdparams",
    ".tflite",
)
_INDEX = "model.safetensors.index.json"
MAX_LISTED_DEPTH = 3
MAX_LISTED_FILES = 10_000


def _shards_read(model: LoadedModel, directory: Path) -> set[str] | None:
    """Relative paths of the safetensors shards the directory loader read (its own rule: the
    index's weight_map when there is one, else every top-level *.safetensors)."""
    if model.format != "safetensors-sharded":
        return None
    index = directory / _INDEX
    if index.is_file():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        wm = data.get("weight_map") if isinstance(data, dict) else None
        return {str(v) for v in wm.values()} if isinstance(wm, dict) else None
    return {p.name for p in directory.glob("*.safetensors")}


def list_unread_weight_files(model: LoadedModel, directory: Path) -> None:
    """A Hugging Face folder often holds weights the index does not name (``onnx/``,
    ``original/`` consolidated checkpoints, a stray ``*.safetensors``, ``pytorch_model.bin`` beside
    the safetensors). They are not part of what was audited: each is listed in ``skipped`` (and the
    inventory) with the command that audits it, never silently passed over."""
    read = _shards_read(model, directory)
    if read is None:
        return
    from ..model import SkipReason, StoredTensor

    unread: list[tuple[str, int]] = []
    seen = 0
    for root, dirs, files in os.walk(directory):
        depth = Path(root).relative_to(directory).parts
        if len(depth) >= MAX_LISTED_DEPTH:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .git, .cache
        for name in files:
            seen += 1
            if seen > MAX_LISTED_FILES:
                model.notes.append(f"stopped listing unread weight files after {MAX_LISTED_FILES}")
                break
            rel = Path(root, name).relative_to(directory).as_posix()
            if not name.endswith(WEIGHT_SUFFIXES) or rel in read or name.startswith("."):
                continue
            if name in (
                "training_args.bin",
                "optimizer.bin",
                "scheduler.bin",
                "rng_state.pth",
                "optimizer.pt",
                "scheduler.pt",
            ) or name.startswith("rng_state"):
                continue  # Trainer state, not model weights
            try:
                size = Path(root, name).stat().st_size
            except OSError:
                continue
            unread.append((rel, size))
    for rel, size in sorted(unread):
        detail = (
            "weights file outside the audited shards (not read): audit it separately "
            f"with `initaudit {directory / rel}`"
        )
        model.skipped.append((rel, detail))
        if model.inventory is not None:
            model.inventory.append(
                StoredTensor(rel, (size,), "file", size, True, SkipReason.UNMAPPED, detail)
            )
    if unread:
        model.notes.append(
            f"{len(unread)} weights file(s) in the folder were not part of the "
            "audited shards; listed under skipped"
        )
