"""Keras weights files written by real Keras 3: every HDF5 dataset accounted for."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from initaudit.engine import audit_path
from initaudit.loaders import load
from initaudit.model import Role, SkipReason

pytestmark = pytest.mark.frameworks


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def _accounted(model) -> None:
    assert model.inventory is not None
    names = {t.name for t in model.tensors()}
    for s in model.inventory:
        if s.weight_like:
            assert s.name in names or s.skip is not None, s


def test_subclassed_model_own_variables_are_read(keras, tmp_path: Path) -> None:
    layers = keras.layers

    class Sub(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.d1 = layers.Dense(32, activation="relu")
            self.d2 = layers.Dense(8)
            self.w = self.add_weight(shape=(16, 16), initializer="glorot_uniform", name="extra")

        def call(self, x):
            return self.d2(self.d1(x @ self.w))

    m = Sub()
    m(np.zeros((1, 16), "float32"))
    path = tmp_path / "sub.weights.h5"
    m.save_weights(path)
    model = load(path)
    _accounted(model)
    own = [t for t in model.tensors() if t.shape == (16, 16)]
    assert len(own) == 1 and own[0].role is Role.KERNEL
    np.testing.assert_array_equal(own[0].load(), np.asarray(m.w.value))
    assert audit_path(path).status.value == "ok"


@pytest.mark.parametrize("rnn", ["LSTM", "GRU"])
def test_weights_only_bidirectional_cells_are_named(keras, tmp_path: Path, rnn: str) -> None:
    layers = keras.layers
    m = keras.Sequential([keras.Input((5, 8)), layers.Bidirectional(getattr(layers, rnn)(12)),
                          layers.Dense(3)])
    path = tmp_path / "bi.weights.h5"
    m.save_weights(path)
    model = load(path)
    _accounted(model)
    roles = {t.name.rpartition("/")[2]: t.role for t in model.tensors() if "cell" in t.name}
    assert roles == {"kernel": Role.KERNEL, "recurrent_kernel": Role.RECURRENT, "bias": Role.BIAS}
    report = audit_path(path)
    assert report.status.value == "ok"
    # GRU's zero (2, 3u) bias used to be read as a constant kernel: no error finding now
    assert not [f for f in report.findings if f.severity.value == "error"], \
        [f.to_dict() for f in report.findings]


def test_dataset_no_layer_claims_makes_the_file_partial(keras, tmp_path: Path) -> None:
    layers = keras.layers
    m = keras.Sequential([keras.Input((4,)), layers.Dense(3)])
    path = tmp_path / "m.weights.h5"
    m.save_weights(path)
    with h5py.File(path, "a") as f:
        f.create_dataset("stray", data=np.random.default_rng(0).normal(size=(6, 6)))
    model = load(path)
    _accounted(model)
    stray = [s for s in model.inventory if s.name == "/stray"]
    assert stray and stray[0].skip is SkipReason.UNMAPPED
    report = audit_path(path)
    assert report.status.value == "partial" and "/stray" in {s["name"] for s in report.skipped}
