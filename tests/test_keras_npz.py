"""``.keras`` archives with ``model.weights.npz``: what Keras 3's NpzIOStore writes
(``saving_lib.save_model(..., weights_format="npz")``: each layer's Variable objects pickled in a
0-d object array), read through the restricted unpickler and mapped like ``model.weights.h5``."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.loaders import LoadError, load

pytestmark = pytest.mark.frameworks

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
saving_lib = pytest.importorskip("keras.src.saving.saving_lib")


def _model(broken: bool = False):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32,))
    x = keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal", name="fc1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(48, activation="sigmoid", kernel_initializer="he_normal", name="fc2")(x)
    m = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    if broken:
        m.get_layer("head").kernel.assign(np.full((48, 4), 0.05, np.float32))
    return m


@pytest.mark.parametrize("broken", [False, True])
def test_npz_weights_read_like_the_h5_weights(tmp_path: Path, broken: bool) -> None:
    m = _model(broken)
    npz_path, h5_path = tmp_path / "npz.keras", tmp_path / "h5.keras"
    saving_lib.save_model(m, str(npz_path), weights_format="npz")
    m.save(h5_path)
    assert "model.weights.npz" in zipfile.ZipFile(npz_path).namelist()
    got = {t.name: t for t in load(npz_path).tensors()}
    ref = {t.name: t for t in load(h5_path).tensors()}
    assert set(got) == set(ref) and len(got) == len(m.weights)
    for name, t in ref.items():
        assert got[name].load().tobytes() == np.asarray(t.load()).tobytes(), name
        assert (got[name].role, got[name].fan_in, got[name].fan_out) == (t.role, t.fan_in, t.fan_out)
    for v in m.weights:  # the values Keras holds, bit for bit
        assert any(np.asarray(t.load()).tobytes() == np.asarray(v.numpy()).tobytes()
                   for t in got.values()), v.path
    r_npz, r_h5 = audit(str(npz_path)).files[0], audit(str(h5_path)).files[0]
    assert r_npz.error is None and r_npz.coverage.complete
    assert not any(f.code == "IA501" for f in r_npz.findings)  # Variable + jax array: the grammar
    assert {(f.code, f.tensor) for f in r_npz.findings} == {(f.code, f.tensor) for f in r_h5.findings}
    assert any(f.code == "IA101" for f in r_npz.findings)  # He before sigmoid on fc2
    assert broken == any(f.code == "IA201" for f in r_npz.findings)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _good(tmp_path: Path) -> Path:
    """A real Keras save with the npz weights store (written once per test)."""
    good = tmp_path / "good.keras"
    if not good.exists():
        saving_lib.save_model(_model(), str(good), weights_format="npz")
    return good


def _npz_save_with(tmp_path: Path, weights: bytes, name: str = "bad.keras") -> Path:
    """:func:`_good`'s archive with its ``model.weights.npz`` member replaced by ``weights``."""
    with zipfile.ZipFile(_good(tmp_path)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["model.weights.npz"] = weights
    out = tmp_path / name
    with zipfile.ZipFile(out, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return out


def _weights_of(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read("model.weights.npz")


def test_npz_with_a_payload_is_reported_and_not_run(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(_weights_of(_good(tmp_path)))) as src, \
            zipfile.ZipFile(inner, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "layers/dense.npy":
                header_end = data.index(b"\n") + 1
                data = data[:header_end] + pickle.dumps(
                    np.asanyarray({"0": _Payload()}, dtype=object), protocol=4)
            dst.writestr(name, data)
    bad = _npz_save_with(tmp_path, inner.getvalue())
    report = audit(str(bad)).files[0]
    assert any(f.code == "IA501" and "system" in f.message for f in report.findings)
    assert report.status != "ok"


def test_not_an_object_array_is_refused_by_name(tmp_path: Path) -> None:
    plain = io.BytesIO()
    np.savez(plain, **{"layers/dense": np.zeros((3, 3), np.float32)})
    bad = _npz_save_with(tmp_path, plain.getvalue(), "plain.keras")
    with pytest.raises(LoadError, match="model.weights.npz member .* not Keras' pickled dict"):
        load(bad)


@pytest.mark.parametrize("weights_format", ["h5", "npz"])
def test_unzipped_keras_save_is_one_model(tmp_path: Path, weights_format: str) -> None:
    """``model.save(path, zipped=False)`` writes the archive's members as files (with the npz
    store, still named model.weights.h5); before: the folder was audited file by file, the
    weights without their config (no activations)."""
    from initaudit.discover import discover
    from initaudit.loaders import detect_format

    m = _model()
    folder = tmp_path / "saved"
    saving_lib.save_model(m, str(folder), weights_format=weights_format, zipped=False)
    m.save(tmp_path / "ref.keras")
    assert detect_format(folder) == "keras-dir"
    assert set(discover([str(tmp_path)])) == {str(folder), str(tmp_path / "ref.keras")}
    got = {t.name: t for t in load(folder).tensors()}
    ref = {t.name: t for t in load(tmp_path / "ref.keras").tensors()}
    assert set(got) == set(ref)
    for name, t in ref.items():
        assert got[name].load().tobytes() == np.asarray(t.load()).tobytes(), name
    acts = {layer.name: layer.activation.kind.value if layer.activation else None
            for layer in load(folder).layers}
    assert acts["fc1"] == "relu" and acts["fc2"] == "sigmoid"
    r_dir, r_ref = audit(str(folder)).files[0], audit(str(tmp_path / "ref.keras")).files[0]
    assert r_dir.format == "keras-dir" and r_dir.coverage.complete
    assert {(f.code, f.tensor) for f in r_dir.findings} == {(f.code, f.tensor) for f in r_ref.findings}


def test_layout_keras_never_writes_is_a_one_line_error(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as dst:
        header = b"\x93NUMPY\x01\x00v\x00" + (b"{'descr': '|O', 'fortran_order': False, 'shape': (), }"
                                              .ljust(117) + b"\n")
        payload = pickle.dumps(np.asanyarray({"../0": np.zeros(3, np.float32)}, dtype=object),
                               protocol=4)
        dst.writestr("layers/dense.npy", header + payload)
    bad = _npz_save_with(tmp_path, inner.getvalue())
    report = audit(str(bad)).files[0]
    assert report.error and "variable key" in report.error and "\n" not in report.error
