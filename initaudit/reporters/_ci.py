"""Helpers shared by the machine-readable CI reporters (sarif, github, junit, markdown).

CI systems link a result to a file of the repository by its path relative to the checkout, with
``/`` separators, whatever the operating system: every reporter here writes paths that way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ..report import FileReport, Finding, Report, Severity, Status, TensorReport

_SEVERITY_ORDER = (Severity.ERROR, Severity.WARNING, Severity.INFO)


def repo_path(path: str) -> str:
    """``path`` relative to the working directory with ``/`` separators when it lies inside it;
    otherwise absolute (``/`` separators too). In-memory models (``<onnx model>``) unchanged."""
    if not path or path.startswith("<"):
        return path
    absolute = os.path.abspath(path)
    try:
        rel = os.path.relpath(absolute, os.getcwd())
    except ValueError:  # another drive on Windows
        rel = None
    if rel is None or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return absolute.replace(os.sep, "/")
    return rel.replace(os.sep, "/")


def is_absolute(path: str) -> bool:
    return path.startswith("/") or bool(re.match(r"^[A-Za-z]:/", path))


def subject(f: Finding) -> str | None:
    """What a finding is about, in one name: the tensor, else the layer, else None (the file)."""
    return f.tensor or f.layer or None


def fails(f: Finding, fail_on: Severity) -> bool:
    """True when ``f`` makes the run fail under ``--fail-on``."""
    return f.severity.rank >= fail_on.rank


def counts(fr: FileReport) -> dict[Severity, int]:
    out = {s: 0 for s in _SEVERITY_ORDER}
    for f in fr.findings:
        out[f.severity] += 1
    return out


def analysed(fr: FileReport) -> list[TensorReport]:
    return [t for t in fr.tensors if not t.skipped]


def skipped_items(fr: FileReport) -> list[tuple[str, str]]:
    """(name, reason) of everything not analysed in ``fr``, each once: the loader's list and the
    tensors whose values could not be read (the engine records those in both places)."""
    seen: dict[str, str] = {}
    for item in fr.skipped:
        seen.setdefault(item.name, item.reason)
    for t in fr.tensors:
        if t.skipped:
            seen.setdefault(t.name, t.skipped)
    return list(seen.items())


def incomplete(fr: FileReport) -> bool:
    """True when part of a readable file was not analysed (it must never read as clean)."""
    return fr.status is Status.PARTIAL or bool(skipped_items(fr))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def join_limited(items: Iterable[str], limit: int, *, sep: str = ", ") -> str:
    """The first ``limit`` items joined, and how many more there are."""
    items = list(items)
    shown = sep.join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def coverage_text(fr: FileReport) -> str | None:
    """``coverage 146/148 weights (98.7% of bytes)``; None when the loader did not count."""
    c = getattr(fr, "coverage", None)
    if c is None or not c.weights_present:
        return None
    return f"coverage {c.weights_analysed}/{c.weights_present} weights ({c.fraction:.1%} of bytes)"


def accepted_parts(result: Report) -> list[str]:
    """``2 suppressed``, ``3 baselined``, ``1 partial file``: what a summary must not hide."""
    c = result.counts()
    parts = []
    if c.get("partial_files"):
        parts.append(plural(c["partial_files"], "partial file"))
    if c.get("suppressed"):
        parts.append(f"{c['suppressed']} suppressed")
    if c.get("baselined"):
        parts.append(f"{c['baselined']} baselined")
    return parts
