"""A pytest helper for pre-training sanity checks::

    import torch
    from initaudit.testing import assert_well_initialized

    def test_model_is_well_initialized():
        model = build_model()  # a torch.nn.Module, Keras model, onnx.ModelProto, path, dict...
        assert_well_initialized(model, activation={"encoder.*": "gelu"})

On failure the AssertionError lists every finding at or above ``fail_on`` (severity, code,
name, tensor, message), the files that could not be read and the tensors that were not
analysed, so the test log says what to fix without re-running the CLI. On success it returns
the :class:`~initaudit.report.Report` for further assertions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .report import FileReport, Finding, Report, Severity, Status

__all__ = ["assert_well_initialized", "format_failure"]


def assert_well_initialized(
    obj: Any,
    *,
    fail_on: str | Severity = "warning",
    select: str | Iterable[str] | None = None,
    ignore: str | Iterable[str] | None = None,
    activation: Iterable[str] | Mapping[str, str] | None = None,
    min_confidence: float | None = None,
    severity: Mapping[str, str] | None = None,
    allow_skipped: bool = False,
    config_file: str | None = None,
    use_config: bool = True,
) -> Report:
    """Audit ``obj`` (anything :func:`initaudit.audit` accepts) and fail if it has a finding at
    or above ``fail_on`` (default ``"warning"``: stricter than the CLI, since a fresh model
    has no excuse), a file that could not be read, or, unless ``allow_skipped``, a tensor that
    was not analysed (never pass silently on something nobody looked at).

    The project's ``[tool.initaudit]`` settings apply as they do on the command line (the
    nearest config above a path, else the one found from the working directory); the keyword
    arguments override them. Unknown rules raise ValueError."""
    from .api import audit

    threshold = fail_on if isinstance(fail_on, Severity) else Severity.parse(fail_on)
    report = audit(
        obj,
        select=select,
        ignore=ignore,
        fail_on=threshold,
        min_confidence=min_confidence,
        activation=activation,
        severity=severity,
        config_file=config_file,
        use_config=use_config,
    )
    failing = [f for f in report.findings if f.severity.rank >= threshold.rank]
    unreadable = [fr for fr in report.files if fr.status is Status.ERROR]
    skipped = [] if allow_skipped else [(fr.path, s) for fr in report.files for s in fr.skipped]
    if failing or unreadable or skipped:
        raise AssertionError(format_failure(report, threshold, allow_skipped=allow_skipped))
    return report


def format_failure(report: Report, threshold: Severity, *, allow_skipped: bool = False) -> str:
    """The assertion message: one line per problem, grouped per file."""
    failing = [f for f in report.findings if f.severity.rank >= threshold.rank]
    parts = [
        f"initaudit: {len(failing)} finding{'s' if len(failing) != 1 else ''} at or above "
        f"{threshold.value}"
    ]
    for fr in report.files:
        lines = _file_lines(fr, threshold, allow_skipped)
        if lines:
            parts.append(f"{fr.path}:")
            parts.extend(f"  {line}" for line in lines)
    return "\n".join(parts)


def _file_lines(fr: FileReport, threshold: Severity, allow_skipped: bool) -> list[str]:
    if fr.status is Status.ERROR:
        return [f"could not be read: {fr.error}"]
    lines = [_finding_line(f) for f in fr.findings if f.severity.rank >= threshold.rank]
    below = [f for f in fr.findings if f.severity.rank < threshold.rank]
    if below:
        lines.append(
            f"(and {len(below)} finding{'s' if len(below) != 1 else ''} below {threshold.value}: "
            + ", ".join(f"{f.code} {f.tensor or f.layer or ''}".strip() for f in below)
            + ")"
        )
    if not allow_skipped:
        lines.extend(f"not analysed {s.name}: {s.reason}" for s in fr.skipped)
    return lines


def _finding_line(f: Finding) -> str:
    where = f.tensor or f.layer or "(model)"
    return f"{f.severity.value} {f.code} {f.name} {where}: {f.message}"
