"""Compare two checkpoints of the same model tensor by tensor (``initaudit diff A B``).

Typical pairs: a fresh model and the same model after N training steps; before and after a
refactor; two exports (PyTorch and ONNX) of one model. Both files are parsed, never executed,
and audited as usual (so each tensor's init scheme and trained/initialized state is known on
both sides); then their tensors are matched:

1. by name (``fc1.weight`` in both);
2. the tensors left over, by position: in model order, each unmatched tensor of A pairs with
   the next unmatched tensor of B of the same shape, or of the transposed shape for a 2-D tensor
   (a torch Linear ``[out, in]`` stored as an ONNX MatMul initializer ``[in, out]``). This is
   what lets an export whose names changed (``onnx::MatMul_12``) be compared with its source.

For each pair the relative change ‖B−A‖/‖A‖ (over the full tensors, in float64 chunks) and the
largest absolute change are computed. A tensor is *unchanged* when the relative change is at
most :data:`UNCHANGED_REL` (float32 round-off; a frozen tensor is bit-identical, an fp16
re-export is not and shows as changed).

Findings (exit code 1, as for audit findings): when something moved between A and B (at least
one tensor changed) yet a kernel did not, that kernel should have trained and did not:

- ``did-not-move``: the kernel and its layer's bias are both unchanged: the layer was frozen
  (``requires_grad=False``, left out of the optimizer) or no gradient reached it (a dead ReLU
  layer, or everything upstream of one). The weights alone cannot tell these apart.
- ``dead-input``: the kernel is unchanged while its own bias trained: the gradient reached the
  layer's output but the weight gradient (output gradient × input) was zero, so the layer's
  input carried no signal (the units before it are dead).

When nothing changed at all (two exports of one model) there is no finding: exit 0.
Tensors only in A are ``removed``, only in B ``added``; a name in both with another shape is
``reshaped``. None of these is a finding by itself (a refactor may do it on purpose).
"""

from __future__ import annotations

import enum
import fnmatch
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .report import FileReport, Status, TensorReport

if TYPE_CHECKING:  # pragma: no cover
    from .model import LoadedModel, WeightTensor
    from .settings import AuditConfig

# at most this relative change counts as "no change": float32 round-off is ~6e-8 per element
UNCHANGED_REL = 1e-7
# elements per chunk when computing norms over a pair of tensors (bounds the float64 copies)
CHUNK = 1 << 22
from .model import SCHEMED_ROLE_NAMES as KERNEL_ROLES  # noqa: E402


class ChangeStatus(str, enum.Enum):
    """What happened to one tensor between A and B. Public vocabulary (JSON ``status``)."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"
    RESHAPED = "reshaped"  # same name, another shape (values not compared)
    ADDED = "added"  # only in B
    REMOVED = "removed"  # only in A
    UNREADABLE = "unreadable"  # values could not be read on one side


class DiffFindingKind(str, enum.Enum):
    DID_NOT_MOVE = "did-not-move"
    DEAD_INPUT = "dead-input"


@dataclass(frozen=True)
class TensorChange:
    """One tensor of A matched with one of B (either side None when added/removed)."""

    name_a: str | None
    name_b: str | None
    layer: str | None
    role: str | None
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    status: ChangeStatus
    matched_by: str | None = None  # "name" or "position"
    transposed: bool = False  # B was compared transposed (position match of a 2-D tensor)
    relative_change: float | None = None  # ||B - A|| / ||A||; inf when A is all zero and B is not
    max_abs_change: float | None = None
    scheme_a: str | None = None
    scheme_b: str | None = None
    state_a: str | None = None
    state_b: str | None = None
    detail: str | None = None

    @property
    def name(self) -> str:
        return self.name_a or self.name_b or "?"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name_a": self.name_a,
            "name_b": self.name_b,
            "layer": self.layer,
            "role": self.role,
            "shape_a": list(self.shape_a) if self.shape_a is not None else None,
            "shape_b": list(self.shape_b) if self.shape_b is not None else None,
            "status": self.status.value,
            "matched_by": self.matched_by,
            "transposed": self.transposed,
            "relative_change": _num(self.relative_change),
            "max_abs_change": _num(self.max_abs_change),
            "scheme_a": self.scheme_a,
            "scheme_b": self.scheme_b,
            "state_a": self.state_a,
            "state_b": self.state_b,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class DiffFinding:
    kind: DiffFindingKind
    tensor: str
    layer: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "tensor": self.tensor,
            "layer": self.layer,
            "message": self.message,
        }


@dataclass
class DiffReport:
    a: FileReport
    b: FileReport
    changes: list[TensorChange] = field(default_factory=list)
    findings: list[DiffFinding] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in ChangeStatus}
        for c in self.changes:
            out[c.status.value] += 1
        out["findings"] = len(self.findings)
        return out

    def exit_code(self) -> int:
        """2 a file could not be read; 1 a kernel that should have trained did not; else 0."""
        if self.a.status is Status.ERROR or self.b.status is Status.ERROR:
            return 2
        return 1 if self.findings else 0

    def to_dict(self) -> dict[str, Any]:
        from . import __version__

        def side(fr: FileReport) -> dict[str, Any]:
            return {
                "path": fr.path,
                "format": fr.format,
                "status": fr.status.value,
                "error": fr.error,
                "framework": fr.framework,
                "state": fr.state.state.value if fr.state is not None else None,
            }

        return {
            "tool": {"name": "initaudit", "version": __version__},
            "a": side(self.a),
            "b": side(self.b),
            "summary": self.counts(),
            "unchanged_threshold": UNCHANGED_REL,
            "tensors": [c.to_dict() for c in self.changes],
            "findings": [f.to_dict() for f in self.findings],
        }


def diff_paths(
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    config: AuditConfig | None = None,
    *,
    frozen: tuple[str, ...] = (),
) -> DiffReport:
    """Load, audit and compare two checkpoints. Never raises for a bad file (status error).
    ``frozen``: globs over tensor/layer names frozen on purpose (no finding when unchanged)."""
    from .settings import AuditConfig

    config = config or AuditConfig()
    model_a, fr_a = _load_and_audit(os.fspath(path_a), config)
    model_b, fr_b = _load_and_audit(os.fspath(path_b), config)
    report = DiffReport(a=fr_a, b=fr_b)
    if model_a is None or model_b is None:
        return report
    report.changes = compare(model_a, model_b, fr_a, fr_b)
    report.findings = findings(report.changes, frozen=frozen)
    return report


def _load_and_audit(path: str, config: AuditConfig) -> tuple[LoadedModel | None, FileReport]:
    from .engine import analyse
    from .loaders import LoadOptions, load
    from .model import LoadError

    try:
        model = load(path, LoadOptions(hints=config.hints))
    except LoadError as exc:
        return None, FileReport(path=path, format=None, status=Status.ERROR, error=str(exc))
    except Exception as exc:  # noqa: BLE001  a loader bug: still one line, never a traceback
        return None, FileReport(
            path=path,
            format=None,
            status=Status.ERROR,
            error=f"could not be read ({type(exc).__name__}: {exc})",
        )
    try:
        return model, analyse(model, config)
    except Exception as exc:  # noqa: BLE001  an analysis bug: one line, not a traceback
        return None, FileReport(
            path=path,
            format=model.format,
            status=Status.ERROR,
            error=f"could not be analysed ({type(exc).__name__}: {exc})",
        )


def compare(
    model_a: LoadedModel,
    model_b: LoadedModel,
    fr_a: FileReport | None = None,
    fr_b: FileReport | None = None,
) -> list[TensorChange]:
    """Match the tensors of two loaded models and measure how each changed."""
    tensors_a = model_a.tensors()
    tensors_b = model_b.tensors()
    reports_a = {t.name: t for t in fr_a.tensors} if fr_a is not None else {}
    reports_b = {t.name: t for t in fr_b.tensors} if fr_b is not None else {}
    by_name_b = {t.name: t for t in tensors_b}
    pairs: list[tuple[WeightTensor | None, WeightTensor | None, str | None]] = []
    used_b: set[int] = set()
    left_a: list[WeightTensor] = []
    for ta in tensors_a:
        tb = by_name_b.get(ta.name)
        if tb is not None and id(tb) not in used_b:
            used_b.add(id(tb))
            pairs.append((ta, tb, "name"))
        else:
            left_a.append(ta)
    left_b = [t for t in tensors_b if id(t) not in used_b]
    # position: in model order, the next leftover of B with the same (or transposed) shape
    cursor = 0
    for ta in left_a:
        for j in range(cursor, len(left_b)):
            tb = left_b[j]
            if _shape_compatible(ta.shape, tb.shape) and ta.size > 1:
                pairs.append((ta, tb, "position"))
                used_b.add(id(tb))
                cursor = j + 1
                break
        else:
            pairs.append((ta, None, None))
    pairs.extend((None, tb, None) for tb in tensors_b if id(tb) not in used_b)
    return [_change(ta, tb, how, reports_a, reports_b) for ta, tb, how in pairs]


def _shape_compatible(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return tuple(a) == tuple(b) or (len(a) == 2 and tuple(a) == tuple(b)[::-1])


def _change(
    ta: WeightTensor | None,
    tb: WeightTensor | None,
    how: str | None,
    reports_a: dict[str, TensorReport],
    reports_b: dict[str, TensorReport],
) -> TensorChange:
    ra = reports_a.get(ta.name) if ta is not None else None
    rb = reports_b.get(tb.name) if tb is not None else None
    either = ta if ta is not None else tb
    base: dict[str, Any] = dict(  # noqa: C408
        name_a=ta.name if ta else None,
        name_b=tb.name if tb else None,
        layer=either.layer if either is not None else None,
        role=either.role.value if either is not None else None,
        shape_a=tuple(int(d) for d in ta.shape) if ta else None,
        shape_b=tuple(int(d) for d in tb.shape) if tb else None,
        matched_by=how,
        scheme_a=_scheme(ra),
        scheme_b=_scheme(rb),
        state_a=_state(ra),
        state_b=_state(rb),
    )
    if ta is None:
        return TensorChange(status=ChangeStatus.ADDED, **base)
    if tb is None:
        return TensorChange(status=ChangeStatus.REMOVED, **base)
    if not _shape_compatible(ta.shape, tb.shape):
        return TensorChange(status=ChangeStatus.RESHAPED, **base)
    transposed = tuple(ta.shape) != tuple(tb.shape)
    try:
        va = np.asarray(ta.load())
        vb = np.asarray(tb.load())
        if transposed:
            vb = vb.T
        rel, max_abs = relative_change(va, vb)
        del va, vb  # memmaps close as we go
    except Exception as exc:  # noqa: BLE001  one unreadable tensor does not stop the rest
        return TensorChange(
            status=ChangeStatus.UNREADABLE,
            transposed=transposed,
            detail=f"{type(exc).__name__}: {exc}",
            **base,
        )
    status = ChangeStatus.UNCHANGED if rel <= UNCHANGED_REL else ChangeStatus.CHANGED
    return TensorChange(
        status=status, transposed=transposed, relative_change=rel, max_abs_change=max_abs, **base
    )


def relative_change(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(‖b − a‖ / ‖a‖, max |b − a|) over all elements, in float64 chunks. 0 when both are
    zero; inf when a is zero and b is not. NaN positions equal on both sides count as equal."""
    fa = a.reshape(-1)
    fb = b.reshape(-1)
    diff2 = norm2 = 0.0
    max_abs = 0.0
    for start in range(0, fa.size, CHUNK):
        ca = np.asarray(fa[start : start + CHUNK], dtype=np.float64)
        cb = np.asarray(fb[start : start + CHUNK], dtype=np.float64)
        same = (ca == cb) | (np.isnan(ca) & np.isnan(cb))
        d = np.where(same, 0.0, cb - ca)
        d = np.where(np.isnan(d), np.inf, d)
        diff2 += float(np.dot(d, d)) if np.isfinite(d).all() else math.inf
        finite_a = np.where(np.isfinite(ca), ca, 0.0)
        norm2 += float(np.dot(finite_a, finite_a))
        if d.size:
            max_abs = max(max_abs, float(np.max(np.abs(d))))
    if diff2 == 0.0:
        return 0.0, 0.0
    if norm2 == 0.0:
        return math.inf, max_abs
    return math.sqrt(diff2 / norm2), max_abs


def findings(changes: list[TensorChange], *, frozen: tuple[str, ...] = ()) -> list[DiffFinding]:
    """Kernels that did not move while something else did (see the module docstring), except
    those matching a ``frozen`` glob (a fine-tuning run that freezes the backbone on purpose)."""
    moved = [c for c in changes if c.status is ChangeStatus.CHANGED]
    if not moved:
        return []
    bias_status: dict[str, ChangeStatus] = {}
    for c in changes:
        if c.role == "bias" and c.layer:
            bias_status[c.layer] = c.status
    out: list[DiffFinding] = []
    for c in changes:
        if c.status is not ChangeStatus.UNCHANGED or c.role not in KERNEL_ROLES:
            continue
        if any(
            fnmatch.fnmatchcase(n, g) for g in frozen for n in (c.name_a, c.name_b, c.layer) if n
        ):
            continue
        bias = bias_status.get(c.layer or "")
        if bias is ChangeStatus.CHANGED:
            out.append(
                DiffFinding(
                    kind=DiffFindingKind.DEAD_INPUT,
                    tensor=c.name,
                    layer=c.layer,
                    message=(
                        f"{c.name} did not change while its bias trained and {len(moved)} "
                        "tensor(s) changed: the weight gradient (output gradient × input) was "
                        "zero, so this layer's input carried no signal (dead units before it)"
                    ),
                )
            )
        else:
            tail = " and neither did its bias" if bias is ChangeStatus.UNCHANGED else ""
            out.append(
                DiffFinding(
                    kind=DiffFindingKind.DID_NOT_MOVE,
                    tensor=c.name,
                    layer=c.layer,
                    message=(
                        f"{c.name} did not change at all{tail} while {len(moved)} tensor(s) "
                        "changed: the layer is frozen (requires_grad=False, left out of the "
                        "optimizer) or no gradient reached it (a dead ReLU layer, or everything "
                        "upstream of one)"
                    ),
                )
            )
    return out


def _scheme(r: TensorReport | None) -> str | None:
    return r.scheme.label if r is not None and r.scheme is not None else None


def _state(r: TensorReport | None) -> str | None:
    return r.state.state.value if r is not None and r.state is not None else None


def _num(x: float | None) -> float | str | None:
    if x is None:
        return None
    if math.isinf(x):
        return "inf"
    if math.isnan(x):
        return "nan"
    return x


__all__ = [
    "CHUNK",
    "UNCHANGED_REL",
    "ChangeStatus",
    "DiffFinding",
    "DiffFindingKind",
    "DiffReport",
    "TensorChange",
    "compare",
    "diff_paths",
    "findings",
    "relative_change",
]
