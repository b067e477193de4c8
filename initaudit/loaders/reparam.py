"""Reparametrised torch weights rebuilt into the kernel the layer actually multiplies by.

A state_dict of a weight-normalised or pruned layer does not store ``weight``; it stores the
factors torch recombines in a forward pre-hook / parametrization:

- ``torch.nn.utils.weight_norm`` (legacy hook): ``weight_g`` and ``weight_v``;
  ``w = g * v / ||v||`` with the norm over every axis except ``dim`` (torch/nn/utils/weight_norm.py,
  ``_weight_norm(v, g, dim)``; ``g`` keeps size 1 on the reduced axes, ``dim=None`` -> scalar g).
- ``torch.nn.utils.parametrizations.weight_norm``: ``parametrizations.weight.original0`` (g) and
  ``parametrizations.weight.original1`` (v), same formula (torch/nn/utils/parametrizations.py,
  ``_WeightNorm.forward``).
- ``torch.nn.utils.prune``: ``weight_orig`` and the buffer ``weight_mask``; ``w = orig * mask``
  (torch/nn/utils/prune.py, ``BasePruningMethod.apply_mask``).

The rebuilt tensor is analysed under the name ``<module>.weight`` (what the layer's state_dict
would hold without the reparametrisation); the stored factors are accounted to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from ..model import Loader
from .statedict import FlatTensor

_WN_PARAM = (".parametrizations.weight.original0", ".parametrizations.weight.original1")


@dataclass(frozen=True)
class Rebuilt:
    name: str  # the effective tensor's name (``<module>.weight``)
    kind: str  # "weight-norm" | "pruning"
    parts: tuple[str, ...]  # stored tensor names it was rebuilt from


def _weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if g.ndim == v.ndim:
        axes = tuple(i for i in range(v.ndim) if g.shape[i] == 1)
    else:  # dim=None: one scalar g for the whole tensor
        axes = tuple(range(v.ndim))
    norm = np.sqrt(np.sum(v * v, axis=axes, keepdims=True)) if axes else np.abs(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        w: np.ndarray = g * v / norm
    return w.astype(np.float32)


def _wn_shapes_ok(g: FlatTensor, v: FlatTensor) -> bool:
    if len(v.shape) < 1:
        return False
    if len(g.shape) == 0 or all(int(d) == 1 for d in g.shape):
        return True
    return len(g.shape) == len(v.shape) and all(
        int(a) == int(b) or int(a) == 1 for a, b in zip(g.shape, v.shape)
    )


def reconstruct(flats: list[FlatTensor]) -> tuple[list[FlatTensor], list[Rebuilt]]:
    """Replace factor pairs by their product; returns (new flats in file order, what was rebuilt)."""
    by_name = {f.name: f for f in flats}
    replace: dict[str, FlatTensor] = {}  # first factor's name -> rebuilt tensor
    drop: set[str] = set()
    rebuilt: list[Rebuilt] = []
    for f in flats:
        pair: tuple[str, str] | None = None
        kind = ""
        if f.name.endswith(".weight_g") or f.name == "weight_g":
            base = f.name[: -len("weight_g")]
            pair, kind = (f.name, base + "weight_v"), "weight-norm"
            target = base + "weight"
        elif f.name.endswith(_WN_PARAM[0]):
            base = f.name[: -len(_WN_PARAM[0])]
            pair, kind = (f.name, base + _WN_PARAM[1]), "weight-norm"
            target = base + ".weight"
        elif f.name.endswith(".weight_orig") or f.name == "weight_orig":
            base = f.name[: -len("weight_orig")]
            pair, kind = (f.name, base + "weight_mask"), "pruning"
            target = base + "weight"
        if pair is None or pair[1] not in by_name or target in by_name:
            continue
        a, b = by_name[pair[0]], by_name[pair[1]]
        if kind == "weight-norm":
            if not _wn_shapes_ok(a, b):
                continue
            g_load, v_load = a.load, b.load
            new = FlatTensor(
                target,
                tuple(b.shape),
                "float32",
                cast(Loader, lambda g_load=g_load, v_load=v_load: _weight_norm(g_load(), v_load())),
            )
            first = min(pair, key=lambda n: flats.index(by_name[n]))
        else:
            if tuple(a.shape) != tuple(b.shape):
                continue
            o_load, m_load = a.load, b.load
            new = FlatTensor(
                target,
                tuple(a.shape),
                "float32",
                cast(
                    Loader,
                    lambda o_load=o_load, m_load=m_load: (
                        np.asarray(o_load()) * np.asarray(m_load())
                    ).astype(np.float32),
                ),
            )
            first = pair[0]
        replace[first] = new
        drop.update(pair)
        rebuilt.append(Rebuilt(target, kind, pair))
    out: list[FlatTensor] = []
    for f in flats:
        if f.name in replace:
            out.append(replace[f.name])
        elif f.name not in drop:
            out.append(f)
    return out, rebuilt
