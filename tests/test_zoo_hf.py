"""False-positive patterns found by the transformers / timm zoo (benchmarks/zoo.py), each on the
real model built by its library's own init code, with the defect the fix must not hide."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _tv import torch_or_skip  # tests/ is on the path (pytest rootdir-relative imports)

import initaudit
from initaudit.report import FileReport
from initaudit.rules._common import std_upper_small_sample

pytestmark = pytest.mark.frameworks



def _alarms(fr: FileReport) -> list[tuple[str, str | None]]:
    return [(f.code, f.tensor or f.layer) for f in fr.findings
            if f.severity.value in ("error", "warning")]


def _audit(path: Path) -> FileReport:
    fr = initaudit.audit(path).files[0]
    assert fr.status.value != "error", fr.error
    return fr


def _save_hf(model: Any, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder / "model.safetensors"


# ---- afmoe: the MoE router starts at zero -------------------------------------------------------

def _afmoe() -> Any:
    torch_or_skip()
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "AfmoeConfig"):
        pytest.skip("transformers without Afmoe")
    cfg = transformers.AfmoeConfig(
        hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
        num_dense_layers=1, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        vocab_size=100, num_experts=8, num_experts_per_tok=2,
        layer_types=["sliding_attention", "full_attention"])
    return transformers.AutoModel.from_config(cfg).eval()


def test_afmoe_zero_router_is_by_design(tmp_path: Path) -> None:
    """AfmoePreTrainedModel._init_weights zeroes the router (uniform routing at start): info."""
    torch = torch_or_skip()
    torch.manual_seed(0)
    model = _afmoe()
    assert float(model.layers[1].mlp.router.gate.weight.detach().abs().max()) == 0.0
    fr = _audit(_save_hf(model, tmp_path / "m"))
    assert _alarms(fr) == []
    router = [f for f in fr.findings if f.tensor == "layers.1.mlp.router.gate.weight"]
    assert router and all(f.severity.value == "info" for f in router)


def test_afmoe_zeroed_hidden_kernel_stays_an_error(tmp_path: Path) -> None:
    torch = torch_or_skip()
    torch.manual_seed(0)
    model = _afmoe()
    with torch.no_grad():
        model.layers[0].mlp.gate_proj.weight.zero_()
    fr = _audit(_save_hf(model, tmp_path / "m"))
    assert ("IA201", "layers.0.mlp.gate_proj.weight") in _alarms(fr)


def test_router_row_is_limited_to_the_model_that_zeroes_it() -> None:
    from initaudit.analysis.convention_tables import Why, by_design

    assert by_design("layers.1.mlp.router.gate.weight", "zero", "afmoe").why is Why.ROUTER
    assert by_design("layers.1.mlp.router.gate.weight", "zero", "mixtral") is None
    assert by_design("layers.1.mlp.router.gate.weight", "zero", None) is None


# ---- CLVP: the conditioning encoder's mel projection is N(0, factor) ------------------------------

def _clvp() -> Any:
    torch_or_skip()
    transformers = pytest.importorskip("transformers")
    small = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=128, vocab_size=100, projection_dim=32)
    cfg = transformers.ClvpConfig(
        text_config=small, speech_config=small,
        decoder_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                            vocab_size=100, max_position_embeddings=64, max_text_tokens=32,
                            max_mel_tokens=64, num_mel_attn_blocks=1))
    return transformers.ClvpModelForConditionalGeneration(cfg).eval()


def test_clvp_mel_conv_documented_scale_is_info_and_a_blow_up_is_not(tmp_path: Path) -> None:
    """ClvpPreTrainedModel._init_weights: mel_conv ~ N(0, initializer_factor) feeding GroupNorm'd
    residual blocks. Untouched: no alarm; ten times that: still exploding-init's error."""
    torch = torch_or_skip()
    torch.manual_seed(0)
    model = _clvp()
    name = "conditioning_encoder.mel_conv.weight"
    fr = _audit(_save_hf(model, tmp_path / "m"))
    assert _alarms(fr) == []
    assert [f.severity.value for f in fr.findings if f.tensor == name and f.code == "IA301"] \
        == ["info"]
    with torch.no_grad():
        model.conditioning_encoder.mel_conv.weight.mul_(10.0)
    fr = _audit(_save_hf(model, tmp_path / "blown"))
    assert ("IA301", name) in _alarms(fr)


# ---- verdicts on a handful of values do not depend on the seed ----------------------------------

def test_small_sample_std_bound_holds_at_its_level() -> None:
    """The chi-square bound covers the true std except at (below) its level p, at every size:
    the delta method (std_interval) does not at 3 values."""
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 20, 100):
        draws = rng.normal(0.0, 1.0, (200_000, n))
        s = draws.std(axis=1)
        upper = np.array([std_upper_small_sample(float(x), n) for x in s[:20_000]])
        assert float(np.mean(upper < 1.0)) <= 0.001, n
    # and it is not vacuous: at 100 values it stays within 2x of the sample std
    assert std_upper_small_sample(1.0, 100) < 2.0
    assert math.isfinite(std_upper_small_sample(1.0, 2))


@pytest.mark.parametrize("seed", [1])
def test_timm_csatv2_3x1_qkv_is_too_small_to_tell(seed: int, tmp_path: Path) -> None:
    """csatv2's nn.Linear(1, 3) qkv, trunc_normal_(std=0.02): under torch.manual_seed(1) its 3
    values have sample std 0.0015, which warned as vanishing-init; seeds 0 and 2 did not."""
    torch = torch_or_skip()
    timm = pytest.importorskip("timm")
    torch.manual_seed(seed)
    model = timm.create_model("csatv2", pretrained=False).eval()
    w = model.state_dict()["stages.1.2.attn.attn.qkv.weight"]
    assert tuple(w.shape) == (3, 1) and float(w.std()) < 0.002  # the draw that warned
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fr = _audit(tmp_path / "m.pt")
    assert _alarms(fr) == []
    qkv = [f for f in fr.findings if f.tensor == "stages.1.2.attn.attn.qkv.weight"
           and f.code == "IA302"]
    assert qkv and all("Too small to tell" in f.message for f in qkv)


# ---- detection and video models: zero prediction-head layers, zero occlusion embeddings ---------

def _zoo_build(model_type: str) -> Any:
    """The zoo's own builder (benchmarks/zoo.py: the library's config shrunk, from_config)."""
    torch_or_skip()
    pytest.importorskip("transformers")
    from benchmarks.zoo import build_transformers

    try:
        model, _ = build_transformers(model_type)
    except (KeyError, ValueError) as exc:  # a transformers without this model
        pytest.skip(f"{model_type}: {exc}")
    return model


@pytest.mark.parametrize("model_type,zero_by_design", [
    # GroundingDinoMLPPredictionHead: constant_(layers[-1].weight, 0)
    ("mm-grounding-dino", ["decoder.reference_points_head.layers.1.weight",
                           "encoder_output_bbox_embed.layers.2.weight"]),
    # OmDetTurboPreTrainedModel._init_weights: the bbox heads' last layer
    pytest.param("omdet-turbo", ["decoder.encoder_bbox_head.layers.2.weight",
                                 "decoder.decoder_bbox_head.0.layers.2.weight"]),
    # OneFormerPixelDecoder: normal_(level_embed, std=0)
    pytest.param("oneformer", ["pixel_level_module.decoder.level_embed"]),
    # RfDetrPreTrainedModel._init_weights: each enc_out_bbox_embed's last layer zeros_
    ("rf_detr", ["transformer.enc_out_bbox_embed.0.layers.2.weight"]),
    # PP-DocLayout's deformable attention: constant_(sampling_offsets / attention_weights, 0)
    pytest.param("pp_doclayout_v3", ["decoder.layers.0.encoder_attn.attention_weights.weight",
                                     "decoder.layers.0.encoder_attn.sampling_offsets.weight"]),
    # Sam2Video-style trackers: zeros_(occlusion_spatial_embedding_parameter)
    ("edgetam_video", ["occlusion_spatial_embedding_parameter"]),
    pytest.param("deimv2", ["decoder.layers.0.gateway.gate.weight",
                            "decoder.lqe_layers.0.reg_conf.layers.1.weight",
                            "decoder.layers.0.encoder_attn.sampling_offsets.weight"]),  # ~40 s to build on 2 loaded cores
])
def test_zero_by_design_tensors_of_transformers_models(model_type: str,
                                                        zero_by_design: list[str],
                                                        tmp_path: Path) -> None:
    torch = torch_or_skip()
    torch.manual_seed(0)
    model = _zoo_build(model_type)
    fr = _audit(_save_hf(model, tmp_path / "m"))
    assert _alarms(fr) == []
    for name in zero_by_design:
        found = [f for f in fr.findings if f.tensor == name and f.code == "IA201"]
        assert found and all(f.severity.value == "info" for f in found), name


def test_grounding_dino_hidden_layer_of_a_prediction_head_stays_an_error(tmp_path: Path) -> None:
    """The row covers the head's last layer only: its zeroed first layer is still an error."""
    torch = torch_or_skip()
    torch.manual_seed(0)
    model = _zoo_build("mm-grounding-dino")
    with torch.no_grad():
        model.encoder_output_bbox_embed.layers[0].weight.zero_()
    fr = _audit(_save_hf(model, tmp_path / "m"))
    assert ("IA201", "encoder_output_bbox_embed.layers.0.weight") in _alarms(fr)


# ---- a tiled identity (sub-pixel upsampler) is structure, a tiled random tensor is the defect ----

# the module's import alone takes ~30 s on 2 loaded cores: the price of the regression test
def test_nemotron3_diarization_subpixel_upsampler_is_info(tmp_path: Path) -> None:
    """Nemotron3DiarizationPreTrainedModel._init_weights: the upsampler conv is eye(hidden)
    repeated upsample_factor times on the centre tap (nearest-neighbour upsampling)."""
    torch = torch_or_skip()
    transformers = pytest.importorskip("transformers")
    from benchmarks.zoo import _LAYER_COUNTS, _shrink

    torch.manual_seed(0)
    try:
        cfg = transformers.AutoConfig.for_model("nemotron3_diarization")
    except ValueError:
        pytest.skip("transformers without Nemotron3 diarization")
    # depth only: its sub-configs check each other's widths (head vs audio hidden size)
    _shrink(cfg, frozenset(_LAYER_COUNTS))
    model = transformers.AutoModel.from_config(cfg).eval()
    fr = _audit(_save_hf(model, tmp_path / "m"))
    assert _alarms(fr) == []
    assert [f.severity.value for f in fr.findings
            if f.code == "IA202" and f.tensor == "upsampler.conv.weight"] == ["info"]


def test_tiled_identity_is_info_and_tiled_random_kernel_stays_an_error() -> None:
    from initaudit.api import from_arrays
    from initaudit.engine import AuditConfig, analyse

    rng = np.random.default_rng(0)
    hidden, factor = 64, 4
    identity = np.zeros((hidden * factor, hidden, 3), np.float32)
    identity[:, :, 1] = np.tile(np.eye(hidden, dtype=np.float32), (factor, 1))
    random_rows = rng.normal(0, 0.05, (hidden, hidden, 3)).astype(np.float32)
    tiled = np.tile(random_rows, (factor, 1, 1))
    arrays = {"enc.0.weight": rng.normal(0, 0.05, (hidden, hidden)).astype(np.float32),
              "up.conv.weight": identity, "up2.conv.weight": tiled,
              "head.weight": rng.normal(0, 0.05, (10, hidden)).astype(np.float32)}
    report = analyse(from_arrays(arrays), AuditConfig())
    dup = {f.tensor: f.severity.value for f in report.findings if f.code == "IA202"}
    assert dup == {"up.conv.weight": "info", "up2.conv.weight": "error"}


# ---- a fast slice of the zoo harness itself (benchmarks/zoo.py run_one, in-process) -------------

ZOO_SLICE = [
    ("timm", "mobilenetv3_small_050"),  # SE gates, hardswish, BatchNorm
    ("timm", "test_vit"),  # timm's own tiny ViT: zero head, cls/pos tokens, LayerScale-free
    ("transformers", "bert"),
    ("transformers", "gpt2"),  # Conv1D (in, out) kernels, 1/sqrt(2·n_layer) projections
    ("transformers", "vit"),
]


@pytest.mark.parametrize("library,name", ZOO_SLICE, ids=[f"{lib}-{n}" for lib, n in ZOO_SLICE])
def test_zoo_slice_untouched_is_clean_and_injected_defect_is_caught(
        library: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `python benchmarks/zoo.py --library L --only NAME` measures, for a few models: the
    untouched model gives no error/warning and the defect the harness injects is caught."""
    torch_or_skip()
    pytest.importorskip(library)
    from benchmarks import zoo

    monkeypatch.setenv("ZOO_MODEL", name)  # the injected defect's kind depends on the name
    res = zoo.run_one(library, name, 0, set(zoo.DEFAULT_FORMATS[library]), 0)
    alarms = [(fmt, a["code"], a["tensor"]) for fmt, f in res["files"].items()
              for a in f.get("alarms", [])]
    assert alarms == []
    assert all(f.get("status") != "error" for f in res["files"].values())
    assert res["injected"].get("caught") is True, res["injected"]


def test_ibert_integer_weight_buffers_are_quantization_state(tmp_path: Path) -> None:
    """I-BERT's QuantEmbedding keeps weight_integer = zeros_like(weight) until quantized
    inference fills it: not a kernel that must start random."""
    torch = torch_or_skip()
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.IBertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=128, vocab_size=500)
    model = transformers.IBertModel(cfg).eval()
    fr = _audit(_save_hf(model, tmp_path / "m"))
    assert _alarms(fr) == []
    buf = [f for f in fr.findings if f.tensor == "embeddings.word_embeddings.weight_integer"]
    assert buf and all(f.severity.value == "info" for f in buf)


def test_timm_global_context_zero_mlp_add_is_a_residual_end(tmp_path: Path) -> None:
    """timm GlobalContext.reset_parameters zeroes mlp_add.fc2 (x + mlp_add(context)): info;
    its zeroed fc1 (layers after it) stays an error."""
    torch = torch_or_skip()
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("gcresnext26ts", pretrained=False).eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fr = _audit(tmp_path / "m.pt")
    assert _alarms(fr) == []
    name = "stages.0.0.attn.mlp_add.fc2.weight"
    assert [f.severity.value for f in fr.findings if f.tensor == name and f.code == "IA201"] \
        == ["info"]
    with torch.no_grad():
        model.stages[0][0].attn.mlp_add.fc1.weight.zero_()
    torch.save(model.state_dict(), tmp_path / "z.pt")
    assert ("IA201", "stages.0.0.attn.mlp_add.fc1.weight") in _alarms(_audit(tmp_path / "z.pt"))


# ---- MoE shared experts are kernels, not T5's `shared` embedding table --------------------------

def test_moe_shared_expert_is_a_kernel_and_its_blow_up_is_an_error(tmp_path: Path) -> None:
    # `shared` in a module name once made `mlp.shared_expert.down_proj` an embedding, whose
    # N(0, 1) is torch's default: Qwen3.5-MoE's N(0, 1) shared expert went unreported
    torch = torch_or_skip()
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Qwen2MoeConfig(
        hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        shared_expert_intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100, num_experts=4, num_experts_per_tok=2)
    model = transformers.AutoModel.from_config(cfg).eval()
    clean = _audit(_save_hf(model, tmp_path / "clean"))
    assert _alarms(clean) == []
    name = "layers.0.mlp.shared_expert.down_proj.weight"
    with torch.no_grad():
        model.state_dict()[name].normal_(0.0, 1.0)
    broken = _audit(_save_hf(model, tmp_path / "broken"))
    assert ("IA301", name) in _alarms(broken)
    # transformers 5's fused experts, one (experts, out, in) parameter without a `.weight` leaf
    # (what a state_dict holds, and what models without a save conversion write), are kernels
    # too: they were analysed as "other" tensors, no rule applied
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    assert _alarms(_audit(tmp_path / "sd.pt")) == [("IA301", name)]
    fused = "layers.1.mlp.experts.gate_up_proj"
    with torch.no_grad():
        model.state_dict()[fused].normal_(0.0, 1.0)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    assert ("IA301", fused) in _alarms(_audit(tmp_path / "sd.pt"))


# ---- UDOP: the patch embedding is drawn at trunc_normal(std=initializer_factor) ----------------

def test_udop_patch_embedding_documented_scale_is_info_and_a_blow_up_is_not(tmp_path: Path) -> None:
    # UdopPreTrainedModel._init_weights: nn.Conv2d -> trunc_normal_(std=factor), factor 1.0
    torch = torch_or_skip()
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.UdopConfig(d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                  num_decoder_layers=2, num_heads=4, vocab_size=100,
                                  image_size=32, patch_size=16)
    model = transformers.UdopModel(cfg).eval()
    clean = _audit(_save_hf(model, tmp_path / "clean"))
    assert _alarms(clean) == []
    assert any(f.code == "IA301" and f.severity.value == "info" and "udop" in f.message
               for f in clean.findings)
    name = "patch_embed.proj.weight"
    with torch.no_grad():
        model.state_dict()[name].normal_(0.0, 10.0)
    assert ("IA301", name) in _alarms(_audit(_save_hf(model, tmp_path / "broken")))


# ---- xLSTM's zero gates and WavTokenizer's adaptive-norm tables ---------------------------------

def test_xlstm_zero_gates_are_by_design_and_a_zeroed_projection_is_not(tmp_path: Path) -> None:
    # xLSTMPreTrainedModel._init_weights zeroes every Linear whose name holds "gate"
    torch = torch_or_skip()
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "xLSTMConfig"):
        pytest.skip("transformers without xLSTM")
    torch.manual_seed(0)
    cfg = transformers.xLSTMConfig(hidden_size=64, num_heads=2, num_blocks=2, vocab_size=100)
    model = transformers.xLSTMModel(cfg).eval()
    clean = _audit(_save_hf(model, tmp_path / "clean"))
    assert _alarms(clean) == []
    gates = [f for f in clean.findings if f.code == "IA201" and "gate" in (f.tensor or "")]
    assert gates and all(f.severity.value == "info" for f in gates)
    name = next(n for n in model.state_dict()
                if n.endswith("proj_down.weight") or n.endswith("out_proj.weight"))
    with torch.no_grad():
        model.state_dict()[name].zero_()
    broken = _alarms(_audit(_save_hf(model, tmp_path / "broken")))
    assert ("IA201", name) in broken


def test_wavtokenizer_adaptive_norm_tables_are_by_design(tmp_path: Path) -> None:
    torch = torch_or_skip()
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "WavTokenizerConfig"):
        pytest.skip("transformers without WavTokenizer")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import zoo  # the zoo's own shrunk config: the model is large at its defaults

    torch.manual_seed(0)
    built = zoo.build_transformers("wavtokenizer")
    model = built[0] if isinstance(built, tuple) else built
    clean = _audit(_save_hf(model, tmp_path / "clean"))
    assert _alarms(clean) == []
    tables = [f for f in clean.findings if f.code == "IA201" and "norm.s" in (f.tensor or "")]
    assert tables and all(f.severity.value == "info" for f in tables)
