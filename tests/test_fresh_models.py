"""Freshly built models from other people's code are the ground truth of what ships: untouched,
they must give no error and no warning; with one deliberate defect injected, the expected
finding (and only defects of that kind) must appear.

Each test builds a small model with the real framework (transformers from small configs,
offline; torch modules; keras.applications with ``weights=None``), saves it the way users do,
and audits the file (and, where the API supports it, the object in memory).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import initaudit
from initaudit.report import FileReport

pytestmark = pytest.mark.frameworks


def _alarms(report: FileReport) -> list[tuple[str, str | None]]:
    return [(f.code, f.tensor or f.layer) for f in report.findings
            if f.severity.value in ("error", "warning")]


def _audit(obj) -> FileReport:
    report = initaudit.audit(obj)
    assert len(report.files) == 1
    fr = report.files[0]
    assert fr.status.value != "error", fr.error
    return fr


# ---- Hugging Face transformers ------------------------------------------------------------------

def _hf_models():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return {
        "bert": lambda: transformers.BertModel(transformers.BertConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
            vocab_size=500, max_position_embeddings=64)),
        "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=64, n_layer=4, n_head=2, vocab_size=500, n_positions=64,
            bos_token_id=0, eos_token_id=0)),
        "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=500, max_position_embeddings=64)),
        # factor-based: q (d_model·d_kv)^-1/2, relative_attention_bias d_model^-1/2 (config.json)
        "t5": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
            d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=500)),
        "vit": lambda: transformers.ViTModel(transformers.ViTConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
            image_size=32, patch_size=8)),
    }


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "t5", "vit"])
def test_fresh_transformers_model_is_clean(name: str, tmp_path) -> None:
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    model = _hf_models()[name]()
    model.save_pretrained(tmp_path / name)
    on_disk = _audit(tmp_path / name / "model.safetensors")
    assert _alarms(on_disk) == []
    assert on_disk.state["state"] == "initialized", on_disk.state
    assert _alarms(_audit(model)) == []


def test_gpt2_residual_projections_are_recognised(tmp_path) -> None:
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    _hf_models()["gpt2"]().save_pretrained(tmp_path / "gpt2")
    fr = _audit(tmp_path / "gpt2" / "model.safetensors")
    c_proj = [t for t in fr.tensors if t.name.endswith("attn.c_proj.weight")]
    assert c_proj and all(t.scheme.known for t in c_proj)
    # 0.02 / sqrt(2 * 4 layers)
    assert all(abs(t.scheme.expected_std - 0.02 / np.sqrt(8)) < 1e-9 for t in c_proj)
    assert not any(f.code == "IA401" for f in fr.findings)


def test_transformers_with_injected_normal_weights_is_flagged(tmp_path) -> None:
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    model = _hf_models()["gpt2"]()
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.weight.normal_(0.0, 1.0)
    model.save_pretrained(tmp_path / "gpt2")
    fr = _audit(tmp_path / "gpt2" / "model.safetensors")
    assert _alarms(fr) == [("IA301", "transformer.h.1.mlp.c_fc.weight")]


# ---- torch modules ------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


try:  # a module-level class, so that torch.save(whole_module) can pickle it by reference
    import torch as _torch_mod

    class ResidualBlock(_torch_mod.nn.Module):
        """conv-BN-ReLU-conv-BN + skip, ReLU: the basic ResNet block."""

        def __init__(self, c: int = 16) -> None:
            super().__init__()
            nn = _torch_mod.nn
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU()

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + x)
except ImportError:  # pragma: no cover - the tests skip without torch
    ResidualBlock = None


def _resnet_block():
    nn = _torch().nn
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), ResidualBlock(), ResidualBlock(),
                         nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def _torch_modules():
    torch = _torch()
    nn = torch.nn
    return {
        "transformer_encoder": lambda: nn.TransformerEncoder(
            nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), 2),
        "lstm": lambda: nn.LSTM(32, 64, num_layers=2),
        "gru": lambda: nn.GRU(16, 48),
        "multihead_attention": lambda: nn.MultiheadAttention(64, 4),
        "mlp": lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                     nn.Linear(128, 10)),
        "embedding_mlp": lambda: nn.Sequential(nn.Embedding(500, 32), nn.Linear(32, 32)),
        "resnet_block": _resnet_block,
        "conv_transpose": lambda: nn.Sequential(nn.ConvTranspose2d(32, 16, 4), nn.ReLU()),
    }


@pytest.mark.parametrize("name", ["transformer_encoder", "lstm", "gru", "multihead_attention", "mlp",
                                  "embedding_mlp", "resnet_block", "conv_transpose"])
def test_fresh_torch_module_is_clean(name: str, tmp_path) -> None:
    torch = _torch()
    torch.manual_seed(0)
    module = _torch_modules()[name]()
    torch.save(module.state_dict(), tmp_path / "sd.pt")
    torch.save(module, tmp_path / "whole.pt")
    for obj in (tmp_path / "sd.pt", tmp_path / "whole.pt", module):
        alarms = _alarms(_audit(obj))
        if obj == tmp_path / "whole.pt" and any(type(m).__module__ == __name__ for m in module.modules()):
            # fail closed (issue 11): a whole pickled module of a class defined in this test file
            # makes torch.load import this file; that reference is unsafe-content by design
            alarms = [a for a in alarms if a[0] != "IA501"]
        assert alarms == [], obj


def test_torch_lstm_defaults_are_named() -> None:
    torch = _torch()
    torch.manual_seed(0)
    fr = _audit(torch.nn.LSTM(32, 64))
    kernels = [t for t in fr.tensors if t.scheme is not None]
    assert kernels and all(t.scheme.rule == "torch_default" for t in kernels), \
        [(t.name, t.scheme.label) for t in kernels]


def test_torch_default_before_relu_is_info_per_layer_with_the_reason() -> None:
    torch = _torch()
    torch.manual_seed(0)
    fr = _audit(_torch_modules()["mlp"]())
    infos = [f for f in fr.findings if f.code == "IA102"]
    assert len(infos) == 2 and all(f.severity.value == "info" for f in infos)
    assert all("ReLU halves the second moment" in f.message for f in infos)


def test_deep_plain_torch_stack_gets_one_model_level_warning() -> None:
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(0)
    layers = []
    for _ in range(8):
        layers += [nn.Linear(128, 128), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(128, 10))
    # torch's own default keeps its model-level finding at info (what every such model ships)
    fr = _audit(model)
    assert [f.severity.value for f in fr.findings if f.code == "IA601"] == ["info"]
    # a chosen scheme that loses the signal (Glorot before ReLU, 8 deep) is the one warning
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
    fr = _audit(model)
    assert [(f.code, f.severity.value) for f in fr.findings if f.severity.value != "info"] == [
        ("IA601", "warning")]


def test_torch_injected_defects_give_the_expected_findings(tmp_path) -> None:
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(0)

    he_sigmoid = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.Sigmoid())
    nn.init.kaiming_normal_(he_sigmoid[2].weight, nonlinearity="relu")
    assert _alarms(_audit(he_sigmoid)) == [("IA101", "2.weight")]

    zeroed = _torch_modules()["mlp"]()
    nn.init.zeros_(zeroed[2].weight)
    assert _alarms(_audit(zeroed)) == [("IA201", "2.weight")]

    dup = _resnet_block()
    with torch.no_grad():
        dup[1].conv1.weight[1:4] = dup[1].conv1.weight[0]
    torch.save(dup.state_dict(), tmp_path / "dup.pt")
    assert _alarms(_audit(tmp_path / "dup.pt")) == [("IA202", "1.conv1.weight")]

    naive = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    nn.init.normal_(naive[0].weight, 0.0, 1.0)
    torch.save(naive.state_dict(), tmp_path / "naive.pt")
    assert _alarms(_audit(tmp_path / "naive.pt")) == [("IA301", "0.weight")]


# ---- keras.applications -------------------------------------------------------------------------

def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("app", ["MobileNetV2", "EfficientNetB0"])
def test_fresh_keras_application_is_clean(app: str, tmp_path) -> None:
    keras = _keras()
    keras.utils.set_random_seed(0)
    kwargs = {"alpha": 0.35} if app == "MobileNetV2" else {}
    model = getattr(keras.applications, app)(weights=None, input_shape=(32, 32, 3), classes=10,
                                             **kwargs)
    model.save(tmp_path / "m.keras")
    fr = _audit(tmp_path / "m.keras")
    assert _alarms(fr) == []
    assert fr.state["state"] == "initialized"
    assert fr.signal is not None and fr.signal["forward_exit"] is None


def test_keras_recurrent_and_embedding_defaults_are_clean_and_he_sigmoid_is_not(tmp_path) -> None:
    keras = _keras()
    keras.utils.set_random_seed(0)
    clean = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(500, 32),
                              keras.layers.LSTM(32), keras.layers.Dense(1, activation="sigmoid")])
    clean.save(tmp_path / "clean.keras")
    assert _alarms(_audit(tmp_path / "clean.keras")) == []
    bad = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"),
                            keras.layers.Dense(128, activation="sigmoid",
                                               kernel_initializer="he_normal", name="gate")])
    bad.save(tmp_path / "bad.keras")
    assert _alarms(_audit(tmp_path / "bad.keras")) == [("IA101", "gate/kernel")]
