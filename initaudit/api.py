"""The Python API: ``initaudit.audit(obj)``, the foundation the CLI stands on.

``obj`` may be a path (str / PathLike), an ``onnx.ModelProto``, a ``torch.nn.Module``, a Keras
model, or a mapping of names to numpy arrays. Frameworks are imported only when such an object
is passed (we inspect the object's type by module name first).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .activations import ActivationHint
from .engine import AuditConfig, TensorIgnore, analyse, audit_path
from .model import Convention, LoadedModel
from .report import FileReport, Report, Severity


def make_config(*, select: Iterable[str] = (), ignore: Iterable[str] = (),
                fail_on: str | Severity = Severity.ERROR, min_confidence: float = 0.0,
                activation: Iterable[str] | Mapping[str, str] = (),
                severity: Mapping[str, str] | None = None,
                tensor_ignores: Iterable[TensorIgnore] = ()) -> AuditConfig:
    """Build an AuditConfig from plain values (what the CLI and config files give)."""
    if isinstance(activation, Mapping):
        hints = tuple(ActivationHint.parse(f"{k}={v}") for k, v in activation.items())
    else:
        hints = tuple(ActivationHint.parse(h) for h in activation)
    return AuditConfig(select=tuple(select), ignore=tuple(ignore),
                       fail_on=fail_on if isinstance(fail_on, Severity) else Severity.parse(fail_on),
                       min_confidence=float(min_confidence), hints=hints,
                       severity_overrides={k: Severity.parse(v) for k, v in (severity or {}).items()},
                       tensor_ignores=tuple(tensor_ignores))


def audit(obj: Any, *, config: AuditConfig | None = None, **options: Any) -> Report:
    """Audit one object (or a list/tuple of paths) and return the Report.

    Options are those of :func:`make_config` (select, ignore, fail_on, min_confidence,
    activation, severity) when no ``config`` is given.
    """
    config = config or make_config(**options)
    if isinstance(obj, (list, tuple)) and all(isinstance(o, (str, os.PathLike)) for o in obj):
        return Report(files=[audit_path(p, config) for p in obj])
    return Report(files=[audit_one(obj, config)])


def audit_one(obj: Any, config: AuditConfig) -> FileReport:
    if isinstance(obj, (str, os.PathLike)):
        return audit_path(obj, config)
    model = to_model(obj)
    from .activations import apply_hints

    apply_hints(model, list(config.hints))
    return analyse(model, config)


def to_model(obj: Any) -> LoadedModel:
    """Turn an in-memory object into the neutral model without touching any file."""
    module = type(obj).__module__ or ""
    if module.startswith("onnx"):
        from .loaders.onnx import from_proto

        return from_proto(obj)
    if module.startswith("torch") or _has_torch_base(obj):
        from .loaders.inmemory import from_torch_module

        return from_torch_module(obj)
    if module.startswith(("keras", "tf_keras", "tensorflow")) or _is_keras(obj):
        from .loaders.inmemory import from_keras_model

        return from_keras_model(obj)
    if isinstance(obj, Mapping):
        return from_arrays(obj)
    raise TypeError(f"initaudit.audit() cannot audit a {type(obj).__name__}: pass a path, an "
                    "onnx.ModelProto, a torch.nn.Module, a Keras model or a dict of numpy arrays")


def from_arrays(arrays: Mapping[str, Any], convention: Convention = Convention.TORCH,
                label: str = "<arrays>") -> LoadedModel:
    from .loaders.statedict import FlatTensor, group_state_dict

    flat = []
    for name, value in arrays.items():
        arr = np.asarray(value)
        flat.append(FlatTensor(name=str(name), shape=tuple(int(d) for d in arr.shape),
                               dtype=str(arr.dtype), load=(lambda a=arr: a)))
    layers, loose = group_state_dict(flat, convention)
    return LoadedModel(path=label, format="in-memory", layers=layers, loose_tensors=loose,
                       framework="numpy", has_graph=False)


def _has_torch_base(obj: Any) -> bool:
    return any((c.__module__ or "").startswith("torch.nn") for c in type(obj).__mro__)


def _is_keras(obj: Any) -> bool:
    return any((c.__module__ or "").startswith(("keras", "tf_keras")) for c in type(obj).__mro__)


def path_of(obj: Any) -> str:
    return os.fspath(obj) if isinstance(obj, (str, os.PathLike)) else f"<{type(obj).__name__}>"


__all__ = ["audit", "audit_one", "make_config", "to_model", "from_arrays", "Path"]
