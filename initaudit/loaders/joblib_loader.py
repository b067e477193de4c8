"""joblib files (``joblib.dump``), scanned with the restricted unpickler, never executed.

Layout (joblib/numpy_pickle.py): an ordinary pickle stream in which every numpy array is
replaced by a ``joblib.numpy_pickle.NumpyArrayWrapper`` (state: shape, order, dtype,
allow_mmap, numpy_array_alignment_bytes); right after the wrapper's BUILD the array bytes are
written raw into the file (joblib >= 1.2: one byte giving a padding length, that many padding
bytes, then the data), and the pickle stream resumes. We run the same restricted unpickler as
for torch pickles (:mod:`initaudit.loaders._pickle`: GLOBALs become inert stubs, dangerous
ones are reported as unsafe); when BUILD completes a wrapper we record where its bytes are and
step over them. Arrays are then memory-mapped lazily. Object arrays (pickled Python objects
inside the array) are refused. Compressed joblib files are not read.

Whatever object the file holds (a dict of arrays, a scikit-learn estimator...), every numpy
array reachable from it is a tensor named by its path (``coefs_.0``); layout torch unless the
names say otherwise (``kernel`` leaves: Keras/JAX).
"""

from __future__ import annotations

import math
import mmap
from pathlib import Path
from typing import Any

import numpy as np

from ..model import (
    Convention,
    LoadedModel,
    Loader,
    LoadError,
    SkipReason,
    StoredTensor,
    UnsafeLoadError,
    is_weight_like,
)
from . import LoadOptions
from ._pickle import (
    PDict,
    PickleError,
    PickleLimits,
    RestrictedUnpickler,
    Stub,
    UnpickleContext,
    _NpDType,
)
from ._shared import describe
from .statedict import FlatTensor, group_state_dict

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_MARKER = b"joblib.numpy_pickle"
DETECT_BYTES = 1 << 20


def detect(path: Path, head: bytes) -> bool:
    """A pickle (protocol >= 2) whose stream names joblib's array wrapper."""
    if head[:1] != b"\x80":
        return False
    try:
        with open(path, "rb") as fh:
            return _MARKER in fh.read(DETECT_BYTES)
    except OSError:
        return False


class _JoblibArray:
    """Where a wrapped array's bytes sit in the file."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, order: str, offset: int) -> None:
        self.shape, self.dtype, self.order, self.offset = shape, dtype, order, offset

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class _JoblibUnpickler(RestrictedUnpickler):
    def _build(self, obj: Any, state: Any) -> None:
        super()._build(obj, state)
        if not (isinstance(obj, Stub) and obj.qualname == WRAPPER):
            return
        st = obj.state
        shape, dtype, order = st.get("shape"), st.get("dtype"), st.get("order", "C")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise PickleError("joblib array wrapper without a valid shape")
        if not isinstance(dtype, _NpDType):
            raise PickleError("joblib array wrapper without a numpy dtype")
        try:
            np_dtype = dtype.numpy()
        except (TypeError, ValueError) as exc:
            raise PickleError(f"joblib array dtype is invalid ({exc})") from None
        if np_dtype.hasobject:
            # the array is a nested pickle of Python objects: not read (and never run)
            raise PickleError("joblib object array (pickled Python objects): not read")
        if st.get("numpy_array_alignment_bytes") is not None:
            padding = int(self._take(1)[0])
            self._take(padding)
        array = _JoblibArray(tuple(shape), np_dtype, str(order), self.pos)
        # joblib commits the pickle frame before writing these bytes: they belong to no frame
        if self.frame_end is not None and self.frame_end <= array.offset:
            self.frame_end = None
        self._take(array.nbytes)  # step over the raw bytes (bounds-checked)
        obj.state["__joblib_array__"] = array


def _arrays(value: Any, prefix: str, out: list[tuple[str, Any]], depth: int = 0) -> None:
    if depth > 64:
        return
    if isinstance(value, Stub):
        array = value.state.get("__joblib_array__")
        if array is not None:
            out.append((prefix or "array", array))
            return
        _arrays(value.state, prefix, out, depth + 1)
        _arrays(value.items, prefix, out, depth + 1)
        for i, item in enumerate(value.list_items):
            _arrays(item, f"{prefix}.{i}" if prefix else str(i), out, depth + 1)
    elif isinstance(value, (dict, PDict)):
        for k, v in value.items():
            if isinstance(k, str) and k.startswith("__") and k != "__joblib_array__":
                continue
            _arrays(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _arrays(item, f"{prefix}.{i}" if prefix else str(i), out, depth + 1)
    elif isinstance(value, np.ndarray):  # a small array pickled the numpy way
        out.append((prefix or "array", value))


def _loader(path: Path, a: _JoblibArray) -> Loader:
    def load() -> np.ndarray:
        if a.nbytes == 0:
            return np.zeros(a.shape, dtype=a.dtype)
        return np.memmap(
            path,
            dtype=a.dtype,
            mode="r",
            offset=a.offset,
            shape=a.shape,
            order="F" if a.order == "F" else "C",
        )

    return load


def _constant(arr: np.ndarray) -> Loader:
    def load() -> np.ndarray:
        return arr

    return load


def load(path: Path, fmt: str, options: LoadOptions) -> LoadedModel:
    model = LoadedModel(path=str(path), format="joblib", framework="joblib", has_graph=False)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise LoadError(f"cannot read file ({exc})") from None
    ctx = UnpickleContext(location="joblib pickle")
    up = _JoblibUnpickler(memoryview(mm), ctx=ctx, limits=PickleLimits(max_bytes=size))
    error: str | None = None
    try:
        value = up.load()
    except PickleError as exc:
        error = f"a joblib file: {exc}"
    except (UnicodeDecodeError, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        # the shared unpickler lets a few decode errors of damaged text arguments through
        error = f"a joblib file: malformed pickle ({describe(exc)})"
    end = up.pos
    del up  # the unpickler's views of the map go with it; the map closes when unreferenced
    if error is not None:
        found_unsafe = [u for u in ctx.unsafe if u.what != f"pickle GLOBAL {WRAPPER}"]
        if found_unsafe:  # joblib.load would have run these before failing
            raise UnsafeLoadError(error, found_unsafe)
        raise LoadError(error)
    if end < size:  # a second pickle after the first (legacy-torch style): scanned, never run
        from ._scan import scan_blob

        scan_blob(
            bytes(mm[end : end + (64 << 20)]), "joblib trailing pickle", model, required=False
        )
    # joblib's own array wrapper is handled inertly above (its class is never called)
    model.unsafe.extend(u for u in ctx.unsafe if u.what != f"pickle GLOBAL {WRAPPER}")
    if ctx.class_refs:
        model.metadata["pickle_classes"] = list(ctx.class_refs)
    found: list[tuple[str, Any]] = []
    _arrays(value, "", found)
    inventory: list[StoredTensor] = []
    flat: list[FlatTensor] = []
    for name, a in found:
        if isinstance(a, np.ndarray):
            arr = a
            dtype, shape, nbytes = arr.dtype, tuple(arr.shape), arr.nbytes
            load_fn: Loader = _constant(arr)
        else:
            dtype, shape, nbytes = a.dtype, a.shape, a.nbytes
            load_fn = _loader(path, a)
        skip: SkipReason | None = None
        detail: str | None = None
        if dtype.kind not in "fiub":
            skip, detail = SkipReason.UNSUPPORTED_DTYPE, f"dtype {dtype} is not numeric"
        elif nbytes > options.max_tensor_bytes:
            skip, detail = SkipReason.TOO_LARGE, f"{nbytes} bytes exceeds the per-tensor limit"
        inventory.append(
            StoredTensor(
                name, shape, dtype.name, nbytes, is_weight_like(shape, dtype.name), skip, detail
            )
        )
        if skip is not None:
            model.skipped.append((name, detail or skip.value))
            continue
        flat.append(FlatTensor(name, shape, dtype.name, load_fn))
    if not inventory:
        raise LoadError(
            "a joblib file holding no numpy arrays"
            + (f" (it pickles {ctx.class_refs[0]})" if ctx.class_refs else "")
        )
    leaves = {f.name.rpartition(".")[2] for f in flat}
    convention = (
        Convention.KERAS if "kernel" in leaves and "weight" not in leaves else Convention.TORCH
    )
    model.inventory = inventory
    model.layers, model.loose_tensors = group_state_dict(flat, convention)
    model.notes.append("joblib pickle scanned with the restricted unpickler (never executed)")
    return model
