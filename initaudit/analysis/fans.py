"""Fan-in / fan-out in each framework's convention (init-schemes.md §3).

The frameworks compute fans from the kernel's shape alone, so this is a pure function of the
shape and the layout; loaders pick the layout that matches the tensor they read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..model import Convention


def _prod(dims: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in dims))


def torch_fans(shape: Sequence[int]) -> tuple[int, int]:
    """torch.nn.init._calculate_fan_in_and_fan_out: (out, in, *k) for Linear/Conv.

    ConvTranspose stores (in, out/g, *k) and torch still reads dim 1 as fan-in, which is why its
    fan_in is (out/g)·Πk: we reproduce torch, not the "true" fan.
    """
    if len(shape) < 2:
        raise ValueError("torch fans need a tensor of rank >= 2")
    receptive = _prod(shape[2:])
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def keras_fans(shape: Sequence[int]) -> tuple[int, int]:
    """keras.src.initializers.random_initializers.compute_fans (also JAX/Flax defaults)."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    receptive = _prod(shape[:-2])
    return int(shape[-2]) * receptive, int(shape[-1]) * receptive


def fans(shape: Sequence[int], convention: Convention) -> tuple[int, int]:
    """Fans of a kernel whose layout follows ``convention`` (ONNX Conv = torch layout)."""
    if convention in (Convention.KERAS, Convention.JAX):
        return keras_fans(shape)
    return torch_fans(shape)


def matmul_fans(shape: Sequence[int]) -> tuple[int, int]:
    """ONNX MatMul x @ W with W (in, out), or Gemm without transB."""
    return int(shape[-2]), int(shape[-1])
