"""safetensors loader: real files from safetensors/torch, hand-made hostile headers, shards."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from initaudit.loaders import LoadOptions, load
from initaudit.model import LoadError, Role

ROOT = Path(__file__).resolve().parents[1]

# Reads a checkpoint with initaudit in a fresh interpreter and dumps what a user would see,
# plus each tensor's raw bytes, so the test can prove no framework was imported to read it.
READER = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from initaudit.loaders import load
m = load(sys.argv[2])
out = {"format": m.format, "framework": m.framework, "unsafe": [u.what for u in m.unsafe],
       "skipped": m.skipped, "layers": {}, "tensors": {}}
blobs = {}
for layer in m.layers:
    a = layer.activation
    out["layers"][layer.name] = {"op": layer.op, "act": a.kind.value if a else None,
                                 "param": a.param if a else None, "source": a.source if a else None}
for i, t in enumerate(m.tensors()):
    arr = np.ascontiguousarray(t.load())
    blobs[f"t{i}"] = np.frombuffer(arr.tobytes(), np.uint8)
    out["tensors"][t.name] = {"i": i, "role": t.role.value, "shape": list(t.shape), "dtype": t.dtype,
                              "fan_in": t.fan_in, "fan_out": t.fan_out, "unit_axis": t.unit_axis}
np.savez(sys.argv[3], **blobs)
out["forbidden"] = sorted(k for k in ("torch", "keras", "jax", "tensorflow", "transformers",
                                      "safetensors") if k in sys.modules)
print(json.dumps(out))
"""


def read_isolated(path: Path, tmp_path: Path) -> tuple[dict, dict[str, bytes]]:
    blob_file = tmp_path / "blobs.npz"
    proc = subprocess.run([sys.executable, "-c", READER, str(ROOT), str(path), str(blob_file)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["forbidden"] == [], f"reading imported {out['forbidden']}"
    with np.load(blob_file) as npz:
        raw = {name: npz[f"t{info['i']}"].tobytes() for name, info in out["tensors"].items()}
    return out, raw


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], *, header_override: dict | None = None,
                      trailing: bytes = b"") -> None:
    """A minimal writer (the format is simple), so hostile variants are easy to make."""
    codes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}
    header: dict = {}
    data = b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": codes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if header_override is not None:
        header = header_override
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data + trailing)


def rng_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"fc1.weight": rng.normal(0, 0.1, (16, 8)).astype(np.float32),
            "fc1.bias": np.zeros(16, np.float32),
            "fc2.weight": rng.normal(0, 0.1, (4, 16)).astype(np.float32)}


# --------------------------------------------------------------------------- valid files


def test_handwritten_file_maps_lazily_with_torch_fans(tmp_path: Path) -> None:
    tensors = rng_tensors()
    path = tmp_path / "m.safetensors"
    write_safetensors(path, tensors)
    model = load(path)
    assert model.format == "safetensors" and not model.has_graph
    fc1 = model.layer("fc1")
    kernel = next(t for t in fc1.tensors if t.role is Role.KERNEL)
    assert (kernel.fan_in, kernel.fan_out, kernel.unit_axis) == (8, 16, 0)
    values = kernel.load()
    assert isinstance(values, np.memmap)
    assert np.array_equal(values, tensors["fc1.weight"])
    assert fc1.activation is None  # no config.json: unknown, never guessed


@pytest.mark.frameworks
def test_torch_written_bf16_f16_f32_bit_identical(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    sd = {"a.weight": torch.randn(32, 16).bfloat16(), "b.weight": torch.randn(8, 32).half(),
          "b.bias": torch.randn(8), "conv.weight": torch.randn(4, 3, 3, 3),
          "f8.weight": torch.randn(4, 4).to(torch.float8_e4m3fn)}
    path = tmp_path / "model.safetensors"
    st.save_file(sd, str(path))
    out, raw = read_isolated(path, tmp_path)
    for name, tensor in sd.items():
        expected = tensor.contiguous().view(torch.uint8).numpy().tobytes()
        assert raw[name] == expected, name
    assert out["tensors"]["a.weight"]["dtype"] == "bfloat16"
    assert out["tensors"]["f8.weight"]["dtype"] == "float8_e4m3fn"
    conv = out["tensors"]["conv.weight"]
    assert (conv["fan_in"], conv["fan_out"]) == (27, 36)


@pytest.mark.frameworks
def test_sharded_directory_with_index(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    tensors = rng_tensors()
    st.save_file({"fc1.weight": tensors["fc1.weight"], "fc1.bias": tensors["fc1.bias"]},
                 str(tmp_path / "model-00001-of-00002.safetensors"))
    st.save_file({"fc2.weight": tensors["fc2.weight"]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"metadata": {"total_size": 0}, "weight_map": {
        "fc1.weight": "model-00001-of-00002.safetensors",
        "fc1.bias": "model-00001-of-00002.safetensors",
        "fc2.weight": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load(tmp_path)
    assert model.format == "safetensors-sharded"
    got = {t.name: np.asarray(t.load()) for t in model.tensors()}
    assert set(got) == set(tensors)
    for name, arr in tensors.items():
        assert np.array_equal(got[name], arr)


def test_shard_path_escaping_directory_is_unsafe_and_skipped(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    tensors = rng_tensors()
    write_safetensors(model_dir / "ok.safetensors", {"fc1.weight": tensors["fc1.weight"]})
    write_safetensors(tmp_path / "outside.safetensors", {"fc2.weight": tensors["fc2.weight"]})
    index = {"weight_map": {"fc1.weight": "ok.safetensors", "fc2.weight": "../outside.safetensors"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load(model_dir)
    assert [t.name for t in model.tensors()] == ["fc1.weight"]
    assert any("../outside.safetensors" in u.what for u in model.unsafe)
    assert ("fc2.weight", "shard '../outside.safetensors' is outside the model directory") in model.skipped


def test_missing_shard_is_a_load_error(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"x.weight": np.ones((2, 2), np.float32)})
    index = {"weight_map": {"x.weight": "a.safetensors", "y.weight": "b.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(LoadError, match="b.safetensors.*missing"):
        load(tmp_path)


# --------------------------------------------------------------------------- hostile headers


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_corrupt_json_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    blob = b'{"a": {"dtype": "F32", '
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 16)
    with pytest.raises(LoadError) as exc:
        load(path)
    assert "not valid JSON" in _one_line(exc)


def test_overlapping_offsets(tmp_path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    path = tmp_path / "overlap.safetensors"
    write_safetensors(path, {}, header_override=header, trailing=b"\0" * 24)
    with pytest.raises(LoadError) as exc:
        load(path)
    assert "overlaps" in _one_line(exc)


def test_declared_size_beyond_file(tmp_path: Path) -> None:
    # a "resource bomb": shape says 4 GB, the file holds 16 bytes
    header = {"a": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 4 << 30]}}
    path = tmp_path / "bomb.safetensors"
    write_safetensors(path, {}, header_override=header, trailing=b"\0" * 16)
    with pytest.raises(LoadError) as exc:
        load(path)
    assert "file holds only 16" in _one_line(exc)


def test_header_length_beyond_file(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b'{"a": 1}')
    from initaudit.loaders import (
        safetensors_loader,  # detection already refuses it; the loader must too
    )
    with pytest.raises(LoadError) as exc:
        safetensors_loader.load(path, "safetensors", LoadOptions())
    assert "header declares 10000 bytes" in _one_line(exc)


@pytest.mark.parametrize("entry, message", [
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}, "needs 12 bytes"),
    ({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}, "invalid shape"),
    ({"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}, "invalid shape"),
    ({"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}, "invalid data_offsets"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}, "gap"),
    ({"shape": [4], "data_offsets": [0, 16]}, "no dtype"),
])
def test_invalid_entries(tmp_path: Path, entry: dict, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    write_safetensors(path, {}, header_override={"a": entry}, trailing=b"\0" * 16)
    with pytest.raises(LoadError, match=message):
        load(path)


def test_trailing_bytes_belong_to_no_tensor(tmp_path: Path) -> None:
    path = tmp_path / "trail.safetensors"
    write_safetensors(path, {"a": np.ones(4, np.float32)}, trailing=b"\0" * 8)
    with pytest.raises(LoadError, match="trailing bytes"):
        load(path)


def test_unknown_dtype_is_skipped_not_guessed(tmp_path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "q": {"dtype": "F4", "shape": [8], "data_offsets": [8, 12]}}
    path = tmp_path / "f4.safetensors"
    write_safetensors(path, {}, header_override=header, trailing=b"\0" * 12)
    model = load(path)
    assert ("q", "safetensors dtype F4 is not supported") in model.skipped


def test_per_tensor_limit(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    write_safetensors(path, rng_tensors())
    from initaudit.loaders import safetensors_loader
    model = safetensors_loader.load(path, "safetensors", LoadOptions(max_tensor_bytes=100))
    assert {name for name, _ in model.skipped} == {"fc1.weight", "fc2.weight"}
