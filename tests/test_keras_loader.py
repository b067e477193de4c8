"""Keras loader: files written by real Keras 3 (.keras, legacy .h5, .weights.h5), read by
initaudit in a subprocess that never imports keras/jax; hand-built HDF5 for Keras 2 layouts and
hostile links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from initaudit.loaders import load  # noqa: E402
from initaudit.model import ActivationKind as K  # noqa: E402
from initaudit.model import LoadError, Role

ROOT = Path(__file__).resolve().parents[1]

READER = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from initaudit.loaders import load
m = load(sys.argv[2])
out = {"format": m.format, "has_graph": m.has_graph, "unsafe": [[u.what, u.location] for u in m.unsafe],
       "skipped": m.skipped, "notes": m.notes, "layers": {}, "tensors": {}}
blobs = {}
for layer in m.layers:
    a = layer.activation
    out["layers"][layer.name] = {"op": layer.op, "act": a.kind.value if a else None,
                                 "param": a.param if a else None, "normalized": layer.normalized,
                                 "residual": layer.residual, "inputs": layer.inputs}
for i, t in enumerate(m.tensors()):
    blobs[f"t{i}"] = np.ascontiguousarray(t.load())
    out["tensors"][t.name] = {"i": i, "layer": t.layer, "role": t.role.value, "shape": list(t.shape),
                              "fan_in": t.fan_in, "fan_out": t.fan_out, "unit_axis": t.unit_axis,
                              "gates": t.gates}
np.savez(sys.argv[3], **blobs)
out["forbidden"] = sorted(k for k in ("keras", "jax", "tensorflow", "torch") if k in sys.modules)
print(json.dumps(out))
"""


def read_isolated(path: Path, tmp_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    blob = tmp_path / f"{path.name}.blobs.npz"
    proc = subprocess.run([sys.executable, "-c", READER, str(ROOT), str(path), str(blob)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["forbidden"] == [], f"reading imported {out['forbidden']}"
    with np.load(blob) as npz:
        arrays = {name: npz[f"t{info['i']}"] for name, info in out["tensors"].items()}
    return out, arrays


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "jax"
    return pytest.importorskip("keras")


def _seq_model(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        L.Conv2D(4, 3, activation="relu", name="conv"),
        L.BatchNormalization(name="bn"), L.LeakyReLU(negative_slope=0.2),
        L.DepthwiseConv2D(3, name="dw"), L.PReLU(name="prelu"),
        L.Conv2DTranspose(5, 3, name="deconv"), L.Activation("tanh"),
        L.Flatten(), L.Dense(10, activation="relu", name="fc1"),
        L.Dense(3, name="fc2"),
    ])


def _func_model(keras):
    L = keras.layers
    inp = keras.Input((5,), dtype="int32")
    x = L.Embedding(20, 6, name="emb")(inp)
    x = L.LSTM(7, return_sequences=True, name="lstm")(x)
    x = L.GRU(4, name="gru")(x)
    a = L.Dense(6, activation="gelu", name="d1")(x)
    b = L.Dense(6, name="d2")(a)
    x = L.Add()([a, b])
    x = L.ReLU(max_value=6.0)(x)
    x = L.Dense(6, name="d3")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ELU(alpha=0.5)(x)
    out = L.Dense(2, activation="softmax", name="head")(x)
    return keras.Model(inp, out)


def _expected(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers}


def _by_layer(out: dict, arrays: dict) -> dict[str, list[np.ndarray]]:
    """Stored arrays grouped by Keras layer (first path component), in file order."""
    grouped: dict[str, list[np.ndarray]] = {}
    for name, info in out["tensors"].items():
        grouped.setdefault(info["layer"].split("/")[0], []).append(arrays[name])
    return grouped


def _check_bits(model, out, arrays) -> None:
    grouped = _by_layer(out, arrays)
    for name, weights in _expected(model).items():
        if not weights:
            continue
        got = grouped[name]
        assert len(got) == len(weights), name
        for g, w in zip(sorted(got, key=lambda a: (a.shape, a.tobytes())),
                        sorted(weights, key=lambda a: (a.shape, a.tobytes()))):
            assert g.dtype == w.dtype and g.tobytes() == w.tobytes(), name


@pytest.mark.frameworks
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_sequential_model(keras, tmp_path: Path, suffix: str) -> None:
    model = _seq_model(keras)
    path = tmp_path / f"seq{suffix}"
    model.save(path)
    out, arrays = read_isolated(path, tmp_path)
    assert out["has_graph"] and out["unsafe"] == []
    _check_bits(model, out, arrays)
    layers = out["layers"]
    assert layers["conv"]["act"] == "relu"
    assert layers["dw"]["act"] == "prelu"
    assert layers["deconv"]["act"] == "tanh"
    assert layers["fc1"]["act"] == "relu"
    assert layers["fc2"]["act"] == "linear"  # graph output
    assert layers["fc1"]["inputs"] == ["deconv"]
    t = {name.split("/")[0] + "/" + name.split("/")[-1]: v for name, v in out["tensors"].items()}
    assert (t["conv/kernel"]["fan_in"], t["conv/kernel"]["fan_out"], t["conv/kernel"]["unit_axis"]) == (27, 36, 3)
    assert (t["dw/kernel"]["fan_in"], t["dw/kernel"]["fan_out"]) == (36, 9)
    assert (t["deconv/kernel"]["fan_in"], t["deconv/kernel"]["fan_out"], t["deconv/kernel"]["unit_axis"]) == (45, 36, 2)
    assert (t["fc1/kernel"]["fan_in"], t["fc1/kernel"]["fan_out"]) == (180, 10)
    assert t["bn/gamma"]["role"] == "norm_scale" and t["bn/moving_variance"]["role"] == "norm_stat"


@pytest.mark.frameworks
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_functional_model(keras, tmp_path: Path, suffix: str) -> None:
    model = _func_model(keras)
    path = tmp_path / f"func{suffix}"
    model.save(path)
    out, arrays = read_isolated(path, tmp_path)
    _check_bits(model, out, arrays)
    layers = out["layers"]
    assert layers["emb"]["act"] == "linear"  # feeds the LSTM
    assert layers["lstm"]["act"] == "tanh" and layers["lstm"]["op"] == "LSTM"
    assert layers["d1"]["act"] == "gelu"
    assert layers["d2"]["act"] == "relu6" and layers["d2"]["residual"]
    assert layers["d3"]["act"] == "elu" and layers["d3"]["param"] == 0.5 and layers["d3"]["normalized"]
    assert layers["head"]["act"] == "softmax"
    assert layers["d2"]["inputs"] == ["d1"]
    tensors = {n.split("/")[0] + "/" + n.split("/")[-1]: v for n, v in out["tensors"].items()}
    assert tensors["lstm/kernel"]["role"] == "kernel" and tensors["lstm/kernel"]["gates"] == 4
    assert tensors["lstm/recurrent_kernel"]["role"] == "recurrent"
    assert (tensors["lstm/recurrent_kernel"]["fan_in"], tensors["lstm/recurrent_kernel"]["fan_out"]) == (7, 28)
    assert tensors["gru/kernel"]["gates"] == 3
    assert tensors["emb/embeddings"]["role"] == "embedding"


@pytest.mark.frameworks
def test_weights_only_file_has_unknown_activations(keras, tmp_path: Path) -> None:
    model = _func_model(keras)
    path = tmp_path / "func.weights.h5"
    model.save_weights(path)
    out, arrays = read_isolated(path, tmp_path)
    assert not out["has_graph"]
    assert all(layer["act"] is None for layer in out["layers"].values())
    _check_bits(model, out, arrays)


@pytest.mark.frameworks
def test_multi_head_attention_fans(keras, tmp_path: Path) -> None:
    inp = keras.Input((5, 6))
    x = keras.layers.MultiHeadAttention(2, 3, name="mha")(inp, inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    path = tmp_path / "mha.keras"
    model.save(path)
    out, _ = read_isolated(path, tmp_path)
    q = next(v for n, v in out["tensors"].items() if "query" in n and n.endswith("kernel"))
    o = next(v for n, v in out["tensors"].items() if "output" in n and n.endswith("kernel"))
    assert (q["fan_in"], q["fan_out"]) == (6, 6)  # (dim, heads, key_dim): Keras >= 3.15
    assert (o["fan_in"], o["fan_out"]) == (6, 6)


@pytest.mark.frameworks
def test_lambda_layer_is_reported_and_never_run(keras, tmp_path: Path) -> None:
    sentinel = tmp_path / "lambda-ran"
    inp = keras.Input((4,))
    x = keras.layers.Dense(4, activation="relu", name="d")(inp)
    touch = f"__import__('pathlib').Path({str(sentinel)!r}).touch()"
    x = keras.layers.Lambda(eval(f"lambda t: ({touch}, t)[1]"), name="sneaky")(x)  # noqa: S307
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    sentinel.unlink(missing_ok=True)  # building the model ran it; reading must not
    out, _ = read_isolated(path, tmp_path)
    assert ["Keras Lambda layer 'sneaky' carries code (never run)", "sneaky"] in out["unsafe"]
    assert not sentinel.exists()
    assert out["layers"]["d"]["act"] == "relu"
    assert out["layers"]["out"]["act"] == "linear"


@pytest.mark.frameworks
def test_custom_registered_layer_is_unsafe_but_audited(keras, tmp_path: Path) -> None:
    @keras.saving.register_keras_serializable(package="mypkg")
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 3), initializer="glorot_uniform")

        def call(self, x):
            return x @ self.w

    inp = keras.Input((4,))
    x = keras.layers.Dense(4, activation="relu", name="d")(Scale(name="scale")(inp))
    model = keras.Model(inp, x)
    path = tmp_path / "custom.keras"
    model.save(path)
    out, arrays = read_isolated(path, tmp_path)
    assert any("mypkg>Scale" in what for what, _ in out["unsafe"])
    scale = [v for n, v in out["tensors"].items() if n.startswith("scale/")]
    assert scale and scale[0]["role"] == "kernel"  # still audited
    assert out["layers"]["scale"]["act"] == "linear"  # feeds a Dense


# --------------------------------------------------------------------------- hand-built HDF5


def _keras2_h5(path: Path) -> dict[str, np.ndarray]:
    """A Keras 2 (tf.keras) style full-model .h5: ':0' weight names, alpha, split layer_names."""
    rng = np.random.default_rng(0)
    weights = {"dense/kernel:0": rng.normal(size=(4, 8)).astype(np.float32),
               "dense/bias:0": np.zeros(8, np.float32),
               "dense_1/kernel:0": rng.normal(size=(8, 2)).astype(np.float32)}
    config = {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "config": {"name": "input_1"}, "name": "input_1", "inbound_nodes": []},
        {"class_name": "Dense", "config": {"name": "dense", "activation": "linear"}, "name": "dense",
         "inbound_nodes": [[["input_1", 0, 0, {}]]]},
        {"class_name": "LeakyReLU", "config": {"name": "leaky", "alpha": 0.1}, "name": "leaky",
         "inbound_nodes": [[["dense", 0, 0, {}]]]},
        {"class_name": "Dense", "config": {"name": "dense_1", "activation": "sigmoid"}, "name": "dense_1",
         "inbound_nodes": [[["leaky", 0, 0, {}]]]}],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["dense_1", 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()  # bytes, as older h5py wrote it
        f.attrs["keras_version"] = b"2.4.0"
        mw = f.create_group("model_weights")
        mw.attrs["layer_names0"] = np.array([b"input_1", b"dense"])
        mw.attrs["layer_names1"] = np.array([b"leaky", b"dense_1"])
        for layer in ("input_1", "dense", "leaky", "dense_1"):
            g = mw.create_group(layer)
            names = [n for n in weights if n.startswith(layer + "/")]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n in names:
                g.create_dataset(n, data=weights[n])
    return weights


def test_keras2_legacy_h5(tmp_path: Path) -> None:
    path = tmp_path / "k2.h5"
    weights = _keras2_h5(path)
    model = load(path)
    assert model.format == "keras-h5" and model.has_graph
    dense = model.layer("dense")
    assert dense.activation.kind is K.LEAKY_RELU and dense.activation.param == pytest.approx(0.1)
    assert model.layer("dense_1").activation.kind is K.SIGMOID
    assert model.layer("dense_1").inputs == ["dense"]
    kernel = next(t for t in dense.tensors if t.role is Role.KERNEL)
    assert np.array_equal(kernel.load(), weights["dense/kernel:0"])
    assert (kernel.fan_in, kernel.fan_out) == (4, 8)


def _keras3_weights(path: Path) -> None:
    with h5py.File(path, "w") as f:
        v = f.create_group("layers/dense/vars")
        v.create_dataset("0", data=np.ones((3, 4), np.float32))
        v.create_dataset("1", data=np.zeros(4, np.float32))


@pytest.mark.parametrize("kind", ["external", "soft", "virtual", "external_storage"])
def test_hdf5_links_are_refused(tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f.create_dataset("data", data=np.arange(12, dtype=np.float32).reshape(3, 4))
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    path = tmp_path / "w.weights.h5"
    _keras3_weights(path)
    with h5py.File(path, "a") as f:
        v = f["layers/dense/vars"]
        if kind == "external":
            v["2"] = h5py.ExternalLink(str(secret), "/data")
        elif kind == "soft":
            v["2"] = h5py.SoftLink("/layers/dense/vars/0")
        elif kind == "virtual":
            layout = h5py.VirtualLayout(shape=(3, 4), dtype="f4")
            layout[:] = h5py.VirtualSource(str(secret), "data", shape=(3, 4))
            v.create_virtual_dataset("2", layout)
        else:
            v.create_dataset("2", shape=(3, 4), dtype="f4", external=[(str(raw), 0, 48)])
    model = load(path)
    assert any("/layers/dense/vars/2" in u.what for u in model.unsafe), model.unsafe
    assert not any(t.name.endswith("var2") or t.name.endswith("/2") for t in model.tensors())
    assert len([t for t in model.tensors() if t.role is Role.KERNEL]) == 1


def test_corrupt_keras_zip_config(tmp_path: Path) -> None:
    import zipfile
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", b"{not json")
        zf.writestr("metadata.json", b"{}")
        zf.writestr("model.weights.h5", b"")
    with pytest.raises(LoadError) as exc:
        load(path)
    assert "config.json is not valid JSON" in str(exc.value) and "\n" not in str(exc.value)


def test_hdf5_without_keras_structure(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.ones(3))
    with pytest.raises(LoadError, match="not a Keras"):
        load(path)
