"""A fast slice of the model zoo (benchmarks/zoo.py) in the default run: untouched models built
by their libraries' own init code must give no error or warning, and the false-positive
patterns found on the zoo stay fixed. Each case names the pattern it guards.

Models are shrunk through the library's own constructor arguments (depth, width) so the same
init code runs in seconds; the full zoo is `python benchmarks/zoo.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _tv import torch_or_skip  # tests/ is on the path (pytest rootdir-relative imports)

import initaudit
from initaudit.report import FileReport

pytestmark = pytest.mark.frameworks


def _alarms(fr: FileReport) -> list[tuple[str, str | None]]:
    return [(f.code, f.tensor or f.layer) for f in fr.findings
            if f.severity.value in ("error", "warning")]


def _audit_file(path: Path) -> FileReport:
    rep = initaudit.audit(path)
    fr = rep.files[0]
    assert fr.status.value != "error", fr.error
    return fr



def _timm(name: str, **kw: Any):
    torch_or_skip()
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False, **kw).eval()


def _timm_class(path: str, **kw: Any):
    torch_or_skip()
    pytest.importorskip("timm")
    import importlib

    module, cls = path.rsplit(".", 1)
    return getattr(importlib.import_module(f"timm.models.{module}"), cls)(**kw).eval()


def _tv(builder: str, **kw: Any):
    torch_or_skip()
    tvm = pytest.importorskip("torchvision.models")
    if builder[0].isupper():  # the model class itself, with the builder's init code
        return getattr(tvm, builder)(**kw).eval()
    return getattr(tvm, builder)(weights=None, **kw).eval()


def _hf(config: str, model: str, **kw: Any):
    torch_or_skip()
    transformers = pytest.importorskip("transformers")
    return getattr(transformers, model)(getattr(transformers, config)(**kw)).eval()


# (id, builder, the false-positive pattern the case guards)
TORCH_SLICE: list[tuple[str, Callable[[], Any], str]] = [
    ("timm-vit-tiny", lambda: _timm("vit_tiny_patch16_224", depth=2, img_size=32, patch_size=8),
     "zero-initialised head, cls/pos tokens"),
    ("timm-vit-reg", lambda: _timm("vit_base_patch16_reg4_gap_256", depth=2, embed_dim=64,
                                   num_heads=2, img_size=32, patch_size=8),
     "register tokens ~N(0, 1e-6)"),
    ("timm-mixer", lambda: _timm_class("mlp_mixer.MlpMixer", num_blocks=2, img_size=64,
                                       patch_size=16, embed_dim=64), "zero head"),
    ("timm-convnextv2", lambda: _timm("convnextv2_atto"), "GRN gamma/beta zeros, (1,1,1,C)"),
    ("timm-beit", lambda: _timm("beit_base_patch16_224", depth=2, embed_dim=64, num_heads=2,
                                img_size=32, patch_size=8), "LayerScale gamma 0.1, zero head"),
    ("timm-cait", lambda: _timm("cait_xxs24_224", depth=2, depth_token_only=1, img_size=32,
                                patch_size=8), "talking-heads 4x4 projections, LayerScale 1e-5"),
    ("tv-resnet18", lambda: _tv("resnet18"), "BatchNorm CNN"),
    ("tv-mobilenet-v3", lambda: _tv("mobilenet_v3_small"), "hardswish/SE"),
    ("tv-vit", lambda: _tv("VisionTransformer", image_size=32, patch_size=8, num_layers=2,
                           num_heads=2, hidden_dim=64, mlp_dim=128), "heads.head zeros"),
    ("hf-bert", lambda: _hf("BertConfig", "BertModel", hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=128, vocab_size=500),
     "N(0, 0.02)"),
    ("hf-t5-v1_1", lambda: _hf("T5Config", "T5ForConditionalGeneration", d_model=64, d_kv=16,
                               d_ff=128, num_layers=2, num_heads=4, vocab_size=500,
                               feed_forward_proj="gated-gelu", tie_word_embeddings=False),
     "untied lm_head N(0, factor) (T5 v1.1)"),
    ("hf-wav2vec2-pretraining", lambda: _hf(
        "Wav2Vec2Config", "Wav2Vec2ForPreTraining", hidden_size=64, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=128, conv_dim=(32, 32), conv_stride=(5, 2),
        conv_kernel=(10, 3), num_codevectors_per_group=32, codevector_dim=32, proj_codevector_dim=32,
        num_conv_pos_embeddings=16), "codevectors, masked_spec_embed"),
]


@pytest.mark.parametrize("name,build,pattern", TORCH_SLICE, ids=[c[0] for c in TORCH_SLICE])
def test_untouched_model_is_clean(name: str, build: Callable[[], Any], pattern: str,
                                  tmp_path: Path) -> None:
    torch = torch_or_skip()
    torch.manual_seed(0)
    model = build()
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(tmp_path / "hf")
        path = tmp_path / "hf" / "model.safetensors"
    else:
        path = tmp_path / "state_dict.pt"
        torch.save(model.state_dict(), path)
    assert _alarms(_audit_file(path)) == [], pattern


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cait_talking_heads_verdict_does_not_depend_on_the_seed(seed: int, tmp_path: Path) -> None:
    """N(0, 0.02) on 4-wide projections sits on the vanishing threshold: never a warning that
    flips with torch.manual_seed (too small to tell -> info)."""
    torch = torch_or_skip()
    torch.manual_seed(seed)
    model = _timm("cait_xxs24_224", depth=4, depth_token_only=1, img_size=32, patch_size=8)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    assert _alarms(_audit_file(tmp_path / "m.pt")) == []


def test_zero_hidden_kernel_with_layers_after_it_stays_an_error(tmp_path: Path) -> None:
    """The zero-head convention must not hide a zeroed hidden kernel (silencing is no fix)."""
    torch = torch_or_skip()
    torch.manual_seed(0)
    model = _tv("VisionTransformer", image_size=32, patch_size=8, num_layers=2, num_heads=2,
                hidden_dim=64, mlp_dim=128)
    with torch.no_grad():
        model.encoder.layers[0].mlp[0].weight.zero_()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fr = _audit_file(tmp_path / "m.pt")
    assert ("IA201", "encoder.layers.encoder_layer_0.mlp.0.weight") in _alarms(fr)
    head = [f for f in fr.findings if f.tensor == "heads.head.weight"]
    assert head and all(f.severity.value == "info" for f in head)


def test_exported_cnn_with_folded_batchnorm_is_clean(tmp_path: Path) -> None:
    """torch.onnx folds eval BatchNorm into the convs (exact-zero bias): not a plain stack."""
    torch = torch_or_skip()
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = _tv("mobilenet_v3_small")
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), tmp_path / "m.onnx", dynamo=False)
    fr = _audit_file(tmp_path / "m.onnx")
    assert _alarms(fr) == []
    assert any((s.get("note") or "").startswith("BatchNorm folded") for s in fr.signal["layers"])


def test_deep_gelu_mlp_with_torch_defaults_is_info(tmp_path: Path) -> None:
    torch = torch_or_skip()
    pytest.importorskip("onnx")
    nn = torch.nn
    torch.manual_seed(0)
    layers: list[Any] = [nn.Linear(64, 128)]
    for _ in range(10):
        layers += [nn.GELU(), nn.Linear(128, 128)]
    model = nn.Sequential(*layers)
    torch.onnx.export(model, (torch.randn(2, 64),), tmp_path / "m.onnx", dynamo=False)
    fr = _audit_file(tmp_path / "m.onnx")
    assert _alarms(fr) == []
    assert [f.severity.value for f in fr.findings if f.code == "IA601"] == ["info"]
