"""Result objects: what an audit produces, independent of how it is printed.

Small frozen dataclasses (scipy-style result objects), each with ``to_dict`` giving the JSON
report's fields. The JSON field names are a public contract: extend, never rename.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# the analysis result types live with the analysis (analysis/results.py); the JSON helpers too.
# Re-exported here: `from initaudit.report import SchemeResult` keeps working.
from .analysis.results import (  # noqa: F401
    Candidate,
    SchemeResult,
    SignalReport,
    StateResult,
    TensorStats,
    _jsonable,
    _num,
)

if TYPE_CHECKING:  # pragma: no cover
    from .model import SkippedTensor

__all__ = [
    "Candidate",
    "Coverage",
    "FileReport",
    "Finding",
    "Report",
    "SchemeResult",
    "Severity",
    "Status",
    "Suppression",
    "TensorReport",
    "TensorStats",
]


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"unknown severity {text!r} (use info, warning or error)") from None


# exit codes of the gate (docs/ci.md): public contract
EXIT_OK = 0
EXIT_FINDINGS = 1  # findings at or above --fail-on
EXIT_UNREADABLE = 2  # usage/config error or an input that could not be read
EXIT_PARTIAL = 3  # audit incomplete: a file was only partly analysed (--allow-partial: 0)


class Status(str, enum.Enum):
    OK = "ok"
    PARTIAL = "partial"  # read, but something was skipped or unsafe content was left out
    ERROR = "error"  # could not be read at all


@dataclass(frozen=True)
class Finding:
    code: str  # stable: IA101
    name: str  # stable: he-before-saturating
    severity: Severity
    confidence: float  # 0..1, separate axis from severity (bandit)
    message: str
    tensor: str | None = None
    layer: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.value,
            "confidence": round(float(self.confidence), 4),
            "tensor": self.tensor,
            "layer": self.layer,
            "message": self.message,
            "evidence": {k: _jsonable(v) for k, v in self.evidence.items()},
        }


@dataclass(frozen=True)
class Coverage:
    """How much of a file's stored weights the audit read (JSON ``files[].coverage``).

    ``weights_*`` count weight-like tensors (float or quantized, >= 2-D or an embedding) in the
    container's own enumeration; ``bytes_*`` their stored bytes. A file is ``ok`` only when
    ``weights_analysed == weights_present``.
    """

    weights_present: int
    weights_analysed: int
    bytes_present: int
    bytes_analysed: int
    tensors_present: int = 0  # every stored tensor, weight-like or not
    tensors_analysed: int = 0
    # False when the loader does not enumerate the container (LoadedModel.inventory is None):
    # the counts then cover only the tensors it mapped, and the file is never "complete"
    enumerated: bool = True

    @property
    def complete(self) -> bool:
        return self.enumerated and self.weights_analysed >= self.weights_present

    @property
    def weights_skipped(self) -> int:
        return max(0, self.weights_present - self.weights_analysed)

    @property
    def fraction(self) -> float:
        return 1.0 if self.bytes_present == 0 else self.bytes_analysed / self.bytes_present

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights_present": self.weights_present,
            "weights_analysed": self.weights_analysed,
            "bytes_present": self.bytes_present,
            "bytes_analysed": self.bytes_analysed,
            "tensors_present": self.tensors_present,
            "tensors_analysed": self.tensors_analysed,
            "enumerated": self.enumerated,
            "complete": self.complete,
        }


@dataclass(frozen=True)
class Suppression:
    """A finding the configuration or a baseline accepted: kept (not shown as a failure) so that
    every report can count it and SARIF can mark it instead of dropping it.

    ``kind`` follows SARIF's ``suppression.kind``: ``"external"`` (a per-tensor ignore in the
    config file) or ``"baseline"`` (accepted by ``--baseline``; SARIF ``baselineState``
    ``"unchanged"``). ``ignore`` is the engine's TensorIgnore that matched, for stale-ignore
    checks."""

    finding: Finding
    kind: str
    justification: str
    ignore: Any = None


@dataclass
class TensorReport:
    name: str
    layer: str
    op: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    fan_in: int | None
    fan_out: int | None
    activation: str | None  # None = unknown
    activation_source: str | None
    stats: TensorStats | None
    scheme: SchemeResult | None
    skipped: str | None = None  # reason the tensor was not analysed
    # trained / initialized / unknown with its evidence (analysis.state), None when not decided
    state: StateResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer": self.layer,
            "op": self.op,
            "role": self.role,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "fan_in": self.fan_in,
            "fan_out": self.fan_out,
            "activation": self.activation,
            "activation_source": self.activation_source,
            "stats": self.stats.to_dict() if self.stats else None,
            "scheme": self.scheme.to_dict() if self.scheme else None,
            "skipped": self.skipped,
            "state": self.state.to_dict() if self.state is not None else None,
        }


@dataclass
class FileReport:
    path: str
    format: str | None
    status: Status
    error: str | None = None
    tensors: list[TensorReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # tensors not analysed, with the reason and its SkipReason category
    skipped: list[SkippedTensor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    framework: str | None = None
    # whole-file verdict: trained / initialized / unknown with evidence (analysis.state)
    state: StateResult | None = None
    # per-layer forward/backward variance propagation (analysis.signal); None without a graph
    signal: SignalReport | None = None
    # how much of the stored weights were read; None only for unreadable files
    coverage: Coverage | None = None
    # findings accepted by a per-tensor ignore or a baseline (not in ``findings``)
    suppressed: list[Suppression] = field(default_factory=list)
    # remote inputs only (initaudit.remote): bytes fetched / total, requests, ranged or download
    remote: dict[str, Any] | None = None

    @property
    def partial(self) -> bool:
        """Read, but not every weight was analysed (skipped tensors, time budget, unread
        subgraphs, left-out content): such a file must never pass as clean."""
        if self.status is Status.ERROR:
            return False
        return (
            self.status is Status.PARTIAL
            or bool(self.skipped)
            or (self.coverage is not None and not self.coverage.complete)
        )

    def __repr__(self) -> str:  # the tensors would be thousands of lines
        return (
            f"FileReport(path={self.path!r}, format={self.format!r}, "
            f"status={self.status.value!r}, findings={len(self.findings)}, "
            f"tensors={len(self.tensors)}, skipped={len(self.skipped)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "status": self.status.value,
            "error": self.error,
            "framework": self.framework,
            "tensors": [t.to_dict() for t in self.tensors],
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [s.to_dict() for s in self.skipped],
            "notes": list(self.notes),
            "state": self.state.to_dict() if self.state is not None else None,
            "signal": self.signal.to_dict() if self.signal is not None else None,
            "coverage": self.coverage.to_dict() if self.coverage is not None else None,
            **({"remote": dict(self.remote)} if self.remote is not None else {}),
        }


@dataclass
class Report:
    files: list[FileReport] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for fr in self.files for f in fr.findings]

    def counts(self) -> dict[str, int]:
        c = {
            "files": len(self.files),
            "errors": 0,
            "warnings": 0,
            "infos": 0,
            "unreadable_files": 0,
            "tensors": 0,
            "tensors_skipped": 0,
            "partial_files": 0,
            "weights_present": 0,
            "weights_analysed": 0,
        }
        for fr in self.files:
            if fr.status is Status.ERROR:
                c["unreadable_files"] += 1
            if fr.coverage is not None:
                c["weights_present"] += fr.coverage.weights_present
                c["weights_analysed"] += fr.coverage.weights_analysed
            c["tensors"] += len(fr.tensors)
            c["tensors_skipped"] += sum(1 for t in fr.tensors if t.skipped)
            for f in fr.findings:
                c[
                    {"error": "errors", "warning": "warnings", "info": "infos"}[f.severity.value]
                ] += 1
        c["partial_files"] = sum(1 for fr in self.files if fr.partial)
        c["suppressed"] = sum(1 for fr in self.files for s in fr.suppressed if s.kind != "baseline")
        c["baselined"] = sum(1 for fr in self.files for s in fr.suppressed if s.kind == "baseline")
        return c

    def max_severity(self) -> Severity | None:
        sev = [f.severity for f in self.findings]
        return max(sev, key=lambda s: s.rank) if sev else None

    def exit_code(self, fail_on: Severity = Severity.ERROR, *, allow_partial: bool = False) -> int:
        """2 an unreadable file; else 1 findings at or above ``fail_on``; else 3 a file only
        partly audited (unless ``allow_partial``); else 0. Precedence 2 > 1 > 3 > 0."""
        if any(fr.status is Status.ERROR for fr in self.files):
            return EXIT_UNREADABLE
        if any(f.severity.rank >= fail_on.rank for f in self.findings):
            return EXIT_FINDINGS
        if not allow_partial and any(fr.partial for fr in self.files):
            return EXIT_PARTIAL
        return EXIT_OK

    def __repr__(self) -> str:
        c = self.counts()
        return (
            f"Report(files={c['files']}, errors={c['errors']}, warnings={c['warnings']}, "
            f"infos={c['infos']}, unreadable_files={c['unreadable_files']}, "
            f"partial_files={sum(1 for fr in self.files if fr.partial)})"
        )

    def to_dict(self) -> dict[str, Any]:
        from . import __version__

        return {
            "tool": {"name": "initaudit", "version": __version__},
            "summary": self.counts(),
            "files": [fr.to_dict() for fr in self.files],
        }
