"""Format detection cannot be fooled by a byte: each detector checks its full structure."""

from __future__ import annotations

import importlib.util
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from initaudit.discover import DiscoveryStats, discover
from initaudit.loaders import detect_format
from initaudit.loaders.formats import FORMATS, MODEL_EXTENSIONS
from initaudit.model import LoadError, UnsupportedFormat

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def test_table_covers_every_loader_format() -> None:
    names = [f.name for f in FORMATS]
    assert len(names) == len(set(names))
    assert {".onnx", ".safetensors", ".pt", ".keras", ".h5", ".npz"} <= MODEL_EXTENSIONS


@pytest.mark.parametrize("text", ['"""Module docstring."""\nimport os\n', "Bonjour, this is a README\n",
                                  "2,3,4\n5,6,7\n", '{"a": 1}\n', "*.onnx\n", ":: batch\n",
                                  "(\ntext with é accents\n"])
def test_text_files_are_never_a_checkpoint(tmp_path: Path, text: str) -> None:
    path = tmp_path / "file"
    path.write_text(text * 50, encoding="utf-8")
    with pytest.raises(UnsupportedFormat):
        detect_format(path)


# safetensors' own writer makes these files (a test extra-free install has no safetensors)
needs_safetensors = pytest.mark.skipif(importlib.util.find_spec("safetensors") is None,
                                       reason="needs the safetensors library to write the files")


def _safetensors(path: Path, tensors: dict[str, np.ndarray], pad: int) -> int:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata={"pad": "x" * pad})
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


@needs_safetensors
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pad=st.integers(0, 600), n=st.integers(1, 4), dim=st.integers(1, 6), seed=st.integers(0, 99))
def test_safetensors_with_any_header_length_is_safetensors(tmp_path: Path, pad: int, n: int, dim: int,
                                                           seed: int) -> None:
    rng = np.random.default_rng(seed)
    tensors = {f"layer{i}.weight": rng.standard_normal((dim, i + 1)).astype(np.float32) for i in range(n)}
    path = tmp_path / "m.bin"
    _safetensors(path, tensors, pad)
    assert detect_format(path) == "safetensors"
    assert detect_format(path, strict=True) == "safetensors"


@needs_safetensors
def test_safetensors_header_length_with_low_byte_0x80(tmp_path: Path) -> None:
    """1 file in 256 has a header length whose first byte looks like pickle's PROTO opcode."""
    path = tmp_path / "model.safetensors"
    for pad in range(400):
        n = _safetensors(path, {"w": np.ones((3, 3), np.float32)}, pad)
        if n & 0xFF == 0x80:
            break
    else:  # pragma: no cover
        pytest.fail("no header length with low byte 0x80 found")
    assert path.read_bytes()[0] == 0x80
    assert detect_format(path) == "safetensors"
    from initaudit.loaders import load

    assert [t.name for t in load(path).tensors()] == ["w"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(protocol=st.integers(2, 5), size=st.integers(1, 3000))
def test_pickles_are_pickles(tmp_path: Path, protocol: int, size: int) -> None:
    path = tmp_path / "state.pkl"
    path.write_bytes(pickle.dumps({"w": list(range(size)), "name": "x" * (size % 50)}, protocol=protocol))
    assert detect_format(path, strict=True) == "pytorch-legacy"


def test_onnx_needs_a_model_proto_with_a_graph(tmp_path: Path) -> None:
    onnx_bytes = (SAMPLES / "cnn_clean.onnx").read_bytes()
    path = tmp_path / "m"
    path.write_bytes(onnx_bytes)
    assert detect_format(path, strict=True) == "onnx"
    path.write_bytes(onnx_bytes[:-10])  # truncated: the top-level walk overruns the file
    with pytest.raises(UnsupportedFormat):
        detect_format(path, strict=True)
    path.write_bytes(b"\x08\x07\x12\x04abcd")  # ir_version and a producer, no graph
    with pytest.raises(UnsupportedFormat):
        detect_format(path, strict=True)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_never_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    with pytest.raises(LoadError, match="FIFO"):
        detect_format(fifo)
    (tmp_path / "m.onnx").write_bytes((SAMPLES / "cnn_clean.onnx").read_bytes())
    stats = DiscoveryStats()
    assert discover([str(tmp_path)], stats=stats) == [str(tmp_path / "m.onnx")]
    assert stats.not_regular == [(str(tmp_path / "pipe.onnx"), "a FIFO")]


def test_discovery_honours_gitignore_and_default_skips(tmp_path: Path) -> None:
    model = (SAMPLES / "cnn_clean.onnx").read_bytes()
    repo = tmp_path / "repo"
    for rel in ("a.onnx", "build/lib/b.onnx", "venv/lib/c.onnx", "data/keep/d.onnx",
                "data/drop/e.onnx", "node_modules/x/f.onnx", "dist/g.onnx", "pkg.egg-info/h.onnx"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(model)
    (repo / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (repo / ".git").mkdir()
    (repo / ".gitignore").write_text("data/*\n!data/keep/\n")
    (repo / "notes.md").write_text("Bonjour\n")
    stats = DiscoveryStats()
    found = discover([str(repo)], stats=stats)
    assert [Path(p).relative_to(repo).as_posix() for p in found] == ["a.onnx", "data/keep/d.onnx"]
    assert stats.models == 2 and stats.looked_at == 3 and stats.ignored >= 5
    everything = discover([str(repo)], respect_ignore=False)
    assert len(everything) == 8
    # a folder named explicitly is walked even when ignored
    assert discover([str(repo / "build")]) == [str(repo / "build" / "lib" / "b.onnx")]
