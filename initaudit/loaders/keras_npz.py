"""``.keras`` archives whose weights are ``model.weights.npz`` (Keras 3 ``NpzIOStore``).

Written by ``keras.src.saving.saving_lib.save_model(model, path, weights_format="npz")``
(keras/src/saving/saving_lib.py, checked on Keras 3.15): ``NpzIOStore.make(path)`` gives each
layer a dict, ``layer.save_own_variables(store)`` puts the layer's *Variable objects* in it
(``store["0"] = variable``, no conversion to numpy), and ``np.savez`` writes every dict as a 0-d
object array: one ``layers/<key>.npy`` member per layer (``__root__`` for the model's own) whose
payload is a pickle of ``{"0": keras.src.backend.Variable, ...}``. A Variable's ``_value`` is a
numpy array (numpy backend), a jax Array (pickled as ``jax._src.array._reconstruct_array`` of
numpy's ``_reconstruct``), a torch Parameter or a tf Variable. Keras' own reader opens the npz
with ``allow_pickle=False`` and cannot load these files back; older Keras 3 releases could.

Here each pickle goes through the restricted unpickler (nothing imported or called; the Variable
class and jax's array rebuild are part of its grammar, anything else is a finding), the numpy and
jax values are taken, and the variables are laid out as the HDF5 store Keras writes by default
(``layers/<key>/vars/<i>``) in a temporary file, so the ``.keras`` reader maps them to the config
exactly as it maps ``model.weights.h5``. A value of another backend is inventoried and skipped
with the reason.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import LoadedModel, LoadError, StoredTensor
from ..model import SkipReason as Skip
from . import _pickle as P

MAX_MEMBERS = 100_000
MAX_RATIO = 1100  # zip members declaring more than this expansion are bombs (as in _zip)
VARIABLE_CLASSES = frozenset({"keras.src.backend.Variable"})
# what Keras writes: layer paths of snake_case keys ("layers/dense_1"), variable indices ("0")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$")


@dataclass(frozen=True)
class NpzVariable:
    group: str  # HDF5 group Keras' H5 store would use: "layers/dense/vars" or "vars"
    key: str  # "0", "1"...
    value: np.ndarray | None
    problem: str | None = None

    @property
    def h5path(self) -> str:
        return f"/{self.group}/{self.key}"


def _value(var: Any) -> tuple[np.ndarray | None, str | None]:
    if isinstance(var, np.ndarray):
        return var, None
    if isinstance(var, P.Stub) and var.qualname in VARIABLE_CLASSES and not var.called:
        value = P.unwrap(var.state.get("_value"))
        if isinstance(value, np.ndarray):
            return value, None
        if isinstance(value, P.Placeholder):
            return None, (
                f"its value is pickled as {value.what} (a Keras backend whose arrays "
                "initaudit does not rebuild: torch or tensorflow)"
            )
        return None, f"its value is a {type(value).__name__}, not an array"
    if isinstance(var, P.Placeholder):
        return None, f"pickled as {var.what}"
    return None, f"a {type(var).__name__}, not a Keras Variable"


def read_store(data: bytes, model: LoadedModel) -> list[NpzVariable]:
    """Every variable of the npz store (inert values), unsafe content into ``model.unsafe``."""
    from .npz_loader import read_npy_header

    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
        raise LoadError(f"model.weights.npz is not a valid npz archive ({exc})") from None
    infos = inner.infolist()
    if len(infos) > MAX_MEMBERS:
        raise LoadError(f"model.weights.npz has more than {MAX_MEMBERS} members")
    out: list[NpzVariable] = []
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or name.startswith("/") or ".." in name.split("/"):
            raise LoadError(f"model.weights.npz member {name!r} is not a layer's .npy")
        if info.flag_bits & 0x1:
            raise LoadError(f"model.weights.npz member {name} is encrypted")
        if info.file_size > max(info.compress_size, 1) * MAX_RATIO:
            raise LoadError(f"model.weights.npz member {name} is a zip bomb")
        try:
            raw = inner.read(info)
            header = read_npy_header(io.BytesIO(raw[: 1 << 20]))
        except (zipfile.BadZipFile, ValueError, EOFError, OSError, SyntaxError) as exc:
            raise LoadError(f"model.weights.npz member {name} is unreadable ({exc})") from None
        where = f"model.weights.npz/{name}"
        if not header.dtype.hasobject or header.shape != ():
            raise LoadError(
                f"model.weights.npz member {name} is not Keras' pickled dict of variables "
                f"(dtype {header.dtype}, shape {header.shape})"
            )
        ctx = P.UnpickleContext(location=where, object_arrays=True)
        try:
            value, _, _ = P.unpickle(
                raw[header.header_len :],
                location=where,
                ctx=ctx,
                limits=P.PickleLimits(max_bytes=len(raw)),
            )
        except LoadError as exc:
            raise LoadError(
                f"{where}: not readable as Keras' pickled variables ({exc}); the numpy and "
                "jax backends' are read, a torch or tensorflow backend's are not"
            ) from None
        finally:
            for item in ctx.unsafe:
                if item not in model.unsafe:
                    model.unsafe.append(item)
        items = P.object_array_items(value)
        if items is None or len(items) != 1 or not isinstance(items[0], dict):
            raise LoadError(f"{where} does not hold a dict of variables")
        path = name[: -len(".npy")]
        if not all(_SEGMENT.match(part) for part in path.split("/")):
            raise LoadError(f"model.weights.npz member {name!r} is not a Keras layer path")
        group = "vars" if path == "__root__" else f"{path}/vars"
        if not items[0]:
            out.append(NpzVariable(group, "", None))  # a layer without variables: its group
        for key, var in items[0].items():
            if not isinstance(key, str) or not _SEGMENT.match(key):
                raise LoadError(f"{where} holds a variable key {key!r} Keras does not write")
            arr, problem = _value(var)
            if arr is not None and (arr.dtype.kind not in "fiub" or arr.dtype.fields):
                problem = f"dtype {arr.dtype} is not supported"
                arr = None
            out.append(NpzVariable(group, str(key), arr, problem))
    return out


def write_h5(variables: list[NpzVariable], target: str) -> None:
    """The variables as Keras' HDF5 store lays them out (``layers/<key>/vars/<i>``)."""
    import h5py

    try:
        with h5py.File(target, "w") as f:
            for var in variables:
                group = f.require_group(var.group)
                if var.value is not None and var.key:
                    group.create_dataset(var.key, data=var.value)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise LoadError(f"model.weights.npz could not be laid out for reading ({exc})") from None


def unreadable(variables: list[NpzVariable], model: LoadedModel) -> list[StoredTensor]:
    """Inventory entries (and skips) for the variables whose values could not be taken."""
    out: list[StoredTensor] = []
    for var in variables:
        if var.problem is None:
            continue
        name = f"model.weights.npz:{var.h5path}"
        model.skipped.append((name, var.problem))
        out.append(StoredTensor(name, (), "unknown", 0, True, Skip.UNREADABLE, var.problem))
    return out


def summary(variables: list[NpzVariable]) -> str:
    read = [v for v in variables if v.value is not None]
    nbytes = sum(
        math.prod(v.value.shape) * v.value.dtype.itemsize for v in read if v.value is not None
    )
    return (
        f"model.weights.npz (Keras NpzIOStore: pickled Variables) read with the restricted "
        f"unpickler: {len(read)} variable(s), {nbytes} bytes; Keras itself cannot load this "
        "file back (np.load allow_pickle=False)"
    )
