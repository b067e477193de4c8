"""TensorFlow checkpoints, SavedModels (and TFLite) written by real TensorFlow, read without it.

The files come from tests/fixtures/make_tf_files.py run by a separate Python that has
tensorflow-cpu ($INITAUDIT_TF_PYTHON, default /work/venv-tf/bin/python); without one the
module skips. This process never imports TensorFlow (checked).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.loaders import detect_format, load
from initaudit.model import Convention, Role, SkipReason

pytestmark = pytest.mark.frameworks

TF_PYTHON = os.environ.get("INITAUDIT_TF_PYTHON", "/work/venv-tf/bin/python")
SCRIPT = Path(__file__).parent / "fixtures" / "make_tf_files.py"


@pytest.fixture(scope="module")
def tf_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not Path(TF_PYTHON).is_file():
        pytest.skip(f"no Python with tensorflow at {TF_PYTHON} (set INITAUDIT_TF_PYTHON)")
    out = tmp_path_factory.mktemp("tf")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": ""}
    run = subprocess.run([TF_PYTHON, str(SCRIPT), str(out)], capture_output=True, text=True,
                         timeout=300, check=False, env=env)
    if run.returncode != 0:
        if "No module named 'tensorflow'" in run.stderr:
            pytest.skip(f"{TF_PYTHON} has no tensorflow")
        raise AssertionError(run.stderr[-2000:])
    assert "tensorflow" not in sys.modules
    return out


def _truth(tf_files: Path) -> dict[str, np.ndarray]:
    with np.load(tf_files / "truth.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("where", ["ckpt", "ckpt/ckpt-1.index", "ckpt/ckpt-1.data-00000-of-00001",
                                   "savedmodel", "savedmodel/saved_model.pb"])
def test_checkpoint_and_savedmodel_bit_identical(tf_files: Path, where: str) -> None:
    path = tf_files / where
    fmt = detect_format(path)
    assert fmt == ("tf-savedmodel" if where.startswith("savedmodel") else "tf-checkpoint")
    model = load(path)
    got = {t.name: t for t in model.tensors()}
    truth = _truth(tf_files)
    for name, arr in truth.items():
        t = got[name.replace("/", ".")]
        assert t.load().tobytes() == arr.tobytes(), name
    assert {s.name for s in model.inventory or [] if s.skip is None} == {
        n.replace("/", ".") for n in truth}
    conv = got["conv.kernel"]  # (3, 3, 3, 16)
    assert (conv.role, conv.fan_in, conv.fan_out, conv.convention) == (
        Role.KERNEL, 27, 144, Convention.KERAS)
    hidden = got["hidden.kernel"]
    assert (hidden.fan_in, hidden.fan_out) == (10 * 10 * 16, 64)
    bookkeeping = [s for s in model.inventory or [] if s.skip is SkipReason.OTHER]
    assert bookkeeping  # the object graph (and save counter) are enumerated, not analysed


def test_not_misread_as_onnx(tf_files: Path) -> None:
    report = audit(str(tf_files / "savedmodel" / "saved_model.pb")).files[0]
    assert report.error is None and report.format == "tf-savedmodel"


# what the .keras config says; a graph-less checkpoint needs it as hints
HINTS = {"conv": "relu", "hidden": "tanh", "head": "linear"}


def test_same_verdicts_as_the_keras_file(tf_files: Path) -> None:
    """Checkpoint and .keras hold the same weights: same schemes, same findings."""
    ck = audit(str(tf_files / "ckpt"), activation=HINTS).files[0]
    ke = audit(str(tf_files / "model.keras")).files[0]
    assert ck.error is None and ke.error is None

    def schemes(report) -> dict[str, tuple[str, str]]:
        return {t.name.replace("/", ".").split(".")[-2]: (t.scheme.rule, t.scheme.distribution)
                for t in report.tensors if t.scheme is not None and t.name.endswith("kernel")}
    assert schemes(ck) == schemes(ke) and len(schemes(ck)) == 3
    assert {(f.code, f.layer) for f in ck.findings} == {(f.code, f.layer) for f in ke.findings}
    bk = audit(str(tf_files / "broken_ckpt"), activation=HINTS).files[0]
    bke = audit(str(tf_files / "broken.keras")).files[0]
    codes_ck = {f.code for f in bk.findings}
    assert {"IA201", "IA203"} <= codes_ck
    assert codes_ck == {f.code for f in bke.findings}


def _tflite_layers(model) -> dict[str, object]:
    """Keras layer name (conv / hidden / head) -> the TFLite layer converted from it."""
    out = {}
    for layer in model.layers:
        for key in HINTS:
            if f"/{key}_" in layer.name or f"/{key}/" in layer.name:
                out[key] = layer
    return out


@pytest.mark.parametrize("file", ["model.tflite", "model_int8.tflite"])
def test_tflite_weights_fans_and_activations(tf_files: Path, file: str) -> None:
    path = tf_files / file
    assert detect_format(path) == "tflite"
    model = load(path)
    layers = _tflite_layers(model)
    assert set(layers) == set(HINTS)
    truth = _truth(tf_files)
    conv, hidden, head = layers["conv"].kernel, layers["hidden"].kernel, layers["head"].kernel
    # TFLite stores Dense as (out, in), Conv2D as (out, kh, kw, in)
    expected = {"conv": np.transpose(truth["conv/kernel"], (3, 0, 1, 2)),
                "hidden": truth["hidden/kernel"].T, "head": truth["head/kernel"].T}
    for key, tensor in (("conv", conv), ("hidden", hidden), ("head", head)):
        values = np.asarray(tensor.load())
        if "dequantized" not in tensor.dtype:
            assert values.tobytes() == np.ascontiguousarray(expected[key]).tobytes(), key
        else:  # int8: within half a quantization step of the float weights
            step = np.abs(expected[key]).max() / 127
            assert np.abs(values - expected[key]).max() <= step * 0.51 + 1e-7, key
    # the converter quantizes tensors of >= 1024 weights only
    assert ("dequantized" in hidden.dtype) == (file == "model_int8.tflite")
    assert (conv.fan_in, conv.fan_out) == (27, 144)
    assert (hidden.fan_in, hidden.fan_out) == (1600, 64)
    acts = {k: layer.activation.kind.value for k, layer in layers.items()}
    assert acts == HINTS
    report = audit(str(path)).files[0]
    keras = audit(str(tf_files / "model.keras")).files[0]
    assert sorted(f.code for f in report.findings) == sorted(f.code for f in keras.findings)


@pytest.fixture(scope="module")
def legacy_files(tf_files: Path) -> Path:
    """A tf.keras 2 SavedModel (keras_metadata.pb); needs tf_keras in the TF venv."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": ""}
    env.pop("KERAS_BACKEND", None)
    run = subprocess.run([TF_PYTHON, str(SCRIPT), str(tf_files), "--legacy"], capture_output=True,
                         text=True, timeout=300, check=False, env=env)
    if run.returncode != 0:
        if "tf_keras" in run.stderr:
            pytest.skip(f"{TF_PYTHON} has no tf_keras")
        raise AssertionError(run.stderr[-2000:])
    return tf_files


def test_tf_keras_savedmodel_activations_from_keras_metadata(legacy_files: Path) -> None:
    path = legacy_files / "legacy_savedmodel"
    model = load(path)
    with np.load(legacy_files / "legacy_truth.npz") as z:
        truth = {k: z[k] for k in z.files}
    got = {t.name: t for t in model.tensors()}
    for name, arr in truth.items():
        assert got[name.replace("/", ".")].load().tobytes() == arr.tobytes(), name
    acts = {layer.name: layer.activation.kind.value if layer.activation else None
            for layer in model.layers}
    # relu and tanh come from the metadata; the head's linear is left unknown (an Activation
    # layer could follow it)
    assert acts == {"conv": "relu", "hidden": "tanh", "head": None}
    report = audit(str(path)).files[0]
    keras = audit(str(legacy_files / "model.keras")).files[0]
    assert {(f.code, f.layer) for f in report.findings} == {(f.code, f.layer) for f in keras.findings}


def test_keras3_savedmodel_activations_from_the_graph(tf_files: Path) -> None:
    """tf.saved_model.save of a Keras 3 model has no Keras metadata: the activations come from
    the ops the layers' MatMul/Conv feed; the verdicts are the .keras file's."""
    model = load(tf_files / "savedmodel")
    acts = {layer.name: layer.activation.kind.value if layer.activation else None
            for layer in model.layers}
    # the head feeds no activation op: left unknown rather than guessed linear
    assert acts == {"conv": "relu", "hidden": "tanh", "head": None}
    assert all(layer.activation.source == "savedmodel-graph" for layer in model.layers
               if layer.activation)
    report = audit(str(tf_files / "savedmodel")).files[0]
    keras = audit(str(tf_files / "model.keras")).files[0]
    assert report.findings, "the Glorot-before-ReLU conv must be reported"
    assert ({(f.code, f.layer) for f in report.findings}
            == {(f.code, f.layer) for f in keras.findings})


def test_tf_files_out_of_place_are_refused_by_name(tf_files: Path, tmp_path: Path) -> None:
    """Before: a renamed saved_model.pb was 'not a valid ONNX model', a renamed .index and a
    frozen GraphDef 'not a recognised checkpoint format'."""
    import shutil

    cases = {"graph.pb": (tf_files / "savedmodel" / "saved_model.pb", "TensorFlow SavedModel"),
             "weights.bin": (tf_files / "ckpt" / "ckpt-1.index", "TensorFlow checkpoint index"),
             "frozen_graph.pb": (tf_files / "frozen.pb", "TensorFlow GraphDef")}
    for name, (source, named) in cases.items():
        target = tmp_path / name
        shutil.copy(source, target)
        report = audit(str(target)).files[0]
        assert report.error and named in report.error and "\n" not in report.error, report.error


def test_keras3_savedmodel_graph_activations_of_other_shapes(tf_files: Path) -> None:
    """Conv1D (a Conv2D between ExpandDims and Squeeze), an Activation layer after a Dense, and
    a layer named 'fc_1' beside 'fc' (a tracing suffix must not give fc_1's op to fc)."""
    model = load(tf_files / "acts_savedmodel")
    acts = {layer.name: layer.activation.kind.value if layer.activation else None
            for layer in model.layers}
    assert acts == {"c1d": "elu", "fc": "sigmoid", "fc_1": "selu", "out": None}
