"""Keras weights files: every HDF5 dataset accounted for, RNN cells named without a config.

- ``inventory``: every dataset of the weights file, enumerated independently of layer mapping
  (Keras 3 ``layers/``/``vars/``/attribute groups, Keras 2 ``model_weights``); a dataset no layer
  claimed is reported as ``unmapped`` (the file is then partial). Optimizer slots
  (``optimizer/``, ``optimizer_weights/``) are training state, not weights.
- ``name_rnn_cells``: a weights-only file (``.weights.h5``) has no config, so a Keras 3 RNN cell
  stores ``vars/0..2`` without names. keras/src/layers/rnn/{lstm,gru,simple_rnn}.py ``build``
  creates them in the order kernel (in, g*u), recurrent_kernel (u, g*u), bias (g*u,) — GRU with
  ``reset_after`` (the default) a (2, g*u) bias. When the shapes say exactly that, the three get
  their names, so the bias is not audited as a kernel (a zero GRU bias read as a (2, 3u) kernel
  was a false constant-weights error) and the recurrent kernel is audited as recurrent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import h5py

from ..model import LoadedModel, SkipReason, StoredTensor, is_weight_like

_TRAINING_GROUPS = ("optimizer", "optimizer_weights")
_GATES = (4, 3, 1)  # LSTM, GRU, SimpleRNN


def name_rnn_cells(found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Give unnamed (index-only) RNN cell variables their Keras names when shapes prove it."""
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
    for i, (var, _) in enumerate(found):
        if var.leaf is None and var.index is not None:
            groups[(var.node, var.sub)].append(i)
    out = list(found)
    for idxs in groups.values():
        if len(idxs) != 3:
            continue
        by_index = {found[i][0].index: i for i in idxs}
        if set(by_index) != {0, 1, 2}:
            continue
        k, r, b = (found[by_index[j]][0].shape for j in (0, 1, 2))
        if len(k) != 2 or len(r) != 2 or r[0] == 0 or r[1] % r[0]:
            continue
        gates = r[1] // r[0]
        if gates not in _GATES or k[1] != r[1]:
            continue
        if not (b == (r[1],) or b == (2, r[1])):
            continue
        for j, leaf in ((0, "kernel"), (1, "recurrent_kernel"), (2, "bias")):
            i = by_index[j]
            var, ds = out[i]
            out[i] = (replace(var, leaf=leaf, index=None), ds)
    return out


def _datasets(walker: Any, group: h5py.Group) -> Iterator[tuple[str, h5py.Dataset]]:
    yield from walker.datasets(group)


def inventory(
    model: LoadedModel, f: h5py.File, walker: Any, h5names: dict[str, str]
) -> list[StoredTensor]:
    """Every dataset of ``f``; ``h5names`` maps a dataset path to the tensor name it was
    analysed under. Unclaimed weight-like datasets go to ``model.skipped`` as unmapped."""
    analysed = {t.name for t in model.tensors()}
    skipped = {name for name, _ in model.skipped}
    out: list[StoredTensor] = []
    for rel, ds in _datasets(walker, f):
        path = ds.name
        shape = tuple(int(d) for d in (ds.shape or ()))
        dtype = str(ds.dtype)
        nbytes = int(ds.size or 0) * int(ds.dtype.itemsize)
        top = rel.split("/", 1)[0]
        under_training = top in _TRAINING_GROUPS or "/optimizer_weights/" in path
        name = h5names.get(path, path)
        if under_training:
            out.append(
                StoredTensor(
                    path, shape, dtype, nbytes, False, detail=f"training state under {top}/"
                )
            )
            continue
        weight_like = is_weight_like(shape, dtype)
        if name in analysed:
            out.append(StoredTensor(name, shape, dtype, nbytes, weight_like))
            continue
        reason = next((r for n, r in model.skipped if n == name), None)
        if reason is not None:
            cat = SkipReason.UNSUPPORTED_DTYPE if "dtype" in reason else SkipReason.OTHER
            out.append(StoredTensor(name, shape, dtype, nbytes, weight_like, cat, reason))
            continue
        detail = "HDF5 dataset no Keras layer or variable claims"
        out.append(
            StoredTensor(name, shape, dtype, nbytes, weight_like, SkipReason.UNMAPPED, detail)
        )
        if weight_like and name not in skipped:
            model.skipped.append((name, detail))
    return out
