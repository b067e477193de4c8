"""Library conventions as data: one table per library, each row with the line of the library's
source it comes from. A new convention is one row here (and a test in tests/test_conventions.py).

Three kinds of row:

- :class:`DefaultInit`: the kernel init a framework applies when the user chooses nothing. A
  model built with it is what the library ships: pairing rules that would otherwise warn about
  it (signal-propagation on a plain stack, selu-without-lecun) say so as info, naming the
  default, instead of failing every model that kept it.
- :class:`ByDesign`: tensors that a library sets to zero / a tiny constant / a tiny scale on
  purpose and that do not block symmetry breaking (tokens, LayerScale, GRN, gates, zero heads).
  Matched on the tensor name; the kernel rules report them as info naming the convention.
- :class:`FixedScale`: fixed-sigma schemes a library uses for particular tensors (identification
  candidates, see schemes.py).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from ..model import Convention


class Why(str, enum.Enum):
    """Why a zero / tiny tensor does not block symmetry breaking (the wording the rules use)."""

    TOKEN = "a learnt token or embedding added to the input: no unit symmetry to break"
    LAYER_SCALE = (
        "a per-channel scale on a residual branch (LayerScale / GRN / ReZero): the "
        "block starts as the identity and the skip path carries signal and gradient"
    )
    GATE = "a gate or adapter initialised closed: the base path carries signal and gradient"
    HEAD = (
        "the model's output projection: its gradient δ·xᵀ differs per output unit, so the "
        "units separate after the first step and nothing after it depends on symmetry"
    )
    CODEBOOK = "a codebook / quantizer buffer, not a kernel"
    ADAPTIVE_NORM = (
        "an adaptive norm's scale (1) and shift (0) per condition, stored as an embedding "
        "table: a norm's affine parameters, constant by design"
    )
    TINY_FIXED = "a small fixed scale the library documents for this tensor"
    DOCUMENTED_SCALE = (
        "a scale the library documents for this tensor (it ends the network: "
        "nothing after it compounds it)"
    )
    INPUT_SCALE = (
        "an input projection drawn at a scale the library documents, feeding pre-normalised "
        "residual blocks: the norm rescales its output, nothing after it compounds it"
    )
    RESIDUAL_END = (
        "the last layer of a residual branch (x + f(x)) started at zero: the block starts as "
        "the identity and the skip path carries signal and gradient"
    )
    QUANT_STATE = (
        "a quantization buffer the library fills when quantized inference runs (the integer "
        "copy of a weight): state, not a trained kernel"
    )
    ROUTER = (
        "a mixture-of-experts router initialised to zero: every expert starts equally "
        "weighted, and each expert's row gets its own gradient through that expert's output"
    )


@dataclass(frozen=True)
class ByDesign:
    library: str
    pattern: str  # regex searched in the tensor name
    why: Why
    source: str  # file and line (or function) in the library that sets it
    # "zero": all-zero/constant tensors; "small": far below fan-based scales; "large": far
    # above them; "both": zero and small
    applies_to: str = "both"
    # Hugging Face model_type(s) the row is limited to (config.json); () = any model
    model_types: tuple[str, ...] = ()
    # per-channel parameters (LayerScale gamma, GRN weight/bias) are vectors, whatever their
    # broadcast shape ((C,), (1, 1, 1, C)): a full kernel that happens to be called "gamma" or
    # "ls" is a kernel, and zeroed it blocks symmetry breaking like any other
    vector_only: bool = False

    def matches(
        self, name: str, model_type: str | None = None, shape: tuple[int, ...] | None = None
    ) -> bool:
        if self.model_types and model_type not in self.model_types:
            return False
        if self.vector_only and shape is not None and sum(int(d) > 1 for d in shape) > 1:
            return False
        return re.search(self.pattern, name, re.IGNORECASE) is not None


@dataclass(frozen=True)
class DefaultInit:
    library: str
    conventions: tuple[Convention, ...]  # whose files it shows up in
    rule: str  # identification vocabulary (SchemeResult.rule)
    distributions: tuple[str, ...]
    label: str
    source: str
    std: float | None = None  # for fixed-sigma defaults: the sigma (matched within 1%)
    mode: str | None = None  # for fan rules: fan_in / fan_out (None = any)


# name components are separated by "." (torch, HF), "/" (Keras, Flax) or ":"; an underscore is
# part of an identifier ("pre_gamma" is not a "gamma", "gate_proj" not a "gate")
_SEP = r"(?:^|[./:])"
_END = r"(?:[./:]|$)"

TORCH = (
    DefaultInit(
        "torch",
        (Convention.TORCH, Convention.ONNX),
        "torch_default",
        ("uniform",),
        "torch's default nn.Linear / nn.Conv init, kaiming_uniform_(a=sqrt(5)) = "
        "U(±1/sqrt(fan_in))",
        "torch/nn/modules/linear.py Linear.reset_parameters; conv.py _ConvNd.reset_parameters",
    ),
)
TORCHVISION = (
    DefaultInit(
        "torchvision",
        (Convention.TORCH, Convention.ONNX),
        "he",
        ("normal",),
        "torchvision's kaiming_normal_(mode='fan_out') conv init",
        "torchvision/models/resnet.py ResNet.__init__; mobilenetv3.py MobileNetV3.__init__",
        mode="fan_out",
    ),
    DefaultInit(
        "torchvision",
        (Convention.TORCH, Convention.ONNX),
        "fixed",
        ("normal",),
        "torchvision's N(0, 0.01) classifier init",
        "torchvision/models/mobilenetv3.py MobileNetV3.__init__ "
        "(nn.init.normal_(m.weight, 0, 0.01))",
        std=0.01,
    ),
)
KERAS = (
    DefaultInit(
        "keras",
        (Convention.KERAS,),
        "glorot",
        ("uniform",),
        "Keras' default kernel_initializer='glorot_uniform'",
        "keras/src/layers/core/dense.py Dense.__init__ kernel_initializer='glorot_uniform'",
    ),
)
FLAX = (
    DefaultInit(
        "flax",
        (Convention.JAX,),
        "lecun",
        ("truncated_normal", "normal"),
        "Flax's default_kernel_init = lecun_normal()",
        "flax/linen/linear.py default_kernel_init = initializers.lecun_normal()",
    ),
)

BY_DESIGN: tuple[ByDesign, ...] = (
    # --- timm --------------------------------------------------------------------------------
    ByDesign(
        "timm",
        _SEP + r"(mask_token|reg_token|register_tokens?|cls_token|dist_token)" + _END,
        Why.TOKEN,
        "timm/models/vision_transformer.py VisionTransformer.init_weights "
        "(nn.init.normal_(self.reg_token, std=1e-6)); beit.py mask_token zeros",
    ),
    ByDesign(
        "timm",
        _SEP + r"(gamma|gamma_?\d|ls\d?|layer_?scale\w*|grn)" + _END,
        Why.LAYER_SCALE,
        "timm/layers/layer_scale.py LayerScale init_values=1e-5; "
        "timm/layers/grn.py GlobalResponseNorm weight/bias = zeros",
        vector_only=True,
    ),
    ByDesign(
        "timm",
        _SEP + r"grn" + _SEP + r"(weight|bias)$",
        Why.LAYER_SCALE,
        "timm/layers/grn.py GlobalResponseNorm.__init__ (torch.zeros(dim))",
        vector_only=True,
    ),
    ByDesign(
        "timm",
        _SEP + r"proj_[lw]" + _END,
        Why.TINY_FIXED,
        "timm/models/cait.py TalkingHeadAttn proj_l/proj_w (4-wide, trunc_normal_ 0.02)",
        applies_to="small",
    ),
    ByDesign(
        "timm",
        _SEP + r"mlp_add[./]fc2" + _END,
        Why.RESIDUAL_END,
        "timm/layers/global_context.py GlobalContext.reset_parameters "
        "(nn.init.zeros_(self.mlp_add.fc2.weight); forward: x = x + self.mlp_add(context))",
        applies_to="zero",
    ),
    # --- torchvision -------------------------------------------------------------------------
    ByDesign(
        "torchvision",
        _SEP + r"heads?\.head" + _END,
        Why.HEAD,
        "torchvision/models/vision_transformer.py VisionTransformer.__init__ "
        "(nn.init.zeros_(self.heads.head.weight))",
    ),
    ByDesign(
        "torchvision",
        _SEP + r"class_token" + _END,
        Why.TOKEN,
        "torchvision/models/vision_transformer.py (self.class_token = zeros)",
    ),
    # --- transformers ------------------------------------------------------------------------
    ByDesign(
        "transformers",
        _SEP + r"(mask_emb|masked_spec_embed|mask_embedding|"
        r"mask_token|vision_token|image_newline|register_tokens|query_tokens|"
        r"learnable_\w+_token)" + _END,
        Why.TOKEN,
        "transformers/models/wav2vec2/modeling_wav2vec2.py masked_spec_embed.uniform_(); "
        "beit mask_token zeros",
    ),
    ByDesign(
        "transformers",
        _SEP + r"(codevectors|codebook|embed_avg|cluster_size|"
        r"ema_\w+)" + _END,
        Why.CODEBOOK,
        "transformers/models/wav2vec2/modeling_wav2vec2.py GumbelVectorQuantizer "
        "(codevectors.uniform_())",
    ),
    ByDesign(
        "transformers",
        _SEP + r"(gate_attn|gate_ffwd|cross_attn_attn_gate|cross_attn_mlp_gate|alpha_xattn|"
        r"alpha_dense|layer_scale\d*|rezero_alpha|res_scale)" + _END,
        Why.GATE,
        "transformers/models/mllama/modeling_mllama.py gate_attn/gate_ffwd zeros; "
        "idefics gated cross-attention alpha zeros",
    ),
    ByDesign(
        "transformers",
        _SEP + r"lm_head" + _END,
        Why.DOCUMENTED_SCALE,
        "transformers/models/t5/modeling_t5.py T5PreTrainedModel._init_weights "
        "(lm_head.weight.normal_(mean=0.0, std=factor * 1.0) when not tied)",
        applies_to="large",
        model_types=("t5", "mt5", "umt5", "longt5", "switch_transformers"),
    ),
    ByDesign(
        "transformers",
        _SEP + r"(codevectors|quantizer\.weight_proj)" + _END,
        Why.CODEBOOK,
        "transformers/models/wav2vec2/modeling_wav2vec2.py Wav2Vec2PreTrainedModel._init_weights"
        " (codevectors.uniform_(); weight_proj.normal_(0, 1))",
        applies_to="large",
    ),
    ByDesign(
        "transformers",
        _SEP + r"(sampling_offsets|attention_weights)" + _END,
        Why.HEAD,
        "transformers/models/deformable_detr/modeling_deformable_detr.py "
        "DeformableDetrPreTrainedModel._init_weights (constant_(sampling_offsets.weight, 0.0); "
        "constant_(attention_weights.weight, 0.0)); D-FINE, DEIMv2 (modeling_deimv2.py "
        "Deimv2PreTrainedModel._init_weights), RT-DETR, LW-DETR, RF-DETR and PP-DocLayout "
        "v2-v4 do the same (every transformers model whose _init_weights has "
        "constant_(module.attention_weights.weight, 0.0))",
        applies_to="zero",
        model_types=(
            "deformable_detr",
            "d_fine",
            "deimv2",
            "lw_detr",
            "rf_detr",
            "pp_doclayout_v2",
            "pp_doclayout_v3",
            "pp_doclayout_v4",
            "rt_detr",
            "rt_detr_v2",
            "grounding-dino",
            "mm-grounding-dino",
            "omdet-turbo",
            "oneformer",
            "mask2former",
            "dab-detr",
        ),
    ),
    ByDesign(
        "transformers",
        _SEP + r"(gateway[./]gate|reg_conf[./]layers[./]\d+)" + _END,
        Why.HEAD,
        "transformers/models/d_fine/modeling_d_fine.py DFinePreTrainedModel._init_weights "
        "(the gateway gate and the last reg_conf layer start at zero); "
        "deimv2/modeling_deimv2.py Deimv2PreTrainedModel._init_weights (Deimv2Gate: "
        "constant_(gate.weight, 0); Deimv2LQE: constant_(reg_conf.layers[-1].weight, 0))",
        applies_to="zero",
        model_types=("d_fine", "deimv2"),
    ),
    ByDesign(
        "transformers",
        # the last layer of each MLP prediction head (2 layers for reference_points_head, 3 for
        # the box heads): a hidden layer of these heads is not covered
        _SEP + r"(reference_points_head[./]layers[./]1|"
        r"(encoder_output_bbox_embed|encoder_bbox_head|enc_out_bbox_embed[./]\d+|"
        r"(decoder_)?bbox_(embed|head)([./]\d+)?)[./]layers[./]2)" + _END,
        Why.HEAD,
        "transformers/models/grounding_dino/modeling_grounding_dino.py "
        "GroundingDinoPreTrainedModel._init_weights (GroundingDinoMLPPredictionHead: "
        "constant_(layers[-1].weight, 0)); mm_grounding_dino/modeling_mm_grounding_dino.py the "
        "same; reference_points_head has 2 layers, the bbox heads 3; "
        "omdet_turbo/modeling_omdet_turbo.py OmDetTurboPreTrainedModel._init_weights "
        "(constant_(encoder_bbox_head.layers[-1].weight, 0.0), each decoder_bbox_head the same); "
        "rf_detr/modeling_rf_detr.py and lw_detr/modeling_lw_detr.py _init_weights "
        "(bbox_embed.layers[-1] and each enc_out_bbox_embed's layers[-1] zeros_)",
        applies_to="zero",
        model_types=("grounding-dino", "mm-grounding-dino", "omdet-turbo", "rf_detr", "lw_detr"),
    ),
    ByDesign(
        "transformers",
        _SEP + r"pixel_level_module[./]decoder[./]level_embed" + _END,
        Why.TOKEN,
        "transformers/models/oneformer/modeling_oneformer.py OneFormerPreTrainedModel."
        "_init_weights (OneFormerPixelDecoder: init.normal_(module.level_embed, std=0)): a "
        "per-level embedding added to the position embedding",
        applies_to="zero",
        model_types=("oneformer",),
    ),
    ByDesign(
        "transformers",
        _SEP + r"occlusion_spatial_embedding_parameter" + _END,
        Why.TOKEN,
        "transformers/models/sam2_video/modeling_sam2_video.py Sam2VideoPreTrainedModel."
        "_init_weights (init.zeros_(module.occlusion_spatial_embedding_parameter)); EdgeTAM "
        "video and SAM3 tracker video the same (SAM3 video holds that tracker as "
        "tracker_model): added to the memory of an occluded object",
        applies_to="zero",
        model_types=("sam2_video", "edgetam_video", "sam3_tracker_video", "sam3_video"),
    ),
    ByDesign(
        "transformers",
        _SEP + r"conditioning_encoder[./]mel_conv" + _END,
        Why.INPUT_SCALE,
        "transformers/models/clvp/modeling_clvp.py ClvpPreTrainedModel._init_weights "
        "(init.normal_(module.mel_conv.weight, mean=0.0, std=factor)); its output enters "
        "ClvpConditioningEncoder's GroupNorm + attention residual blocks",
        applies_to="large",
        model_types=("clvp",),
    ),
    ByDesign(
        "transformers",
        _SEP + r"(patch_embed|embed_patches)[./]proj" + _END,
        Why.INPUT_SCALE,
        "transformers/models/udop/modeling_udop.py UdopPreTrainedModel._init_weights "
        "(nn.Conv2d: init.trunc_normal_(module.weight, mean=0.0, std=factor), factor = "
        "config.initializer_factor = 1.0); the patch embeddings are combined with the token "
        "embeddings that enter T5's pre-norm (RMSNorm) blocks",
        applies_to="large",
        model_types=("udop",),
    ),
    ByDesign(
        "transformers",
        _SEP + r"(igate_preact|fgate_preact|ogate_preact|proj_up_gate)" + _END,
        Why.GATE,
        "transformers/models/xlstm/modeling_xlstm.py xLSTMPreTrainedModel._init_weights "
        "(weight_mode 'single': init.zeros_(module.weight) for every Linear whose name holds "
        "'gate'; the input/forget gates get biases -10 and linspace(3, 6)); proj_up_gate "
        "multiplies a random proj_up branch (act(gate(x)) * up(x)), so its gradient still "
        "differs per unit",
        applies_to="zero",
        model_types=("xlstm",),
    ),
    ByDesign(
        "transformers",
        _SEP + r"norm[./](scale|shift)" + _END,
        Why.ADAPTIVE_NORM,
        "transformers/models/wavtokenizer/modeling_wavtokenizer.py "
        "WavTokenizerPreTrainedModel._init_weights (WavTokenizerAdaLayerNorm: "
        "init.ones_(module.scale.weight), init.zeros_(module.shift.weight); both are "
        "nn.Embedding(adanorm_num_embeddings, hidden) tables applied as "
        "layer_norm(x) * scale + shift)",
        applies_to="zero",
        model_types=("wavtokenizer",),
    ),
    ByDesign(
        "transformers",
        _SEP + r"router[./]gate" + _END,
        Why.ROUTER,
        "transformers/models/afmoe/modeling_afmoe.py AfmoePreTrainedModel._init_weights "
        "(AfmoeTokenChoiceRouter: init.zeros_(module.gate.weight))",
        applies_to="zero",
        model_types=("afmoe",),
    ),
    ByDesign(
        "transformers",
        _SEP + r"(weight|bias)_integer" + _END,
        Why.QUANT_STATE,
        "transformers/models/ibert/quant_modules.py QuantEmbedding / QuantLinear.__init__ "
        "(self.weight_integer = nn.Buffer(torch.zeros_like(self.weight)); bias_integer the same)",
        applies_to="zero",
        model_types=("ibert",),
    ),
    # --- adapters (peft) ---------------------------------------------------------------------
    ByDesign(
        "peft",
        _SEP + r"(lora_B|lora_b|lora_up|adapter_up|lora_embedding_A)" + _END,
        Why.GATE,
        "peft/tuners/lora/layer.py LoraLayer.reset_lora_parameters "
        "(nn.init.zeros_(self.lora_B); lora_embedding_A zeros)",
    ),
)

DEFAULT_INITS: tuple[DefaultInit, ...] = (*TORCH, *TORCHVISION, *KERAS, *FLAX)

# names of a model's output projection (a classifier head / LM head) when the file has no graph
# it must be the module's own (last) name component: "classifier.0.weight" is VGG's hidden layer,
# "head.fc1" a hidden layer of a head, "mlp.fc_out" GPT-J's per-block projection
HEAD_NAME = re.compile(
    _SEP + r"(head|classifier|logits|lm_head|output_projection|score|qa_outputs)"
    r"[./:](weight|bias|kernel)$",
    re.IGNORECASE,
)


def by_design(
    name: str,
    kind: str,
    model_type: str | None = None,
    shape: tuple[int, ...] | None = None,
) -> ByDesign | None:
    """The convention row that makes this tensor's zero / tiny / large values intentional."""
    for row in BY_DESIGN:
        if (
            row.applies_to == kind or (row.applies_to == "both" and kind != "large")
        ) and row.matches(name, model_type, shape):
            return row
    return None


def model_type_of(metadata: dict[str, Any]) -> str | None:
    cfg = metadata.get("hf_config") or {}
    value = cfg.get("model_type") if isinstance(cfg, dict) else None
    return value if isinstance(value, str) else None


def default_init(
    convention: Convention,
    rule: str,
    distribution: str,
    *,
    mode: str | None = None,
    std: float | None = None,
) -> DefaultInit | None:
    for row in DEFAULT_INITS:
        if (
            convention not in row.conventions
            or rule != row.rule
            or distribution not in row.distributions
        ):
            continue
        if row.mode is not None and mode != row.mode:
            continue
        if row.std is not None and not (std and abs(std / row.std - 1.0) < 0.01):
            continue
        return row
    return None
