"""torchvision 0.28's compiled ops here are CUDA-linked: its Python side registers fake kernels
for ``torchvision::nms`` / ``qnms`` at import, which fails unless the schemas exist. Declaring
them first (schemas copied from torchvision/csrc/ops/nms.cpp) lets ``import torchvision`` and
everything that imports it (transformers' image models, timm) work on CPU. No kernel is ever
registered: nothing here runs NMS.

Call :func:`prepare_torchvision` before importing torchvision (tests/conftest.py does, once),
or :func:`torch_or_skip` in a test that needs torch.
"""

from __future__ import annotations

from typing import Any

_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def prepare_torchvision() -> None:
    """Declare the torchvision op schemas torch cannot find (idempotent; no-op without torch)."""
    try:
        import torch
    except ImportError:
        return
    for name, schema in _SCHEMAS.items():
        try:
            torch.library.define(name, schema)
        except RuntimeError:
            pass  # already defined (by torchvision itself, or an earlier call)


def torch_or_skip() -> Any:
    """torch, with torchvision made importable, or the calling test skipped without torch."""
    import pytest

    torch = pytest.importorskip("torch")
    prepare_torchvision()
    return torch
