"""Keras 3 sharded weights (``save_weights("*.weights.json", max_shard_size=...)``) as ONE model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.discover import discover
from initaudit.loaders import LoadError, detect_format, load

pytestmark = pytest.mark.frameworks

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

HINTS = {"dense": "relu", "dense_1": "tanh", "dense_2": "linear"}


def _model(broken: bool = False):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((256,)),
                          keras.layers.Dense(512, activation="relu", name="dense"),
                          keras.layers.BatchNormalization(name="bn"),
                          keras.layers.Dense(512, activation="tanh", name="dense_1"),
                          keras.layers.Dense(4, name="dense_2")])
    if broken:
        m.get_layer("dense_1").kernel.assign(np.full((512, 512), 0.02, np.float32))
    return m


@pytest.mark.parametrize("broken", [False, True])
def test_shards_read_as_one_model_with_the_keras_file_verdicts(tmp_path: Path, broken: bool) -> None:
    m = _model(broken)
    folder = tmp_path / "weights"
    folder.mkdir()
    m.save_weights(folder / "model.weights.json", max_shard_size=0.0011)  # GB: ~1 MB shards
    shards = sorted(p.name for p in folder.glob("*.h5"))
    assert len(shards) >= 2
    m.save(tmp_path / "model.keras")
    assert detect_format(folder) == detect_format(folder / "model.weights.json") == "keras-sharded"
    assert discover([str(folder)]) == [str(folder)]  # one input, not one per shard
    model = load(folder / "model.weights.json")
    got = {t.name: t for t in model.tensors()}
    for v in m.weights:
        matches = [t for n, t in got.items() if n.startswith(v.path.split("/")[-2] + "/")]
        assert any(t.load().tobytes() == np.asarray(v.numpy()).tobytes() for t in matches), v.path
    assert len(got) == len(m.weights)
    sharded = audit(str(folder), activation=HINTS).files[0]
    single = audit(str(tmp_path / "model.keras")).files[0]
    assert sharded.error is None
    assert {(f.code, f.layer) for f in sharded.findings} == {(f.code, f.layer) for f in single.findings}
    if broken:
        assert any(f.code == "IA201" for f in sharded.findings)


def test_shard_outside_the_folder_is_refused(tmp_path: Path) -> None:
    index = tmp_path / "model.weights.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {
        "/layers/dense/vars": ["../evil.weights.h5"]}}))
    with pytest.raises(LoadError, match="leaves the folder"):
        load(index)


def test_layer_named_in_one_shard_with_variables_in_the_next(tmp_path: Path) -> None:
    """Keras writes a layer's name where its group opened; its variables may sit in the next
    shard. Before: such layers kept their group key ('dense_1'), so hints by name missed them."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    x = keras.layers.Dense(128, activation="relu", name="fc1")(inputs)
    x = keras.layers.Dense(96, activation="tanh", name="fc2")(x)
    m = keras.Model(inputs, keras.layers.Dense(10, name="head")(x))
    m.save_weights(tmp_path / "m.weights.json", max_shard_size=0.00005)
    m.save_weights(tmp_path / "single.weights.h5")
    assert len(list(tmp_path.glob("m_*.weights.h5"))) >= 2
    sharded = [layer.name for layer in load(tmp_path / "m.weights.json").layers]
    single = [layer.name for layer in load(tmp_path / "single.weights.h5").layers]
    assert sharded == single == ["fc1", "fc2", "head"]
