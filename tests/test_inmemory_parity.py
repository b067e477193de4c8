"""An in-memory model gets the verdicts its saved form gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import initaudit


@pytest.mark.frameworks
def test_hf_model_in_memory_has_the_activations_of_its_saved_folder(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        vocab_size=500))
    model.save_pretrained(tmp_path)
    in_memory = initaudit.audit(model, use_config=False).files[0]
    saved = initaudit.audit(str(tmp_path / "model.safetensors"), use_config=False).files[0]
    activations = {t.name: t.activation for t in in_memory.tensors}
    assert activations == {t.name: t.activation for t in saved.tensors}
    assert sum(a is not None for a in activations.values()) > 20
    assert [f.code for f in in_memory.findings] == [f.code for f in saved.findings]


@pytest.mark.frameworks
def test_subclassed_keras_model_he_into_sigmoid_is_found() -> None:
    keras = pytest.importorskip("keras")

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.d1 = keras.layers.Dense(256, activation="sigmoid", kernel_initializer="he_normal")
            self.d2 = keras.layers.Dense(10)

        def call(self, x):  # noqa: ANN001, ANN202 - keras signature
            return self.d2(self.d1(x))

    net = Net()
    net(np.zeros((1, 300), "float32"))
    report = initaudit.audit(net, use_config=False)
    assert [(f.code, f.layer) for f in report.findings if f.code == "IA101"] == [("IA101", "d1")]
    clean = Net()
    clean.d1 = keras.layers.Dense(256, activation="sigmoid", kernel_initializer="glorot_uniform")
    clean(np.zeros((1, 300), "float32"))
    assert not any(f.code == "IA101" for f in initaudit.audit(clean, use_config=False).findings)


@pytest.mark.frameworks
def test_torch_module_in_memory_walks_the_vocabulary_of_its_saved_form(tmp_path: Path) -> None:
    """One torch module vocabulary (torch_loader's tables): the in-memory walk passes through a
    pooling layer to the activation after it, as the saved module's walk does."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.MaxPool2d(2), nn.LeakyReLU(0.5), nn.Flatten(),
                          nn.Linear(16 * 7 * 7, 10))
    torch.save(model, tmp_path / "model.pt")
    in_memory = initaudit.audit(model, use_config=False).files[0]
    saved = initaudit.audit(str(tmp_path / "model.pt"), use_config=False).files[0]
    activations = {t.name: t.activation for t in in_memory.tensors}
    assert activations["0.weight"] == "leaky_relu(0.5)"
    assert activations == {t.name: t.activation for t in saved.tensors}
