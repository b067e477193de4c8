"""The Python API: ``initaudit.audit(obj)``, the foundation the CLI stands on.

``obj`` may be a path (str / PathLike), an ``onnx.ModelProto``, a ``torch.nn.Module``, a Keras
model, or a mapping of names to numpy arrays. Frameworks are imported only when such an object
is passed (we inspect the object's type by module name first).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .activations import ActivationHint
from .engine import AuditConfig, TensorIgnore, analyse
from .model import Convention, LoadedModel, Loader
from .report import FileReport, Report, Severity


def make_config(
    *,
    select: str | Iterable[str] = (),
    ignore: str | Iterable[str] = (),
    fail_on: str | Severity = Severity.ERROR,
    min_confidence: float = 0.0,
    activation: Iterable[str] | Mapping[str, str] = (),
    severity: Mapping[str, str | Severity] | None = None,
    tensor_ignores: Iterable[TensorIgnore] = (),
    max_seconds: float | None = None,
) -> AuditConfig:
    """Build an AuditConfig from plain values, validated like the command line: ValueError (a
    :class:`~initaudit.selector.SelectorError` for rules) naming the argument and the problem."""
    return _overrides_to_config(
        _validated(
            select=select,
            ignore=ignore,
            fail_on=fail_on,
            min_confidence=min_confidence,
            activation=activation,
            severity=severity,
        ),
        tensor_ignores=tuple(tensor_ignores),
        max_seconds=max_seconds,
    )


def _validated(
    *,
    select: Any = None,
    ignore: Any = None,
    fail_on: Any = None,
    min_confidence: Any = None,
    activation: Any = None,
    severity: Any = None,
) -> dict[str, Any]:
    """The keyword arguments checked and keyed like the config file (None: not given)."""
    from .selector import parse

    out: dict[str, Any] = {}
    if select is not None:
        out["select"] = parse(select, what="select")
    if ignore is not None:
        out["ignore"] = parse(ignore, what="ignore")
    if fail_on is not None:
        out["fail-on"] = fail_on if isinstance(fail_on, Severity) else Severity.parse(str(fail_on))
    if min_confidence is not None:
        if (
            isinstance(min_confidence, bool)
            or not isinstance(min_confidence, (int, float))
            or not 0.0 <= float(min_confidence) <= 1.0
        ):
            raise ValueError(
                f"min_confidence must be a number between 0 and 1, not {min_confidence!r}"
            )
        out["min-confidence"] = float(min_confidence)
    if activation is not None:
        texts = (
            [f"{k}={v}" for k, v in activation.items()]
            if isinstance(activation, Mapping)
            else [activation]
            if isinstance(activation, str)
            else list(activation)
        )
        for text in texts:
            ActivationHint.parse(text)  # ValueError naming the problem
        out["activation"] = tuple(texts)
    if severity is not None:
        from .rules import find_rule

        table: dict[str, Severity] = {}
        for key, value in dict(severity).items():
            rule = find_rule(str(key))
            if rule is None:
                raise ValueError(
                    f"severity: unknown rule {key!r} (run `initaudit rules` to list them)"
                )
            table[rule.code] = value if isinstance(value, Severity) else Severity.parse(str(value))
        out["severity"] = table
    return out


def _overrides_to_config(
    values: Mapping[str, Any],
    *,
    tensor_ignores: tuple[TensorIgnore, ...] = (),
    max_seconds: float | None = None,
) -> AuditConfig:
    from .config import resolve

    settings = resolve(None, values)
    config = settings.audit_config()
    return replace(
        config, tensor_ignores=tensor_ignores or config.tensor_ignores, max_seconds=max_seconds
    )


def audit(
    obj: Any,
    *,
    config: AuditConfig | None = None,
    select: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    fail_on: str | Severity | None = None,
    min_confidence: float | None = None,
    activation: Iterable[str] | Mapping[str, str] | None = None,
    severity: Mapping[str, str | Severity] | None = None,
    max_seconds: float | None = None,
    config_file: str | os.PathLike[str] | None = None,
    use_config: bool = True,
) -> Report:
    """Audit one object (or a list/tuple of paths) and return the Report.

    Without ``config``, the settings come from the nearest ``initaudit.toml`` /
    ``pyproject.toml`` with ``[tool.initaudit]`` above each audited path (from the working
    directory for in-memory models, and as the fallback), like the command line; ``config_file``
    names the file instead and ``use_config=False`` reads none. The keyword arguments override
    the file and are validated like the command-line options: an unknown rule, a selector that
    matches nothing (``select=["IA9"]``), a bad severity raise ValueError.
    """
    overrides = _validated(
        select=select,
        ignore=ignore,
        fail_on=fail_on,
        min_confidence=min_confidence,
        activation=activation,
        severity=severity,
    )
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be a positive number of seconds, not {max_seconds}")
    objs = (
        list(obj)
        if isinstance(obj, (list, tuple)) and all(isinstance(o, (str, os.PathLike)) for o in obj)
        else [obj]
    )

    def config_for(item: Any) -> AuditConfig:
        if config is not None:
            return config
        if not use_config:
            return _overrides_to_config(overrides, max_seconds=max_seconds)
        from .config import settings_for

        where = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
        settings = settings_for(
            where,
            config_file=None if config_file is None else os.fspath(config_file),
            overrides=overrides,
        )
        return replace(settings.audit_config(), max_seconds=max_seconds)

    return Report(files=[audit_one(o, config_for(o)) for o in objs])


def audit_one(obj: Any, config: AuditConfig) -> FileReport:
    """One object; per-tensor ignores move findings to ``FileReport.suppressed`` (counted)."""
    from . import engine

    bare = replace(config, tensor_ignores=())
    if isinstance(obj, (str, os.PathLike)):
        # looked up at call time, like the runner: tests and embedders may replace it
        return _with_ignores(engine.audit_path(obj, bare), config)
    model = to_model(obj)
    from .activations import apply_hints

    apply_hints(model, list(config.hints))
    return _with_ignores(analyse(model, bare), config)


def _with_ignores(fr: FileReport, config: AuditConfig) -> FileReport:
    if not config.tensor_ignores:  # the usual case: initaudit.baseline is not even imported
        return fr
    from .baseline import apply_ignores

    return apply_ignores(fr, config.tensor_ignores)


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
    raise TypeError(
        f"initaudit.audit() cannot audit a {type(obj).__name__}: pass a path, an "
        "onnx.ModelProto, a torch.nn.Module, a Keras model or a dict of numpy arrays"
    )


def _holding(arr: np.ndarray) -> Loader:
    """A loader returning ``arr`` (a def, not a defaulted lambda: mypy types this one)."""
    return lambda: arr


def from_arrays(
    arrays: Mapping[str, Any], convention: Convention = Convention.TORCH, label: str = "<arrays>"
) -> LoadedModel:
    from .accounting import inventory_entry
    from .loaders.statedict import FlatTensor, group_state_dict

    flat = []
    for name, value in arrays.items():
        arr = np.asarray(value)
        flat.append(
            FlatTensor(
                name=str(name),
                shape=tuple(int(d) for d in arr.shape),
                dtype=str(arr.dtype),
                load=_holding(arr),
            )
        )
    layers, loose = group_state_dict(flat, convention)
    model = LoadedModel(
        path=label,
        format="in-memory",
        layers=layers,
        loose_tensors=loose,
        framework="numpy",
        has_graph=False,
    )
    # the container is the mapping itself: every array in it, mapped or not
    model.inventory = [inventory_entry(f.name, f.shape, f.dtype) for f in flat]
    return model


def _has_torch_base(obj: Any) -> bool:
    return any((c.__module__ or "").startswith("torch.nn") for c in type(obj).__mro__)


def _is_keras(obj: Any) -> bool:
    return any((c.__module__ or "").startswith(("keras", "tf_keras")) for c in type(obj).__mro__)


def path_of(obj: Any) -> str:
    return os.fspath(obj) if isinstance(obj, (str, os.PathLike)) else f"<{type(obj).__name__}>"


__all__ = ["audit", "audit_one", "make_config", "to_model", "from_arrays", "Path"]
