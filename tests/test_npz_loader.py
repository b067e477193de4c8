"""NumPy .npz loader: lazy members, never unpickling, layouts, size checks."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from initaudit.loaders import LoadOptions, load, npz_loader
from initaudit.model import Convention, Role


def sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"fc.weight": rng.normal(size=(6, 4)).astype(np.float32),
            "fc.bias": np.zeros(6, np.float32),
            "conv.weight": rng.normal(size=(8, 3, 3, 3)),
            "f16.weight": rng.normal(size=(5, 5)).astype(np.float16)}


@pytest.mark.parametrize("compressed", [False, True])
def test_values_bit_identical_and_torch_fans(tmp_path: Path, compressed: bool) -> None:
    arrays = sample()
    path = tmp_path / "w.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    model = load(path)
    assert model.format == "npz" and not model.has_graph
    got = {t.name: t for t in model.tensors()}
    for name, arr in arrays.items():
        values = got[name].load()
        assert values.dtype == arr.dtype and values.tobytes() == arr.tobytes()
        if not compressed:
            assert isinstance(values, np.memmap)  # stored members are mapped, not read
    conv = got["conv.weight"]
    assert (conv.role, conv.fan_in, conv.fan_out, conv.unit_axis) == (Role.KERNEL, 27, 72, 0)


def test_object_arrays_are_skipped_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, meta=np.array([{"a": 1}], dtype=object), **sample())
    model = load(path)
    assert ("meta", "object array (pickled Python objects): never loaded") in model.skipped
    assert "fc.weight" in {t.name for t in model.tensors()}


def test_keras_style_names_use_keras_layout(tmp_path: Path) -> None:
    path = tmp_path / "k.npz"
    np.savez(path, **{"dense/kernel": np.ones((3, 5), np.float32), "dense/bias": np.zeros(5, np.float32)})
    model = load(path)
    kernel = next(t for t in model.tensors() if t.role is Role.KERNEL)
    assert kernel.convention is Convention.KERAS
    assert (kernel.fan_in, kernel.fan_out) == (3, 5)
    assert any("Keras/JAX" in n for n in model.notes)


def test_layout_option_overrides(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, **{"fc.weight": np.ones((3, 5), np.float32)})
    model = npz_loader.load(path, "npz", LoadOptions(extra={"layout": "keras"}))
    kernel = model.tensors()[0]
    assert (kernel.fan_in, kernel.fan_out, kernel.unit_axis) == (3, 5, 1)


def test_declared_shape_beyond_stored_bytes_is_skipped(tmp_path: Path) -> None:
    # a .npy header claiming 8 GB inside a tiny member (a decompression/allocation bomb)
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (1073741824, 2)})
    header = buf.getvalue()  # magic + header dict, no data
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bomb.npy", header + b"\0" * 64)
        zf.writestr("ok.npy", _npy(np.ones(3, np.float32)))
    model = load(path)
    reasons = dict(model.skipped)
    assert "declares 8589934592 bytes" in reasons["bomb"]
    assert "bomb" not in {t.name for t in model.tensors()}


def _npy(arr: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_non_npy_members_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "mixed.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.weight.npy", _npy(np.ones((2, 2), np.float32)))
        zf.writestr("readme.txt", b"hello")
    model = load(path)
    assert ("readme.txt", "not a .npy member") in model.skipped
