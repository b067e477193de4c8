"""Model-zoo benchmark: untouched models from the major libraries must audit clean, and one real
defect injected into each must be caught.

Ground truth: a model freshly built by its library's own init code, untouched, is what people
ship; any error or warning on it is a false alarm (a bug in initaudit). The same model with one
deliberate defect injected (a zeroed hidden kernel, duplicated filters, N(0, 1) weights, a NaN,
He in front of a saturating head) must be reported by the rule made for that defect.

    python benchmarks/zoo.py                          # every library (~1 h on 2 cores)
    python benchmarks/zoo.py --library timm --limit 40 --jobs 2   # one shard (resumable)
    python benchmarks/zoo.py --report                 # print the table from the results JSON

Results accumulate in benchmarks/_zoo/results.json (one entry per library/model/seed; models
already there are skipped, so a long run can be done in 10-minute shards). Each model runs in
a child process (bounded memory; a crash or hang costs one model, never the run).

Per model and seed: build with the library's own init (``pretrained=False`` / ``weights=None`` /
``from_config``), save in the formats users use, audit each file, record every error/warning;
then inject the model's defect into the saved weights and audit again. ``--seeds 0,1,2`` runs
each model under several ``torch.manual_seed`` draws and the report lists every verdict that
changes with the seed (a gate must not pass or fail by the draw).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = ROOT / "benchmarks" / "_zoo" / "results.json"
LIBRARIES = ("torch.nn", "torchvision", "timm", "transformers", "keras", "flax")
MODEL_TIMEOUT = 300.0  # seconds per model (build + saves + audits); a hang costs one model
# a model whose worker grows past this is stopped (the machine is shared; a full-size model that
# the shrinking missed is "does not build small", not a reason to swap)
# a worker over this is stopped (one model lost); ZOO_MEMORY_GIB raises it for the largest models
MODEL_MEMORY = float(os.environ.get("ZOO_MEMORY_GIB", "3")) * 2**30


# ---- torchvision needs its op schemas declared before import (CUDA-linked compiled ops) ----------

def prepare_torchvision() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from _tv import prepare_torchvision as prep

    prep()


# ---- the catalogue ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    library: str
    name: str


def _torch_nn_entries() -> list[str]:
    acts = ("relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "tanh", "sigmoid",
            "softplus", "hardswish", "relu6", "prelu")
    out = [f"mlp-{a}" for a in acts]
    out += [f"cnn-{a}" for a in ("relu", "gelu", "silu", "tanh")]
    out += ["cnn-bn-relu", "resnet-block", "rnn-tanh", "lstm", "gru", "transformer-encoder",
            "transformer-decoder", "embedding-mlp", "deep-gelu-mlp", "sigmoid-head-mlp"]
    return out


def _torchvision_entries() -> list[str]:
    prepare_torchvision()
    from torchvision import models

    names = sorted(models.list_models(module=models))
    det = sorted(models.list_models(module=models.detection))
    seg = sorted(models.list_models(module=models.segmentation))
    # classification backbones at most ~100M params; the huge ViT-H / RegNet-128GF are skipped
    skip = {"vit_h_14", "regnet_y_128gf", "regnet_y_32gf", "vit_l_16", "vit_l_32"}
    return [n for n in names if n not in skip] + [f"detection/{n}" for n in det] + \
        [f"segmentation/{n}" for n in seg]


# one more model per timm name family (the name's leading letters+digits: "seresnet", "resnet50",
# "halonet"): families share a module but not their init paths (attention kinds, zero_init_last,
# SE gates). The smallest name per family, kept if under 40M parameters; regenerate with
#   timm.create_model(n) under torch.device("meta") over the family picks (see _timm_entries)
_TIMM_FAMILIES = (
    "bat_resnext26ts", "botnet26t_256", "botnet50ts_256", "coatnet_nano_cc_224",
    "coatnext_nano_rw_224", "convformer_s18", "cs3darknet_l", "cspdarknet53", "cspresnet50",
    "cspresnext50", "darknet21", "darknetaa53", "deit3_small_patch16_224", "densenet161",
    "densenet169", "densenet201", "densenetblur121d", "dla102", "dla46_c", "dla60", "dpn48b",
    "dpn92", "eca_nfnet_l0", "ecaresnet26t", "ecaresnet50d", "ecaresnetlight",
    "ecaresnext26t_32x4d", "ecaresnext50t_32x4d", "efficientnetv2_rw_t", "ese_vovnet39b",
    "fbnetc_100", "fbnetv3_b", "gc_efficientnetv2_rw_t", "gcresnet33ts", "gcresnet50t",
    "gcresnext26ts", "gcresnext50ts", "gernet_l", "ghostnetv2_100", "ghostnetv3_050",
    "gmixer_12_224", "halo2botnet50ts_256", "halonet50ts", "halonet_h1", "haloregnetz_b",
    "hgnetv2_b0", "lambda_resnet26t", "lamhalobotnet50ts_256", "maxxvit_rmlp_nano_rw_256",
    "maxxvitv2_nano_rw_256", "mixnet_l", "mnasnet_050", "mobilenet_edgetpu_100",
    "mobilenetv1_100", "mobilenetv2_035", "mobilenetv3_rw", "mobilenetv4_conv_large",
    "mobileone_s0", "mobilevitv2_050", "regnetv_040", "regnety_008_tv", "regnetz_d8",
    "resnest26d", "resnest50d", "resnet10t", "resnet14t", "resnet26", "resnet32ts", "resnet33ts",
    "resnet34", "resnet50", "resnet51q", "resnet61q", "resnetaa34d", "resnetaa50", "resnetblur18",
    "resnetblur50", "resnetrs50", "resnext26ts", "resnext50_32x4d", "rexnetr_100",
    "sam2_hiera_tiny", "sebotnet33ts_256", "sedarknet21", "sehalonet33ts", "selecsls60",
    "semnasnet_050", "seresnet18", "seresnet33ts", "seresnet34", "seresnet50", "seresnetaa50d",
    "seresnext26ts", "seresnext50_32x4d", "skresnet34", "skresnet50", "skresnext50_32x4d",
    "spnasnet_100", "test_vit", "tf_efficientnet_b0", "vit_small_patch8_224", "vovnet57a",
    "xception65",
)


def _timm_entries() -> list[str]:
    """One small model per timm module (architecture family), plus the named FP families."""
    import timm

    small = ("atto", "femto", "pico", "nano", "tiny", "xxs", "xs", "small", "mobile", "050",
             "_s_", "b0", "lite0", "18", "_t", "light", "mini")
    picked: dict[str, str] = {}
    for module in sorted(timm.list_modules()):
        names = timm.list_models(module=module)
        if not names:
            continue
        ranked = sorted(names, key=lambda n: (not any(s in n for s in small), len(n), n))
        picked[module] = ranked[0]
    extra = ["vit_tiny_patch16_224", "mixer_s32_224", "convnextv2_atto", "beit_base_patch16_224",
             "cait_xxs24_224", "deit_tiny_distilled_patch16_224", "resmlp_12_224",
             "gmlp_ti16_224", "vit_base_patch16_reg4_gap_256", "eva02_tiny_patch14_224",
             "swin_tiny_patch4_window7_224", "efficientnet_b0", "mobilenetv3_small_050",
             "resnet18", "regnetx_002", "levit_128s", "poolformer_s12", "coat_lite_tiny",
             "xcit_nano_12_p16_224", "convmixer_768_32", "edgenext_xx_small", "fastvit_t8",
             "inception_v3", "ghostnet_100", "hrnet_w18_small", "dla34"]
    known = set(timm.list_models())
    out = sorted(set(picked.values()) | {e for e in (*extra, *_TIMM_FAMILIES) if e in known})
    return out


def _transformers_entries() -> list[str]:
    from transformers import CONFIG_MAPPING, MODEL_MAPPING

    out = []
    for model_type in sorted(CONFIG_MAPPING.keys()):
        try:
            cfg_cls = CONFIG_MAPPING[model_type]
        except Exception:
            continue
        if cfg_cls in MODEL_MAPPING._model_mapping or model_type in MODEL_MAPPING._model_mapping:
            out.append(model_type)
    return out


def _keras_entries() -> list[str]:
    import keras

    apps = keras.applications
    names = [n for n in dir(apps) if n[0].isupper()]
    # ~100M+ params take minutes to build and save on 2 cores
    skip = {"VGG16", "VGG19", "EfficientNetB7", "EfficientNetB6", "EfficientNetV2L",
            "ConvNeXtXLarge", "ConvNeXtLarge", "NASNetLarge", "EfficientNetB5",
            "ConvNeXtBase", "EfficientNetV2M", "ResNet152", "ResNet152V2", "EfficientNetB4"}
    if os.environ.get("ZOO_LARGE"):  # the whole of keras.applications, large ones included
        skip = set()
    return sorted(n for n in names if n not in skip)


_FLAX_ACTS = ("relu", "gelu", "silu", "tanh", "sigmoid", "elu", "leaky_relu", "selu", "softplus",
              "hard_swish")


def _flax_entries() -> list[str]:
    """Flax models as users write them: linen modules initialised with ``Module.init`` (all
    variables, params and batch_stats) and nnx modules (``nnx.state``), with Flax's own default
    initialisers unless the model's published code sets others (ViT: zero head and class token,
    N(0, 0.02) position embedding, Xavier MLP with N(0, 1e-6) biases)."""
    out = [f"linen-mlp-{a}" for a in _FLAX_ACTS]
    out += ["linen-cnn", "linen-resnet-block", "linen-resnet", "linen-vit", "linen-transformer"]
    out += [f"nnx-mlp-{a}" for a in ("relu", "gelu", "silu", "tanh", "sigmoid", "elu")]
    out += ["nnx-cnn", "nnx-resnet", "nnx-transformer", "nnx-vit"]
    return out


ENTRIES: dict[str, Callable[[], list[str]]] = {
    "torch.nn": _torch_nn_entries, "torchvision": _torchvision_entries, "timm": _timm_entries,
    "transformers": _transformers_entries, "keras": _keras_entries, "flax": _flax_entries,
}


# ---- builders --------------------------------------------------------------------------------------

def _torch_act(name: str):
    from torch import nn

    return {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "selu": nn.SELU,
            "gelu": nn.GELU, "silu": nn.SiLU, "mish": nn.Mish, "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "hardswish": nn.Hardswish,
            "relu6": nn.ReLU6, "prelu": nn.PReLU}[name]()


def build_torch_nn(name: str):
    """torch.nn stacks with torch's own default init (what `nn.Linear(...)` gives everyone)."""
    import torch
    from torch import nn

    if name.startswith("mlp-"):
        act = name[4:]
        layers: list[nn.Module] = []
        dims = [64, 256, 256, 256, 10]
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(_torch_act(act))
        return nn.Sequential(*layers), torch.randn(2, 64)
    if name.startswith("cnn-"):
        act = name[4:]
        if act == "bn-relu":
            m = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
                              nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1, bias=False),
                              nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(64, 10))
        else:
            m = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), _torch_act(act),
                              nn.Conv2d(32, 64, 3, padding=1), _torch_act(act),
                              nn.Conv2d(64, 64, 3, padding=1), _torch_act(act),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
        return m.eval(), torch.randn(2, 3, 16, 16)
    if name == "resnet-block":
        class Block(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.stem = nn.Conv2d(3, 32, 3, padding=1)
                self.c1 = nn.Conv2d(32, 32, 3, padding=1)
                self.c2 = nn.Conv2d(32, 32, 3, padding=1)
                self.head = nn.Linear(32, 10)

            def forward(self, x):
                x = torch.relu(self.stem(x))
                x = torch.relu(x + self.c2(torch.relu(self.c1(x))))
                return self.head(x.mean(dim=(2, 3)))
        return Block(), torch.randn(2, 3, 16, 16)
    if name in ("rnn-tanh", "lstm", "gru"):
        cls = {"rnn-tanh": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[name]

        class Seq(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.rnn = cls(32, 64, num_layers=2, batch_first=True)
                self.head = nn.Linear(64, 5)

            def forward(self, x):
                return self.head(self.rnn(x)[0][:, -1])
        return Seq(), torch.randn(2, 7, 32)
    if name == "transformer-encoder":
        layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
        return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval(), torch.randn(2, 5, 64)
    if name == "transformer-decoder":
        class Dec(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(64, 4, 128, batch_first=True), 2)

            def forward(self, x):
                return self.dec(x, x)
        return Dec().eval(), torch.randn(2, 5, 64)
    if name == "embedding-mlp":
        class Emb(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(500, 64)
                self.fc1 = nn.Linear(64, 128)
                self.fc2 = nn.Linear(128, 10)

            def forward(self, x):
                return self.fc2(torch.relu(self.fc1(self.embed(x).mean(1))))
        return Emb(), torch.randint(0, 500, (2, 7))
    if name == "deep-gelu-mlp":
        layers = [nn.Linear(64, 128)]
        for _ in range(10):
            layers += [nn.GELU(), nn.Linear(128, 128)]
        return nn.Sequential(*layers), torch.randn(2, 64)
    if name == "sigmoid-head-mlp":
        # a multi-label sigmoid head (128 labels): on a 1-unit head He's sqrt(2/fan_in) and
        # Glorot's sqrt(2/(fan_in + 1)) are the same scale, so an injected He could not be told
        # from a correct Glorot head by anyone
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                             nn.Linear(128, 128), nn.Sigmoid()), torch.randn(2, 64)
    raise KeyError(name)


def build_torchvision(name: str):
    import torch

    prepare_torchvision()
    from torchvision import models

    if name.startswith("detection/"):
        n = name.split("/", 1)[1]
        kw: dict[str, Any] = {"weights": None, "weights_backbone": None}
        return models.get_model(n, **kw).eval(), None
    if name.startswith("segmentation/"):
        n = name.split("/", 1)[1]
        kw = {"weights": None, "weights_backbone": None}
        return models.get_model(n, **kw).eval(), None
    kw = {"weights": None}
    if name.startswith("inception") or name == "googlenet":
        kw["init_weights"] = True
        kw["aux_logits"] = False
    m = models.get_model(name, **kw).eval()
    size = 299 if name.startswith("inception") else 224
    return m, torch.randn(1, 3, size, size)


def build_timm(name: str):
    prepare_torchvision()
    import timm
    import torch

    m = timm.create_model(name, pretrained=False).eval()
    size = m.pretrained_cfg.get("input_size", (3, 224, 224))
    return m, torch.randn(1, *size)


# size keys shrunk for transformers configs: small enough to build in a second, wide enough
# (>= 32) for the statistics to mean something
_HF_SHRINK = {
    "hidden_size": 64, "d_model": 64, "n_embd": 64, "dim": 64, "embed_dim": 64,
    "intermediate_size": 128, "d_ff": 128, "ffn_dim": 128, "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128, "n_inner": 128, "hidden_dim": 128,
    "num_hidden_layers": 2, "num_layers": 2, "n_layer": 2, "n_layers": 2, "encoder_layers": 2,
    "decoder_layers": 2, "num_decoder_layers": 2, "num_encoder_layers": 2,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "encoder_attention_heads": 4,
    "decoder_attention_heads": 4, "num_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 512, "max_position_embeddings": 128, "n_positions": 128, "d_kv": 16,
    "head_dim": 16, "projection_dim": 32,
}


_LAYER_COUNTS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers",
                 "decoder_layers", "num_decoder_layers", "num_encoder_layers")


def _get(cfg: Any, key: str) -> Any:
    """A config attribute, None where the config refuses a global value (per-layer attributes
    of Gemma 4 raise on a global read)."""
    try:
        return getattr(cfg, key, None)
    except Exception:
        return None


def _shrink(cfg, keys: frozenset[str] | None = None) -> None:
    """Shrink the size keys of a config (all of _HF_SHRINK, or only `keys`) and its nested
    configs."""
    # per-layer lists (layer_types, mlp_layer_types...) must keep the layer count's length: a
    # config that validates them otherwise refuses to build (afmoe)
    for key in _LAYER_COUNTS:
        if keys is not None and key not in keys:
            continue
        cur = _get(cfg, key)
        if isinstance(cur, int) and not isinstance(cur, bool) and cur > _HF_SHRINK[key]:
            for attr, val in list(vars(cfg).items()):
                if isinstance(val, list) and len(val) == cur:
                    try:
                        setattr(cfg, attr, val[:_HF_SHRINK[key]])
                    except Exception:
                        pass
    for key, value in _HF_SHRINK.items():
        if keys is not None and key not in keys:
            continue
        cur = _get(cfg, key)
        if isinstance(cur, int) and not isinstance(cur, bool) and cur > value:
            try:
                setattr(cfg, key, value)
            except Exception:
                pass
    # every nested config (text_config, vlm_config, decoder_config, audio_encoder_config...):
    # a full-size sub-model (ColPali's PaliGemma) takes gigabytes and minutes
    for sub, child in list(vars(cfg).items()):
        if sub != "_parent" and child is not cfg and hasattr(child, "to_dict") \
                and hasattr(child, "model_type"):
            _shrink(child, keys)


def build_transformers(name: str):
    import torch

    prepare_torchvision()
    import copy

    from transformers import AutoConfig, AutoModel

    base = AutoConfig.for_model(name)
    _required(base)
    # shrinking can break a config's own consistency checks (token ids past a smaller vocab, a
    # Mamba head size tied to the width): each attempt shrinks less; the library's defaults last,
    # and only when the model is small at them (counted on the meta device, nothing allocated)
    vocab_keys = {"vocab_size", "max_position_embeddings", "n_positions"}
    attempts: list[tuple[str, frozenset[str] | None]] = [
        ("shrunk", None),
        ("shrunk, vocabulary kept", frozenset(set(_HF_SHRINK) - vocab_keys)),
        ("depth only", frozenset(_LAYER_COUNTS)),
        ("library defaults", frozenset()),
    ]
    first: BaseException | None = None
    for label, keys in attempts:
        cfg = copy.deepcopy(base)
        try:
            _shrink(cfg, keys)
            # size it first on the meta device: some shrunk configs still allocate 34 GB
            # (muse_spark), and a build with the widths kept can swap a shared box
            with torch.device("meta"):
                n = sum(p.numel() for p in AutoModel.from_config(cfg).parameters())
            if n > DEFAULT_SIZE_LIMIT:
                raise ValueError(f"{n / 1e6:.0f}M parameters ({label})")
            model = AutoModel.from_config(cfg).eval()
        except Exception as exc:
            first = first or exc
            continue
        model._zoo_build = label
        return model, _hf_example(model)
    assert first is not None
    raise first


# a transformers model that builds only with its widths (or all sizes) at the library's defaults
# is built if it is this small
DEFAULT_SIZE_LIMIT = 150_000_000


def _required(cfg) -> None:
    """Values some configs leave unset and the model needs (time-series forecasters)."""
    for key, value in (("prediction_length", 8), ("context_length", 16)):
        if hasattr(cfg, key) and getattr(cfg, key) is None:
            try:
                setattr(cfg, key, value)
            except Exception:
                pass


def _hf_example(model: Any) -> Any:
    """The model's main input for the exports (TorchScript / ONNX): token ids for text models,
    an image for vision models; None where it takes something else (exports then skipped)."""
    import torch

    cfg = model.config
    main = getattr(model, "main_input_name", "input_ids")
    if main == "input_ids":
        vocab = getattr(cfg, "vocab_size", None) or 100
        return torch.randint(0, min(int(vocab), 100), (1, 8))
    if main == "pixel_values":
        size = getattr(cfg, "image_size", 32)
        size = size[0] if isinstance(size, (list, tuple)) else size
        return torch.randn(1, getattr(cfg, "num_channels", 3), int(size), int(size))
    return None


def build_keras(name: str):
    import keras

    # the draw follows --seeds like torch.manual_seed does for the torch libraries
    keras.utils.set_random_seed(int(os.environ.get("ZOO_SEED", "0")))
    cls = getattr(keras.applications, name)
    return cls(weights=None), None


def build_flax(name: str):
    import jax
    import jax.numpy as jnp

    seed = int(os.environ.get("ZOO_SEED", "0"))
    key = jax.random.PRNGKey(seed)
    if name.startswith("linen-"):
        import flax.linen as fnn

        kind = name[6:]

        class MLP(fnn.Module):
            act: Any

            @fnn.compact
            def __call__(self, x):
                for w in (256, 256, 256):
                    x = self.act(fnn.Dense(w)(x))
                return fnn.Dense(10)(x)

        class CNN(fnn.Module):
            @fnn.compact
            def __call__(self, x):
                x = fnn.relu(fnn.Conv(32, (3, 3))(x))
                x = fnn.relu(fnn.Conv(64, (3, 3))(x))
                return fnn.Dense(10)(x.mean(axis=(1, 2)))

        class ResBlock(fnn.Module):
            @fnn.compact
            def __call__(self, x):
                x = fnn.Conv(32, (3, 3))(x)
                y = fnn.relu(fnn.Conv(32, (3, 3))(fnn.relu(x)))
                y = fnn.Conv(32, (3, 3))(y)
                return fnn.Dense(10)(fnn.relu(x + y).mean(axis=(1, 2)))

        class BottleneckBlock(fnn.Module):
            # flax examples/imagenet/models.py ResNetBlock: conv-BN-relu x2, BN zero-init scale
            # on the residual branch's last norm (scale_init=nn.initializers.zeros_init())
            filters: int
            strides: tuple[int, int] = (1, 1)

            @fnn.compact
            def __call__(self, x):
                norm = lambda **kw: fnn.BatchNorm(use_running_average=True, momentum=0.9,
                                                  epsilon=1e-5, **kw)
                conv = lambda *a, **kw: fnn.Conv(*a, use_bias=False, **kw)
                residual = x
                y = fnn.relu(norm()(conv(self.filters, (3, 3), self.strides)(x)))
                y = norm(scale_init=fnn.initializers.zeros_init())(conv(self.filters, (3, 3))(y))
                if residual.shape != y.shape:
                    residual = norm(name="norm_proj")(
                        conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual))
                return fnn.relu(residual + y)

        class ResNet(fnn.Module):
            @fnn.compact
            def __call__(self, x):
                x = fnn.Conv(32, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False,
                             name="conv_init")(x)
                x = fnn.relu(fnn.BatchNorm(use_running_average=True, name="bn_init")(x))
                for i, f in enumerate((32, 64, 128)):
                    for j in range(2):
                        x = BottleneckBlock(f, (2, 2) if i > 0 and j == 0 else (1, 1))(x)
                return fnn.Dense(10)(x.mean(axis=(1, 2)))

        class MlpBlock(fnn.Module):
            # google-research/vision_transformer vit_jax/models_vit.py MlpBlock
            @fnn.compact
            def __call__(self, x):
                init = dict(kernel_init=fnn.initializers.xavier_uniform(),
                            bias_init=fnn.initializers.normal(stddev=1e-6))
                y = fnn.gelu(fnn.Dense(128, **init)(x))
                return fnn.Dense(x.shape[-1], **init)(y)

        class ViT(fnn.Module):
            # vit_jax/models_vit.py VisionTransformer: zero head and cls, N(0, 0.02) pos emb
            @fnn.compact
            def __call__(self, x):
                x = fnn.Conv(64, (4, 4), (4, 4), padding="VALID", name="embedding")(x)
                b, h, w, c = x.shape
                x = x.reshape(b, h * w, c)
                cls = self.param("cls", fnn.initializers.zeros, (1, 1, c))
                x = jnp.concatenate([jnp.tile(cls, [b, 1, 1]), x], axis=1)
                pos = self.param("pos_embedding", fnn.initializers.normal(stddev=0.02),
                                 (1, x.shape[1], c))
                x = x + pos
                for _ in range(2):
                    y = fnn.LayerNorm()(x)
                    y = fnn.MultiHeadDotProductAttention(
                        num_heads=4, kernel_init=fnn.initializers.xavier_uniform())(y, y)
                    x = x + y
                    x = x + MlpBlock()(fnn.LayerNorm()(x))
                x = fnn.LayerNorm(name="encoder_norm")(x)
                return fnn.Dense(10, kernel_init=fnn.initializers.zeros, name="head")(x[:, 0])

        class Transformer(fnn.Module):
            @fnn.compact
            def __call__(self, x):
                x = fnn.Embed(500, 64)(x)
                for _ in range(2):
                    y = fnn.LayerNorm()(x)
                    x = x + fnn.MultiHeadDotProductAttention(num_heads=4)(y, y)
                    y = fnn.LayerNorm()(x)
                    x = x + fnn.Dense(64)(fnn.gelu(fnn.Dense(128)(y)))
                return fnn.Dense(500)(fnn.LayerNorm()(x))

        img = jnp.ones((1, 32, 32, 3))
        if kind.startswith("mlp-"):
            act = getattr(fnn, kind[4:])
            mod, x = MLP(act), jnp.ones((1, 64))
        else:
            mod, x = {"cnn": (CNN(), img), "resnet-block": (ResBlock(), img),
                      "resnet": (ResNet(), img), "vit": (ViT(), img),
                      "transformer": (Transformer(), jnp.ones((1, 8), dtype=jnp.int32))}[kind]
        # users save all the variables (params and, for BatchNorm, batch_stats)
        return jax.tree_util.tree_map(lambda v: v, dict(mod.init(key, x))), None
    from flax import nnx

    rngs = nnx.Rngs(seed)
    kind = name[4:]
    if kind.startswith("mlp-"):
        act_fn = getattr(nnx, kind[4:])

        class NMLP(nnx.Module):
            def __init__(self, rngs):
                self.l1 = nnx.Linear(64, 256, rngs=rngs)
                self.l2 = nnx.Linear(256, 256, rngs=rngs)
                self.l3 = nnx.Linear(256, 256, rngs=rngs)
                self.out = nnx.Linear(256, 10, rngs=rngs)

            def __call__(self, x):
                return self.out(act_fn(self.l3(act_fn(self.l2(act_fn(self.l1(x)))))))
        mod = NMLP(rngs)
    elif kind == "cnn":
        class NCNN(nnx.Module):
            def __init__(self, rngs):
                self.c1 = nnx.Conv(3, 32, (3, 3), rngs=rngs)
                self.bn1 = nnx.BatchNorm(32, rngs=rngs)
                self.c2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
                self.bn2 = nnx.BatchNorm(64, rngs=rngs)
                self.head = nnx.Linear(64, 10, rngs=rngs)

            def __call__(self, x):
                x = nnx.relu(self.bn1(self.c1(x)))
                x = nnx.relu(self.bn2(self.c2(x)))
                return self.head(x.mean(axis=(1, 2)))
        mod = NCNN(rngs)
    elif kind == "resnet":
        class NBlock(nnx.Module):
            def __init__(self, c, rngs):
                self.conv1 = nnx.Conv(c, c, (3, 3), use_bias=False, rngs=rngs)
                self.bn1 = nnx.BatchNorm(c, rngs=rngs)
                self.conv2 = nnx.Conv(c, c, (3, 3), use_bias=False, rngs=rngs)
                self.bn2 = nnx.BatchNorm(c, rngs=rngs)

            def __call__(self, x):
                y = nnx.relu(self.bn1(self.conv1(x)))
                return nnx.relu(x + self.bn2(self.conv2(y)))

        class NResNet(nnx.Module):
            def __init__(self, rngs):
                self.stem = nnx.Conv(3, 64, (3, 3), use_bias=False, rngs=rngs)
                self.bn = nnx.BatchNorm(64, rngs=rngs)
                self.blocks = nnx.List([NBlock(64, rngs) for _ in range(3)])
                self.head = nnx.Linear(64, 10, rngs=rngs)

            def __call__(self, x):
                x = nnx.relu(self.bn(self.stem(x)))
                for b in self.blocks:
                    x = b(x)
                return self.head(x.mean(axis=(1, 2)))
        mod = NResNet(rngs)
    elif kind == "vit":
        class NEncoder(nnx.Module):
            def __init__(self, rngs):
                self.ln1 = nnx.LayerNorm(64, rngs=rngs)
                self.attn = nnx.MultiHeadAttention(num_heads=4, in_features=64, decode=False,
                                                   rngs=rngs)
                self.ln2 = nnx.LayerNorm(64, rngs=rngs)
                self.fc1 = nnx.Linear(64, 128, rngs=rngs)
                self.fc2 = nnx.Linear(128, 64, rngs=rngs)

        class NViT(nnx.Module):
            # the flax nnx ViT example (docs: "Vision Transformer with NNX"): N(0, 0.02) pos emb,
            # zero cls token
            def __init__(self, rngs):
                self.patch = nnx.Conv(3, 64, (4, 4), strides=(4, 4), padding="VALID", rngs=rngs)
                self.cls_token = nnx.Param(jnp.zeros((1, 1, 64)))
                self.pos_embeddings = nnx.Param(
                    jax.random.normal(rngs.params(), (1, 65, 64)) * 0.02)
                self.layers = nnx.List([NEncoder(rngs) for _ in range(2)])
                self.norm = nnx.LayerNorm(64, rngs=rngs)
                self.classifier = nnx.Linear(64, 10, rngs=rngs)
        mod = NViT(rngs)
    else:
        class NBlockT(nnx.Module):
            def __init__(self, rngs):
                self.ln1 = nnx.LayerNorm(64, rngs=rngs)
                self.attn = nnx.MultiHeadAttention(num_heads=4, in_features=64, decode=False,
                                                   rngs=rngs)
                self.ln2 = nnx.LayerNorm(64, rngs=rngs)
                self.up = nnx.Linear(64, 128, rngs=rngs)
                self.down = nnx.Linear(128, 64, rngs=rngs)

        class NT(nnx.Module):
            def __init__(self, rngs):
                self.embed = nnx.Embed(500, 64, rngs=rngs)
                self.blocks = nnx.List([NBlockT(rngs) for _ in range(2)])
                self.norm = nnx.LayerNorm(64, rngs=rngs)
                self.lm_head = nnx.Linear(64, 500, rngs=rngs)
        mod = NT(rngs)
    # what users save: the whole state (params and BatchNorm statistics) as a pure dict
    return nnx.to_pure_dict(nnx.state(mod)), None


BUILDERS: dict[str, Callable[[str], tuple[Any, Any]]] = {
    "torch.nn": build_torch_nn, "torchvision": build_torchvision, "timm": build_timm,
    "transformers": build_transformers, "keras": build_keras, "flax": build_flax,
}


# ---- saving ----------------------------------------------------------------------------------------

def _flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _flatten(v, f"{prefix}/{k}" if prefix else str(k))
    else:
        yield prefix, tree


def save_formats(library: str, model: Any, example: Any, folder: Path,
                 formats: set[str]) -> dict[str, Path]:
    """Save an untouched model in the formats users save it in; {format: path}."""
    out: dict[str, Path] = {}
    if library in ("torch.nn", "torchvision", "timm", "transformers"):
        import torch

        if library == "transformers":
            model.save_pretrained(folder / "hf", safe_serialization=True)
            out["save_pretrained"] = folder / "hf" / "model.safetensors"
            # the exporters trace tuples, not ModelOutput dicts (after the save: config.json
            # keeps the library's own value)
            model.config.return_dict = False
            if hasattr(model.config, "use_cache"):
                model.config.use_cache = False
        else:
            sd = {k: v for k, v in model.state_dict().items()}
            torch.save(sd, folder / "state_dict.pt")
            out["state_dict"] = folder / "state_dict.pt"
        if "module" in formats and library == "torch.nn":
            try:  # a class defined inside a function cannot be pickled by reference
                torch.save(model, folder / "module.pt")
                out["module"] = folder / "module.pt"
            except Exception as exc:
                out["module!"] = Path(f"export failed: {type(exc).__name__}")
        if "torchscript" in formats and example is not None:
            try:
                torch.jit.save(torch.jit.trace(model, example), folder / "traced.pt")
                out["torchscript"] = folder / "traced.pt"
            except Exception as exc:
                out["torchscript!"] = Path(f"export failed: {type(exc).__name__}: {str(exc)[:200]}")
        if "onnx" in formats and example is not None:
            try:
                torch.onnx.export(model, (example,), folder / "legacy.onnx", dynamo=False)
                out["onnx"] = folder / "legacy.onnx"
            except Exception as exc:
                out["onnx!"] = Path(f"export failed: {type(exc).__name__}: {str(exc)[:200]}")
        if "onnx-dynamo" in formats and example is not None:
            try:
                torch.onnx.export(model, (example,), folder / "dynamo.onnx", dynamo=True,
                                  verbose=False)
                out["onnx-dynamo"] = folder / "dynamo.onnx"
            except Exception as exc:
                out["onnx-dynamo!"] = Path(f"export failed: {type(exc).__name__}: {str(exc)[:200]}")
    elif library == "keras":
        model.save(folder / "model.keras")
        out["keras"] = folder / "model.keras"
    elif library == "flax":
        import numpy as np

        flat = {k: np.asarray(v) for k, v in _flatten(model)}
        # flax.serialization.to_bytes: the Flax examples' and HF's flax_model.msgpack
        if "msgpack" in formats:
            from flax import serialization

            (folder / "model.msgpack").write_bytes(serialization.to_bytes(model))
            out["msgpack"] = folder / "model.msgpack"
        if "orbax" in formats:
            try:
                import orbax.checkpoint as ocp

                ckptr = ocp.StandardCheckpointer()
                ckptr.save((folder / "ckpt" / "1").resolve(), model)
                ckptr.wait_until_finished()
                out["orbax"] = folder / "ckpt" / "1"
            except Exception as exc:
                out["orbax!"] = Path(f"export failed: {type(exc).__name__}: {exc}"[:200])
        if "safetensors" in formats:
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in flat.items()},
                      folder / "params.safetensors", metadata={"format": "flax"})
            out["safetensors"] = folder / "params.safetensors"
        if "npz" in formats:
            np.savez(folder / "params.npz", **flat)
            out["npz"] = folder / "params.npz"
    return out


# ---- defects ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Defect:
    kind: str
    code: str  # the rule that must report it
    tensor: str


DEFECT_KINDS = ("zero-hidden", "duplicate-filters", "normal-1", "nan")
_DEFECT_CODE = {"zero-hidden": "IA201", "duplicate-filters": "IA202", "normal-1": "IA301",
                "nan": "IA203", "he-saturating": "IA101"}


def _residual_end(name: str) -> bool:
    """Whether initaudit reads the kernel as a residual branch's last projection by its name,
    or it is Keras ResNet's `conv<stage>_block<n>_3_conv` (its graph says so there)."""
    from initaudit.analysis.conventions import RESIDUAL_BRANCH_END

    return bool(RESIDUAL_BRANCH_END.search(name) or re.search(r"block\d+_3_conv", name))


def _kernels(named: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    """Hidden kernel candidates: >= 2-D, >= 16 units of >= 16 weights, not embeddings/tokens."""
    out = []
    for name, shape in named:
        low = name.lower()
        # weight-norm directions (parametrizations.weight.original1, weight_v) are scale-free:
        # W = g·v/||v||, so a rescaled v (the normal-1 defect) changes nothing computed
        if len(shape) < 2 or any(s in low for s in ("embed", "token", "pos", "norm", "codevector",
                                                     "relative", "bias", "mask", "rel_",
                                                     "parametrizations", "weight_v")):
            continue
        units, per_unit = shape[0], math.prod(shape[1:])
        if units >= 16 and per_unit >= 16:
            out.append(name)
    return out


def _graph_residual_ends(primary: Path) -> set[str]:
    """Tensors initaudit's own loader places at a residual branch's end in the untouched file
    (from its graph or config: Keras EfficientNet's `block5c_project_conv`, ResNet's
    `*_3_conv`), where a zero is the Fixup / SkipInit convention, not a defect."""
    from initaudit.loaders import load

    try:
        loaded = load(primary)
    except Exception:  # noqa: BLE001 - the audit reports it; the harness only picks a target
        return set()
    return {t.name for layer in loaded.layers if layer.residual for t in layer.tensors}


def choose_defect(index: int, named: list[tuple[str, tuple[int, ...]]],
                  saturating_head: str | None,
                  residual_ends: frozenset[str] = frozenset()) -> Defect | None:
    kernels = _kernels(named)
    if saturating_head is not None:
        return Defect("he-saturating", "IA101", saturating_head)
    if len(kernels) < 2:
        return None
    # the kind depends on the model's name only (not on --only/--offset): reruns agree
    kind = DEFECT_KINDS[zlib.crc32(os.environ.get("ZOO_MODEL", str(index)).encode()) % len(DEFECT_KINDS)]
    # a hidden kernel with layers after it: never the last one
    target = kernels[min(len(kernels) - 2, len(kernels) // 2)]
    if kind == "zero-hidden":
        # nor the last kernel of a residual branch: a zero there is Fixup / SkipInit's
        # convention (its output joins a skip Add; symmetry still breaks), which initaudit
        # reports as info by design, so it is no defect to inject
        inner = [k for k in kernels[:-1] if not _residual_end(k)
                 and not any(_same_tensor(r, k) for r in residual_ends)]
        if inner:
            target = inner[len(inner) // 2]
    if kind == "normal-1":
        # N(0, 1) is > 4x every fan-based std (He fan_in and fan_out) only where both fans are
        # >= 64 (He std <= 0.18); a 20-unit squeeze conv allows He fan_out std 0.32
        shapes = dict(named)
        wide = [k for k in kernels[:-1] if math.prod(shapes[k][1:]) >= 64
                and shapes[k][0] * math.prod(shapes[k][2:]) >= 64]
        if not wide:
            kind = "nan"
        else:
            target = wide[len(wide) // 2]
    return Defect(kind, _DEFECT_CODE[kind], target)


def apply_defect(values, defect: Defect, fan_in: int):
    import numpy as np

    v = np.array(values, dtype=np.float32, copy=True)
    rng = np.random.default_rng(1234)
    if defect.kind == "zero-hidden":
        v[...] = 0.0
    elif defect.kind == "duplicate-filters":
        v[1] = v[0]
        v[3] = v[2]
    elif defect.kind == "normal-1":
        v[...] = rng.standard_normal(v.shape)
    elif defect.kind == "nan":
        # .flat writes through a non-contiguous view (Keras/Flax kernels arrive moveaxis'd);
        # reshape(-1) would copy it and the NaN would be lost
        v.flat[v.size // 2] = np.nan
    elif defect.kind == "he-saturating":
        v[...] = rng.standard_normal(v.shape) * math.sqrt(2.0 / fan_in)
    return v


# ---- auditing --------------------------------------------------------------------------------------

def alarms(report) -> list[dict[str, Any]]:
    return [{"code": f.code, "name": f.name, "severity": f.severity.value,
             "tensor": f.tensor or f.layer, "message": f.message[:300]}
            for f in report.findings if f.severity.value in ("error", "warning")]


def run_one(library: str, name: str, seed: int, formats: set[str], index: int) -> dict[str, Any]:
    """Build, save, audit and inject one model (runs in a child process)."""
    import numpy as np

    from initaudit.engine import audit_path

    os.environ["ZOO_SEED"] = str(seed)
    try:
        import torch

        torch.manual_seed(seed)
        torch.set_num_threads(1)
    except ImportError:
        pass
    t0 = time.perf_counter()
    model, example = BUILDERS[library](name)
    result: dict[str, Any] = {"library": library, "model": name, "seed": seed, "files": {}}
    if getattr(model, "_zoo_build", None):
        result["build"] = model._zoo_build
    with tempfile.TemporaryDirectory(prefix="zoo-") as tmp:
        folder = Path(tmp)
        saved = save_formats(library, model, example, folder, formats)
        for fmt, path in saved.items():
            if fmt.endswith("!"):
                result["files"][fmt[:-1]] = {"export_error": str(path)}
                continue
            rep = audit_path(path)
            entry: dict[str, Any] = {"status": rep.status.value, "alarms": alarms(rep),
                                     "findings": len(rep.findings), "tensors": len(rep.tensors)}
            if rep.status.value == "error":
                entry["error"] = rep.error
            result["files"][fmt] = entry
        # inject one defect into the primary file (weights as the user saves them)
        primary = next(p for f, p in saved.items() if not f.endswith("!"))
        primary_fmt = next(f for f, p in saved.items() if p == primary)
        baseline = frozenset((a["code"], a["tensor"])
                             for a in result["files"].get(primary_fmt, {}).get("alarms", []))
        result["injected"] = inject_and_audit(library, primary, folder, index, model, example,
                                              baseline)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    del np
    return result


def _saturating_head(library: str, name: str, named: list[tuple[str, tuple[int, ...]]]) -> str | None:
    if library == "torch.nn" and name in ("sigmoid-head-mlp", "mlp-tanh", "mlp-sigmoid"):
        ks = [n for n, s in named if len(s) == 2]
        return ks[-1] if name == "sigmoid-head-mlp" else ks[1]
    return None


def inject_and_audit(library: str, primary: Path, folder: Path, index: int, model: Any,
                     example: Any = None,
                     baseline: frozenset[tuple[str, str | None]] = frozenset()) -> dict[str, Any]:
    """Inject this model's defect into the model object, save it like the untouched one, audit."""
    import numpy as np

    from initaudit.engine import audit_path

    torch_like = library in ("torch.nn", "torchvision", "timm", "transformers")
    if torch_like:
        params = dict(model.named_parameters())
        named = [(k, tuple(v.shape)) for k, v in params.items()]
    elif library == "keras":
        params = {w.path: w for w in model.weights}
        named = [(k, tuple(w.shape)) for k, w in params.items()]
    else:
        params = dict(_flatten(model))
        named = [(k, tuple(np.shape(v))) for k, v in params.items()]
    # Keras/JAX kernels are (..., in, out): units on the last axis; so are transformers'
    # Conv1D kernels (GPT-2, ImageGPT: weight is (in, out))
    last_axis = {k for k, _ in named} if not torch_like else _conv1d_weights(model)
    named_units = [(k, (s[-1], *s[:-1]) if len(s) >= 2 and k in last_axis else s)
                   for k, s in named]
    defect = choose_defect(index, named_units,
                           _saturating_head(library, os.environ.get("ZOO_MODEL", ""), named),
                           frozenset(_graph_residual_ends(primary)))
    if defect is None:
        return {"skipped": "no hidden kernel to inject into"}
    shape = dict(named)[defect.tensor]
    on_last = defect.tensor in last_axis
    fan_in = math.prod(shape[:-1]) if on_last else math.prod(shape[1:])

    def mutate(values):
        v = np.asarray(values, dtype=np.float32)
        if on_last:
            v = np.moveaxis(v, -1, 0)
        v = apply_defect(v, defect, fan_in)
        return np.ascontiguousarray(np.moveaxis(v, 0, -1) if on_last else v)

    sub = folder / "injected"
    sub.mkdir()
    if torch_like:
        import torch

        p = params[defect.tensor]
        with torch.no_grad():
            p.copy_(torch.from_numpy(mutate(p.detach().float().numpy())).to(p.dtype))
        # he-saturating needs the graph to see the activation: audit the ONNX export then
        formats = {"onnx"} if defect.kind == "he-saturating" else set()
    elif library == "keras":
        w = params[defect.tensor]
        w.assign(mutate(np.asarray(w)))
        formats = set()
    else:
        model = _unflatten({k: (mutate(v) if k == defect.tensor else np.asarray(v))
                            for k, v in params.items()})
        # save it the way the untouched primary file was saved (an orbax step is a folder)
        formats = {{".msgpack": "msgpack", ".safetensors": "safetensors",
                    ".npz": "npz"}.get(primary.suffix, "orbax")}
    saved = save_formats(library, model, example, sub, formats)
    target = saved.get("onnx") if "onnx" in formats else next(
        p for f, p in saved.items() if not f.endswith("!") and p.suffix == primary.suffix)
    rep = audit_path(target)
    # a hit is the defect's rule on the injected tensor; libraries may rename tensors on save
    # (transformers 5 writes encoder.layer.N for encoder.layers.N), so a new finding of that
    # rule that the untouched file did not have counts too
    hits = [f for f in rep.findings if f.code == defect.code
            and f.severity.value in ("error", "warning")
            and (f.tensor is None or _same_tensor(f.tensor, defect.tensor)
                 or (f.code, f.tensor) not in baseline)]
    if defect.kind == "zero-hidden":
        # transformers 5 may fuse modules on save (HRM's q/k/v/gate projections are written as
        # one gqkv_proj): the zeroed kernel is then a block of dead units in a tensor the
        # in-memory model does not have, reported as IA204 (a warning), which is the catch
        hits += [f for f in rep.findings if f.code == "IA204"
                 and f.severity.value in ("error", "warning") and f.tensor is not None
                 and (f.code, f.tensor) not in baseline
                 and not any(_same_tensor(f.tensor, k) for k in params)]
    return {"kind": defect.kind, "code": defect.code, "tensor": defect.tensor,
            "caught": bool(hits), "status": rep.status.value,
            "reported_on": sorted({str(f.tensor or f.layer) for f in hits})[:5],
            "got": sorted({f.code for f in rep.findings if f.severity.value in ("error", "warning")})}


def _conv1d_weights(model: Any) -> set[str]:
    """Parameter names of transformers' Conv1D modules (weight stored (in, out))."""
    out: set[str] = set()
    named_modules = getattr(model, "named_modules", None)
    if named_modules is None:
        return out
    for mod_name, mod in named_modules():
        if type(mod).__name__ == "Conv1D":
            out.add(f"{mod_name}.weight" if mod_name else "weight")
    return out


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _same_tensor(reported: str, injected: str) -> bool:
    norm = lambda s: s.replace("/", ".").replace(":0", "")
    a, b = norm(reported), norm(injected)
    return a == b or a.endswith(b) or b.endswith(a)


def _run_guarded(args: tuple[str, str, int, list[str], int]) -> dict[str, Any]:
    library, name, seed, formats, index = args
    os.environ["ZOO_MODEL"] = name
    try:
        prepare_torchvision()
        return run_one(library, name, seed, set(formats), index)
    except BaseException as exc:  # the build failing is "does not build offline", not an alarm
        return {"library": library, "model": name, "seed": seed,
                "build_error": f"{type(exc).__name__}: {str(exc)[:300]}",
                "trace": traceback.format_exc()[-1500:]}


def _worker(inbox, outbox) -> None:
    """A long-lived child: runs models one after the other (the imports of torch/transformers,
    ~10 s on a loaded 2-core machine, are paid once per worker, not once per model)."""
    while True:
        args = inbox.get()
        if args is None:
            return
        outbox.put(_run_guarded(args))


# a worker is replaced after this many models (memory a library keeps between builds stays bounded)
WORKER_MODELS = 20


class Worker:
    """One child process fed models through a queue; a hang or a crash costs that one model
    (the child is killed and a fresh one started for the next)."""

    def __init__(self, timeout: float = MODEL_TIMEOUT) -> None:
        self.timeout = timeout
        self.ctx = mp.get_context("spawn")
        self.proc: Any = None
        self.done = 0

    def _start(self) -> None:
        self.inbox, self.outbox = self.ctx.Queue(), self.ctx.Queue()
        self.proc = self.ctx.Process(target=_worker, args=(self.inbox, self.outbox), daemon=True)
        self.proc.start()
        self.done = 0

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.inbox.put(None)
        except Exception:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None

    def run(self, args: tuple[str, str, int, list[str], int]) -> dict[str, Any]:
        if self.proc is None or not self.proc.is_alive() or self.done >= WORKER_MODELS:
            self.stop()
            self._start()
        self.inbox.put(args)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                result = self.outbox.get(timeout=2.0)
                self.done += 1
                return result
            except Exception:
                pass
            if not self.proc.is_alive():
                why = f"worker died (exit code {self.proc.exitcode})"
            elif (rss := _rss_bytes(self.proc.pid)) > MODEL_MEMORY:
                why = f"memory over {MODEL_MEMORY / 2**30:g} GiB ({rss / 2**30:.1f} GiB)"
            elif time.monotonic() > deadline:
                why = f"timeout after {self.timeout:g} s"
            else:
                continue
            self.proc.kill()
            self.proc.join()
            self.proc = None
            return {"library": args[0], "model": args[1], "seed": args[2], "build_error": why}


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run_isolated(args: tuple[str, str, int, list[str], int],
                 timeout: float = MODEL_TIMEOUT) -> dict[str, Any]:
    """One model in its own fresh child process."""
    worker = Worker(timeout)
    try:
        return worker.run(args)
    finally:
        worker.stop()


# ---- the run and the report ------------------------------------------------------------------------

DEFAULT_FORMATS = {
    "torch.nn": ["state_dict", "module", "torchscript", "onnx", "onnx-dynamo"],
    "torchvision": ["state_dict", "onnx"],
    "timm": ["state_dict"],
    "transformers": ["save_pretrained"],
    "keras": ["keras"],
    "flax": ["msgpack", "orbax", "safetensors", "npz"],
}


def load_results(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {}


def key_of(library: str, name: str, seed: int) -> str:
    return f"{library}|{name}|{seed}"


def run(args: argparse.Namespace) -> None:
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = load_results(path)
    seeds = [int(s) for s in args.seeds.split(",")]
    libraries = [args.library] if args.library else list(LIBRARIES)
    todo: list[tuple[str, str, int, list[str], int]] = []
    for library in libraries:
        try:
            names = ENTRIES[library]()
        except Exception as exc:
            print(f"{library}: not available ({type(exc).__name__}: {exc})")
            continue
        if args.only:  # in the order given (small models first on a busy machine)
            names = [n for n in args.only.split(",") if n in set(names)]
        names = names[args.offset:args.offset + args.limit if args.limit else None]
        formats = args.formats.split(",") if args.formats else DEFAULT_FORMATS[library]
        for i, name in enumerate(names):
            for seed in seeds:
                prev = results.get(key_of(library, name, seed))
                # a timeout says the machine was busy, not that the model does not build
                if (args.force or prev is None
                        or "timeout" in prev.get("build_error", "")
                        or (args.retry_unbuilt and "build_error" in prev)):
                    todo.append((library, name, seed, formats, i + args.offset))
    print(f"{len(todo)} model runs to do", flush=True)
    deadline = time.monotonic() + args.budget if args.budget else None
    import queue as queue_mod
    import threading

    items: queue_mod.Queue = queue_mod.Queue()
    for item in todo:
        items.put(item)
    lock = threading.Lock()

    def drive() -> None:
        worker = Worker(args.timeout)
        try:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    return
                try:
                    item = items.get_nowait()
                except queue_mod.Empty:
                    return
                res = worker.run(item)
                with lock:
                    results.update(merge_result(path, res))
                    _print_line(res)
        finally:
            worker.stop()

    threads = [threading.Thread(target=drive) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report(results)


def merge_result(path: Path, res: dict[str, Any]) -> dict[str, Any]:
    """Add one result to the results JSON under an exclusive lock: read what is there now, merge,
    write to a temporary file and rename. Two runs sharing a file (or shards of one run) each
    keep the other's results instead of overwriting them with their own stale copy."""
    import fcntl

    with open(path.with_suffix(path.suffix + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            results = load_results(path)
            results[key_of(res["library"], res["model"], res["seed"])] = res
            tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return results


def _print_line(res: dict[str, Any]) -> None:
    if "build_error" in res:
        print(f"  - {res['library']}/{res['model']} seed {res['seed']}: does not build "
              f"({res['build_error'][:120]})", flush=True)
        return
    n = sum(len(f.get("alarms", [])) for f in res["files"].values())
    inj = res.get("injected", {})
    print(f"  {'ok' if n == 0 else 'FP'} {res['library']}/{res['model']} seed {res['seed']} "
          f"[{res['seconds']}s] alarms={n} injected={inj.get('kind')}:"
          f"{'caught' if inj.get('caught') else inj.get('skipped') or 'MISSED ' + str(inj.get('got'))}",
          flush=True)


def report(results: dict[str, Any], out=sys.stdout, verbose: bool = True) -> dict[str, Any]:
    """Per-library table: models, clean, false alarms (rule and tensor), catch rate, seed flips."""
    by_lib: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for res in results.values():
        by_lib.setdefault(res["library"], {}).setdefault(res["model"], []).append(res)
    summary: dict[str, Any] = {}
    print("| library | models built | not built offline | clean (no error/warning) | false alarms "
          "| injected defects caught | verdicts that change with the seed |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    not_built_lines: list[str] = []
    details: list[str] = []
    for lib in LIBRARIES:
        models = by_lib.get(lib)
        if not models:
            continue
        built = clean = caught = injected = flips = not_built = 0
        for name, runs in sorted(models.items()):
            ok_runs = [r for r in runs if "build_error" not in r]
            if not ok_runs:
                # listed apart, never counted as clean
                not_built += 1
                not_built_lines.append(f"{lib}/{name}: {runs[0]['build_error'][:150]}")
                continue
            built += 1
            verdicts = []
            model_clean = True
            for r in ok_runs:
                alarms_ = sorted({(fmt, a["code"], a["tensor"]) for fmt, f in r["files"].items()
                                  for a in f.get("alarms", [])})
                errs = [fmt for fmt, f in r["files"].items() if f.get("status") == "error"]
                verdicts.append(tuple(alarms_))
                if alarms_ or errs:
                    model_clean = False
                for fmt, code, tensor in alarms_:
                    details.append(f"{lib}/{name} seed {r['seed']} [{fmt}] {code} {tensor}")
                for fmt in errs:
                    details.append(f"{lib}/{name} seed {r['seed']} [{fmt}] audit error: "
                                   f"{r['files'][fmt].get('error')}")
                inj = r.get("injected", {})
                if "caught" in inj:
                    injected += 1
                    caught += bool(inj["caught"])
                    if not inj["caught"]:
                        details.append(f"{lib}/{name} seed {r['seed']} MISSED {inj['kind']} on "
                                       f"{inj['tensor']} (got {inj.get('got')})")
            clean += model_clean
            if len(set(verdicts)) > 1:
                flips += 1
                details.append(f"{lib}/{name}: verdict changes with the seed")
        rate = f"{caught}/{injected} ({100.0 * caught / injected:.1f}%)" if injected else "n/a"
        summary[lib] = {"models": built, "not_built": not_built, "clean": clean,
                        "injected": injected, "caught": caught, "seed_flips": flips}
        print(f"| {lib} | {built} | {not_built} | {clean} ({100.0 * clean / max(built, 1):.1f}%) | "
              f"{built - clean} | {rate} | {flips} |", file=out)
    if details:
        print("\nDetails:", file=out)
        for d in details:
            print(f"- {d}", file=out)
    if not_built_lines and verbose:
        print("\nNot built offline (not counted):", file=out)
        for d in not_built_lines:
            print(f"- {d}", file=out)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--library", choices=LIBRARIES)
    p.add_argument("--only", help="comma-separated model names")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--seeds", default="0")
    p.add_argument("--formats", help="override the library's default formats")
    p.add_argument("--results", default=str(RESULTS),
                   help="results JSON (with --report: several, comma-separated, are merged)")
    p.add_argument("--budget", type=float, default=0, help="stop starting models after N s")
    p.add_argument("--timeout", type=float, default=MODEL_TIMEOUT,
                   help="seconds per model before it counts as a timeout (a loaded machine "
                        "needs more)")
    p.add_argument("--force", action="store_true", help="re-run models already in the results")
    p.add_argument("--retry-unbuilt", action="store_true",
                   help="re-run the models recorded as not built")
    p.add_argument("--report", action="store_true", help="only print the table")
    p.add_argument("--list", action="store_true", help="list the models of --library")
    args = p.parse_args(argv)
    prepare_torchvision()  # before timm / transformers import torchvision
    if args.list:
        for lib in ([args.library] if args.library else LIBRARIES):
            names = ENTRIES[lib]()
            print(f"{lib}: {len(names)}: {' '.join(names)}")
        return 0
    if args.report:
        # several shards' files (comma-separated) make one table; a later file's entry wins
        merged: dict[str, Any] = {}
        for part in args.results.split(","):
            merged.update(load_results(Path(part)))
        if args.library:
            merged = {k: v for k, v in merged.items() if v.get("library") == args.library}
        report(merged)
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
