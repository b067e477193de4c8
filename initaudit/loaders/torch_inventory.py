"""Every tensor a torch pickle references, enumerated without recognising a single layer.

The state-dict selection (``torch_loader._select_weights``) decides what is analysed; this module
walks the *whole* unpickled object independently of it, so a tensor the selection never reaches
(an EMA copy, a tensor inside a custom object, a quantized packed parameter) is still listed in
``LoadedModel.inventory`` and the file cannot be called ``ok`` about it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..model import LoadedModel, SkipReason, StoredTensor, is_weight_like
from . import _pickle as P
from .reparam import Rebuilt

# state groups of an nn.Module that state_dict naming leaves out of the dotted path
_MODULE_GROUPS = frozenset({"_parameters", "_buffers", "_modules"})


@dataclass(frozen=True)
class Found:
    path: str  # dotted path from the checkpoint root (state_dict naming inside modules)
    value: Any  # TensorRef | InlineArray | UnsupportedTensor
    top_key: str | None  # first key under the root dict, None when the root is not a dict


def _is_tensor(v: Any) -> bool:
    return isinstance(v, (P.TensorRef, P.InlineArray, P.UnsupportedTensor))


def walk_all(root: Any, tick: Callable[[int], None]) -> list[Found]:
    """Every tensor object under ``root`` once (first path wins), in traversal order."""
    out: list[Found] = []
    seen: set[int] = set()

    def join(prefix: str, key: Any) -> str:
        return f"{prefix}.{key}" if prefix else str(key)

    def visit(obj: Any, path: str, top: str | None, depth: int) -> Iterator[None]:
        tick(depth)
        obj = P.unwrap(obj)
        if _is_tensor(obj):
            if id(obj) not in seen:
                seen.add(id(obj))
                out.append(Found(path or "tensor", obj, top))
            return
        if not isinstance(obj, (dict, list, tuple, P.Stub)) or id(obj) in seen:
            return
        seen.add(id(obj))
        children: list[tuple[str, Any, str | None]] = []
        if isinstance(obj, P.Stub):
            for k, v in obj.state.items() if isinstance(obj.state, dict) else ():
                if k in _MODULE_GROUPS and isinstance(v, dict):
                    children.extend((join(path, kk), vv, top) for kk, vv in v.items())
                else:
                    children.append((join(path, k), v, top))
            children.extend((join(path, k), v, top) for k, v in obj.items.items())
            children.extend((join(path, i), v, top) for i, v in enumerate(obj.list_items))
            children.extend((join(path, f"arg{i}"), v, top) for i, v in enumerate(obj.args))
            if not isinstance(obj.state, dict) and obj.state is not None:
                children.append((path, obj.state, top))
        elif isinstance(obj, dict):
            for k, v in obj.items():
                children.append((join(path, k), v, top if top is not None or depth else str(k)))
            extra = getattr(obj, "state", None)
            if extra is not None:
                children.append((path, extra, top))
        else:
            children.extend((join(path, i), v, top) for i, v in enumerate(obj))
        for p, v, t in children:
            yield from visit(v, p, t, depth + 1)

    for _ in visit(root, "", None, 0):
        pass
    return out


def stored(
    found: Found,
    *,
    name: str,
    itemsize: Callable[[str], int],
    weight_like: bool | None = None,
    skip: SkipReason | None = None,
    detail: str | None = None,
) -> StoredTensor:
    """The StoredTensor record of one found tensor."""
    v = found.value
    if isinstance(v, P.TensorRef):
        shape, dtype = tuple(int(x) for x in v.size), str(v.dtype)
        nbytes = _numel(shape) * itemsize(dtype)
        wl = is_weight_like(shape, dtype) if weight_like is None else weight_like
    elif isinstance(v, P.InlineArray):
        shape, dtype = tuple(int(x) for x in v.array.shape), str(v.dtype)
        nbytes = int(v.array.nbytes)
        wl = is_weight_like(shape, dtype) if weight_like is None else weight_like
    else:  # UnsupportedTensor: a quantized/sparse/nested tensor; its shape is not decoded
        shape, dtype, nbytes = (), "unsupported", 0
        # fail closed: an undecoded tensor rebuilt by torch is a weight until shown otherwise
        wl = True if weight_like is None else weight_like
    return StoredTensor(
        name=name, shape=shape, dtype=dtype, nbytes=nbytes, weight_like=wl, skip=skip, detail=detail
    )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def skip_category(reason: str) -> SkipReason:
    """The SkipReason of a materialisation failure message (torch_loader._materialise)."""
    r = reason.lower()
    if "qtensor" in r or "quantiz" in r or "packed" in r:
        return SkipReason.QUANTIZED_NOT_DECODED
    if "dtype" in r:
        return SkipReason.UNSUPPORTED_DTYPE
    if "outside this pickle" in r or "missing" in r:
        return SkipReason.UNREADABLE
    return SkipReason.OTHER


def build(
    model: LoadedModel,
    root: Any,
    entries: list[Any],
    rebuilt: list[Rebuilt],
    skip_keys: frozenset[str],
    itemsize: Callable[[str], int],
    tick: Callable[[int], None],
    storages: dict[str, int] | None = None,
) -> list[StoredTensor]:
    """The inventory of a pickled checkpoint: every tensor under ``root``, each either accounted
    to the name it is analysed under or carrying the reason it is not.

    Weight-like tensors that nothing analyses and no earlier step skipped are added to
    ``model.skipped`` here (category ``unmapped``), so the file is partial even before the
    engine's own inventory check runs.
    """
    analysed = {t.name for t in model.tensors()}
    entry_name = {id(e.value): e.name for e in entries}
    into = {part: r.name for r in rebuilt for part in r.parts}
    reasons = dict(model.skipped)
    out: list[StoredTensor] = []
    found_all = walk_all(root, tick)
    for found in found_all:
        ename = entry_name.get(id(found.value))
        if ename is not None:
            name = into.get(ename, ename)
            if name in analysed:
                out.append(stored(found, name=name, itemsize=itemsize))
                continue
            if ename in reasons:
                out.append(
                    stored(
                        found,
                        name=ename,
                        itemsize=itemsize,
                        skip=skip_category(reasons[ename]),
                        detail=reasons[ename],
                    )
                )
                continue
            rec = stored(
                found,
                name=ename,
                itemsize=itemsize,
                skip=SkipReason.UNMAPPED,
                detail="selected but never mapped to a layer",
            )
        elif found.path in analysed and isinstance(found.value, P.TensorRef):
            # a module attribute holding the tensor a hook computes from stored factors (prune
            # keeps ``weight`` = orig * mask beside weight_orig): the analysed tensor's values
            out.append(
                stored(
                    found,
                    name=found.path,
                    itemsize=itemsize,
                    detail="module attribute recomputed from the analysed factors",
                )
            )
            continue
        elif found.top_key is not None and found.top_key in skip_keys:
            # optimizer moments, scaler state...: stored, but not weights an init is about
            out.append(
                stored(
                    found,
                    name=found.path,
                    itemsize=itemsize,
                    weight_like=False,
                    detail=f"training state under checkpoint[{found.top_key!r}]",
                )
            )
            continue
        else:
            rec = stored(
                found,
                name=found.path,
                itemsize=itemsize,
                skip=SkipReason.UNMAPPED,
                detail="not reached by the state-dict selection",
            )
        if isinstance(found.value, P.UnsupportedTensor):
            rec = StoredTensor(
                rec.name,
                rec.shape,
                rec.dtype,
                rec.nbytes,
                rec.weight_like,
                skip_category(found.value.reason),
                found.value.reason,
            )
        out.append(rec)
        if rec.weight_like and rec.name not in reasons:
            model.skipped.append((rec.name, f"{rec.detail} ({rec.skip.value if rec.skip else ''})"))
            reasons[rec.name] = rec.detail or ""
    if storages:
        # storages of the archive that no tensor we decoded points at: bytes we cannot account
        # for (packed params inside an opaque torch.ScriptObject, a tensor type we do not parse)
        used = {f.value.storage.key for f in found_all if isinstance(f.value, P.TensorRef)}
        for key, nbytes in storages.items():
            if key in used:
                continue
            name = f"storage {key}"
            detail = (
                "archive storage referenced by no tensor the reader decodes "
                "(packed/opaque object, e.g. a quantized module's torch.ScriptObject)"
            )
            out.append(
                StoredTensor(name, (nbytes,), "bytes", nbytes, True, SkipReason.UNMAPPED, detail)
            )
            model.skipped.append((name, detail))
    return out
