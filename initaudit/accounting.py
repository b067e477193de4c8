"""The shared accounting check: what a file stores against what the audit analysed.

Loaders enumerate every stored tensor (``LoadedModel.inventory``) independently of which ones
they map to layers; the engine analyses the mapped ones. :func:`account` compares the two, so a
tensor a loader forgot to map turns the file ``partial`` (category ``unmapped``) instead of
being silently left out of an "ok" verdict. No loader decides completeness on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .model import (
    LoadedModel,
    SkippedTensor,
    SkipReason,
    StoredTensor,
    WeightTensor,
    is_weight_like,
)
from .report import Coverage

# words of a legacy (name, reason) skip entry -> its category; first match wins. Loaders that
# call LoadedModel.skip() or set StoredTensor.skip never go through this table.
_KEYWORDS: tuple[tuple[tuple[str, ...], SkipReason], ...] = (
    (("time budget",), SkipReason.TIME_BUDGET),
    (
        ("escapes", "unsafe", "symlink", "object array", "pickled", "never loaded"),
        SkipReason.UNSAFE,
    ),
    (("exceeds", "limit", "too large"), SkipReason.TOO_LARGE),
    (("quantiz", "packed"), SkipReason.QUANTIZED_NOT_DECODED),
    (
        ("subgraph", "control flow", "control-flow", "if branch", "loop body"),
        SkipReason.CONTROL_FLOW,
    ),
    (("dtype", "element type", "not a plain numeric"), SkipReason.UNSUPPORTED_DTYPE),
    (
        (
            "bytes but",
            "values but",
            "too short",
            "does not exist",
            "cannot be examined",
            "absent",
            "missing",
            "truncated",
            "unreadable",
            "corrupt",
            "outside the model directory",
            "cannot dequantize",
            "without a folder",
            "not stored",
            "cannot be read",
        ),
        SkipReason.UNREADABLE,
    ),
    (("not supported",), SkipReason.UNSUPPORTED_DTYPE),
)

UNMAPPED_REASON = "stored in the file but not mapped to any layer: not analysed"
NOT_ENUMERATED_NOTE = (
    "the {fmt} loader does not enumerate every stored tensor yet: coverage "
    "counts only the tensors it mapped, so it cannot show that nothing was "
    "left unread (status partial)"
)


def categorise(name: str, reason: str, model: LoadedModel | None = None) -> SkipReason:
    """The category of a skip entry: the loader's own, else from its words, else OTHER."""
    if model is not None:
        cat = model.skip_categories.get(name)
        if cat is not None:
            return cat
        if any(u.location == name for u in model.unsafe):
            return SkipReason.UNSAFE
    text = reason.lower()
    for words, cat in _KEYWORDS:
        if any(w in text for w in words):
            return cat
    return SkipReason.OTHER


def tensor_weight_like(t: WeightTensor) -> bool:
    from .model import Role

    return is_weight_like(t.shape, t.dtype, embedding=t.role is Role.EMBEDDING)


def stored_nbytes(shape: Iterable[int], dtype: str) -> int:
    """Bytes of ``shape`` elements of ``dtype`` (a name; sub-byte and ml_dtypes included)."""
    import numpy as np

    n = 1
    for dim in shape:
        n *= int(dim)
    name = dtype.lower().split(" ")[0]
    if name in ("int4", "uint4", "float4e2m1", "float4_e2m1fn"):
        return (n + 1) // 2
    try:
        return n * np.dtype(name).itemsize
    except TypeError:
        return n * (1 if "8" in name else 2 if "16" in name else 4)


@dataclass
class Accounting:
    """The outcome of :func:`account`: coverage plus the skip entries it adds."""

    coverage: Coverage
    # weight-like tensors nobody reported as skipped
    skipped: list[SkippedTensor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def account(
    model: LoadedModel,
    analysed: Iterable[WeightTensor],
    failed: Iterable[WeightTensor],
    already_skipped: Iterable[str],
) -> Accounting:
    """Compare the loader's enumeration with the tensors the engine analysed.

    ``analysed``: tensors whose values went through the analysis; ``failed``: tensors the engine
    tried and could not finish (unreadable, time budget); ``already_skipped``: names already in
    the report's ``skipped`` list (they are not listed twice).
    """
    analysed = list(analysed)
    failed = list(failed)
    if model.inventory is None:
        return _without_inventory(model, analysed, failed)
    bad = {t.stored_name for t in failed}
    done = {t.stored_name for t in analysed} - bad
    listed = set(already_skipped)
    out = Accounting(coverage=Coverage(0, 0, 0, 0))
    w_present = w_done = b_present = b_done = t_done = 0
    for st in model.inventory:
        # several stored parts may build one analysed kernel (weight_g/weight_v, weight_orig x
        # weight_mask, GPTQ qweight/scales/qzeros): each is listed under the kernel's name and
        # each was read to build it
        ok = st.name in done
        t_done += ok
        if not st.weight_like:
            continue
        w_present += 1
        b_present += st.nbytes
        if ok:
            w_done += 1
            b_done += st.nbytes
        elif st.name not in listed:
            cat = st.skip or model.skip_categories.get(st.name) or SkipReason.UNMAPPED
            out.skipped.append(SkippedTensor(st.name, st.detail or _default_reason(cat), cat))
            listed.add(st.name)
    out.coverage = Coverage(
        weights_present=w_present,
        weights_analysed=w_done,
        bytes_present=b_present,
        bytes_analysed=b_done,
        tensors_present=len(model.inventory),
        tensors_analysed=t_done,
    )
    return out


def _default_reason(cat: SkipReason) -> str:
    if cat is SkipReason.UNMAPPED:
        return UNMAPPED_REASON
    return f"not analysed ({cat.value})"


def _without_inventory(
    model: LoadedModel, analysed: list[WeightTensor], failed: list[WeightTensor]
) -> Accounting:
    """What can be said without an enumeration: the mapped tensors only, never "complete"."""
    w_present = w_done = b_present = b_done = 0
    done = {id(t) for t in analysed}
    for t in analysed + failed:
        if not tensor_weight_like(t):
            continue
        size = stored_nbytes(t.shape, t.dtype)
        w_present += 1
        b_present += size
        if id(t) in done:
            w_done += 1
            b_done += size
    cov = Coverage(
        weights_present=w_present,
        weights_analysed=w_done,
        bytes_present=b_present,
        bytes_analysed=b_done,
        tensors_present=len(analysed) + len(failed),
        tensors_analysed=len(analysed),
        enumerated=False,
    )
    return Accounting(coverage=cov, notes=[NOT_ENUMERATED_NOTE.format(fmt=model.format)])


def inventory_entry(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    *,
    nbytes: int | None = None,
    embedding: bool = False,
    quantized: bool = False,
    skip: SkipReason | None = None,
    detail: str | None = None,
) -> StoredTensor:
    """A StoredTensor with weight-likeness decided by :func:`is_weight_like` (quantized integer
    storage counts as weight-like when ``quantized``)."""
    shape = tuple(int(d) for d in shape)
    probe = f"{dtype} (quantized)" if quantized else dtype
    return StoredTensor(
        name=name,
        shape=shape,
        dtype=dtype,
        nbytes=stored_nbytes(shape, dtype) if nbytes is None else int(nbytes),
        weight_like=is_weight_like(shape, probe, embedding=embedding),
        skip=skip,
        detail=detail,
    )


def inventory_from_mapped(model: LoadedModel) -> list[StoredTensor]:
    """An inventory equal to the mapped tensors: for models built by hand (tests, in-memory
    objects) where the mapped tensors *are* the whole container."""
    return [
        StoredTensor(
            name=t.stored_name,
            shape=tuple(t.shape),
            dtype=t.dtype,
            nbytes=stored_nbytes(t.shape, t.dtype),
            weight_like=tensor_weight_like(t),
        )
        for t in model.tensors()
    ]
