"""Damaged GGUF / Flax msgpack / joblib / TF files: one-line errors or skips, never a traceback,
never a hang; each refusal names the format it recognised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from initaudit.api import audit
from initaudit.loaders import detect_format

pytestmark = pytest.mark.frameworks


def _gguf(path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "llama")
    rng = np.random.default_rng(0)
    w.add_tensor("blk.0.ffn_up.weight", rng.normal(0, 0.05, (64, 64)).astype(np.float32))
    w.add_tensor("blk.0.ffn_down.weight", gguf.quants.quantize(
        rng.normal(0, 0.05, (64, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0),
        raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _flax(path: Path) -> None:
    serialization = pytest.importorskip("flax.serialization")
    rng = np.random.default_rng(1)
    path.write_bytes(serialization.to_bytes({"params": {"Dense_0": {
        "kernel": rng.normal(0, 0.1, (64, 32)).astype(np.float32),
        "bias": np.zeros(32, np.float32)}}}))


def _joblib(path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    rng = np.random.default_rng(2)
    joblib.dump({"fc.weight": rng.normal(0, 0.1, (32, 64)).astype(np.float32)}, path)


@pytest.mark.parametrize("make,name,fmt", [(_gguf, "m.gguf", "gguf"),
                                           (_flax, "m.msgpack", "flax-msgpack"),
                                           (_joblib, "m.joblib", "joblib")])
def test_truncations_and_bit_flips_never_crash(tmp_path: Path, make, name: str, fmt: str) -> None:
    good = tmp_path / name
    make(good)
    assert detect_format(good) == fmt
    assert audit(str(good)).files[0].error is None
    data = good.read_bytes()
    rng = np.random.default_rng(3)
    variants = [data[:n] for n in (len(data) // 4, len(data) // 2, len(data) - 7, len(data) - 1)]
    for _ in range(12):
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data), 4):
            flipped[pos] ^= 0xFF
        variants.append(bytes(flipped))
    for i, variant in enumerate(variants):
        bad = tmp_path / f"bad{i}_{name}"
        bad.write_bytes(variant)
        report = audit(str(bad)).files[0]  # never raises
        if report.error is not None:
            assert "\n" not in report.error and len(report.error) < 400, report.error
            assert "Traceback" not in report.error
            # the engine's catch-all for loader bugs says "could not be read (TypeError: ...)"
            assert not report.error.startswith("could not be read ("), report.error


def test_savedmodel_without_variables_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "sm"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")  # schema version 1, no graph
    report = audit(str(folder)).files[0]
    assert report.error is not None and "SavedModel" in report.error
    report = audit(str(folder / "saved_model.pb")).files[0]
    assert "SavedModel" in (report.error or "") and "ONNX" not in (report.error or "")


def test_corrupt_tf_index_is_a_one_line_error(tmp_path: Path) -> None:
    index = tmp_path / "ckpt-1.index"
    footer = b"\x00" * 40 + (0xDB4775248B80FB57).to_bytes(8, "little")
    index.write_bytes(b"\x05garbage" * 10 + footer)
    assert detect_format(index) == "tf-checkpoint"
    report = audit(str(index)).files[0]
    assert report.error is not None and "\n" not in report.error


@pytest.mark.parametrize(("content", "named"), [
    (b"lmgg\x01\x00\x00\x00" + bytes(64), "legacy GGML"),
    (b"tjgg\x03\x00\x00\x00" + bytes(64), "legacy GGML"),
    (b'{"format": "layers-model", "modelTopology": {}, "weightsManifest": []}', "TensorFlow.js"),
    (b'<?xml version="1.0"?>\n<net name="m" version="11">\n<layers></layers></net>\n', "OpenVINO"),
])
def test_recognised_but_unsupported_formats_are_named(tmp_path: Path, content: bytes,
                                                      named: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    report = audit(str(path)).files[0]
    assert report.error and named in report.error and "\n" not in report.error
