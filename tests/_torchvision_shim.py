"""Make ``import torchvision`` work next to the CPU build of torch used in CI.

The torchvision 0.28.0 wheel the registry serves is linked against CUDA: next to torch 2.13.0+cpu
its compiled ops do not load, and ``import torchvision`` then fails while registering fake
kernels for ``torchvision::nms`` ("operator torchvision::nms does not exist"). transformers imports
torchvision whenever it is installed, so every transformers test fails with it. Declaring the two
operator schemas (copied from torchvision/csrc/ops/nms.cpp and quantized/cpu/qnms_kernel.cpp)
before torchvision is imported is enough: the model constructors never call these ops.
"""

from __future__ import annotations

import importlib.util


def install() -> None:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        return
    import torch

    schema = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    for name in ("nms", "qnms"):
        try:
            getattr(torch.ops.torchvision, name)  # already there (a CPU torchvision build)
        except (AttributeError, RuntimeError):
            try:
                torch.library.define(f"torchvision::{name}", schema)
            except RuntimeError:
                pass  # defined meanwhile
