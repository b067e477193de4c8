"""Finding checkpoints in directories and globs: by content, deterministic, filtered."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from initaudit.discover import DiscoveryError, discover, discover_inputs

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


@pytest.fixture()
def tree(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "models"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    shutil.copy(SAMPLES / "cnn_clean.onnx", root / "b" / "z.onnx")
    shutil.copy(SAMPLES / "cnn_clean.onnx", root / "a" / "y.onnx")
    shutil.copy(SAMPLES / "cnn_clean.onnx", root / "exported_model")  # no extension: content decides
    (root / "notes.txt").write_text("hello")
    (root / "broken.pt").write_text("not a checkpoint")  # a model extension: kept, reported unreadable
    (root / ".git").mkdir()
    shutil.copy(SAMPLES / "cnn_clean.onnx", root / ".git" / "obj.onnx")
    shard = root / "llm"
    shard.mkdir()
    (shard / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    (shard / "model-00001-of-00002.safetensors").write_bytes(b"x")
    return root


def test_directory_is_walked_in_sorted_order_by_content(tree):
    assert discover(["models"]) == ["models/a/y.onnx", "models/b/z.onnx", "models/broken.pt",
                                    "models/exported_model", "models/llm"]


def test_sharded_repository_is_one_input(tree):
    assert discover(["models/llm"]) == ["models/llm"]


def test_include_exclude(tree):
    assert discover(["models"], include=["*.onnx"]) == ["models/a/y.onnx", "models/b/z.onnx"]
    assert discover(["models"], exclude=["a", "*.pt", "llm"]) == ["models/b/z.onnx", "models/exported_model"]
    assert discover(["models"], exclude=["models/b/**"], include=["*.onnx"]) == ["models/a/y.onnx"]


def test_globs_and_explicit_files(tree):
    assert discover(["models/**/*.onnx"]) == ["models/a/y.onnx", "models/b/z.onnx"]
    # explicit files are kept as given (the engine explains unreadable ones), duplicates dropped
    assert discover(["models/notes.txt", "models/b/z.onnx", "models/b/z.onnx", "missing.onnx"]) == [
        "models/notes.txt", "models/b/z.onnx", "missing.onnx"]


def test_nothing_found_is_an_error(tree):
    with pytest.raises(DiscoveryError, match=r"^models/\*\.h5: no file matches this pattern$"):
        discover(["models/*.h5"])
    with pytest.raises(DiscoveryError, match="no checkpoint among the 1 matching path"):
        discover(["models/*.txt"])
    (tree / "empty").mkdir()
    items = discover_inputs(["models/empty", "models/b"])
    assert items[0].path == "models/empty" and "no checkpoint found" in items[0].problem
    assert items[1].path == "models/b/z.onnx" and items[1].problem is None


def test_onnx_external_data_is_not_a_checkpoint(tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    monkeypatch.chdir(tmp_path)
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    (tmp_path / "m").mkdir()
    onnx.save(helper.make_model(graph), str(tmp_path / "m" / "model.onnx"), save_as_external_data=True,
              location="weights.bin", size_threshold=0)
    assert discover(["m"]) == ["m/model.onnx"]
