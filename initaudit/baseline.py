"""Baselines: accept today's findings, fail only on new ones (bandit ``-b``).

``--write-baseline FILE`` writes every finding of the run; ``--baseline FILE`` removes the
findings it lists from the report. A finding is identified by a fingerprint of its rule code,
the checkpoint path (relative to the baseline file's folder, with ``/`` separators) and the
tensor or layer: never the volatile numbers of the message (std, confidence), which change with
every re-export. The file is JSON, sorted, without timestamps, so that it diffs well::

    {
      "initaudit_baseline": 1,
      "tool_version": "0.1.0",
      "findings": [
        {"fingerprint": "6f1c0e4b8a2d9f13", "code": "IA101", "name": "he-before-saturating",
         "path": "models/mlp.onnx", "tensor": "fc1.weight", "layer": "fc1",
         "severity": "error", "message": "He-scaled weights ... feed a sigmoid ..."}
      ]
    }

Matching counts occurrences: two identical fingerprints in the baseline absorb two findings,
not three.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .report import FileReport, Finding, Report, Suppression

VERSION = 1
_MARKER = "initaudit_baseline"


class BaselineError(Exception):
    """An unreadable or malformed baseline file: one line, exit 2."""


@dataclass(repr=False)
class BaselinedReport(Report):
    """A report with the findings of a baseline moved to ``FileReport.suppressed`` (kind
    ``baseline``); ``summary.baselined`` counts them; ``stale`` lists the baseline entries of
    the audited files that matched no finding (fixed, or renamed: regenerate the baseline)."""

    baselined: int = 0
    baseline_path: str | None = None
    stale: list[dict[str, Any]] = field(default_factory=list)


def relative_path(file_path: str, base_dir: str | os.PathLike[str]) -> str:
    """``file_path`` relative to ``base_dir``, ``/``-separated: the same on every machine that
    checks the repository out, whatever the working directory."""
    if file_path.startswith("<"):  # an in-memory model: no path to normalise
        return file_path
    try:
        rel = os.path.relpath(os.path.abspath(file_path), os.path.abspath(base_dir))
    except ValueError:  # another drive on Windows
        rel = os.path.abspath(file_path)
    return rel.replace(os.sep, "/")


def fingerprint(code: str, path: str, tensor: str | None, layer: str | None) -> str:
    import hashlib  # here: every audit imports this module (apply_ignores); few ever hash

    key = "\0".join((code, path, tensor or "", layer or ""))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _entry(f: Finding, rel: str) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint(f.code, rel, f.tensor, f.layer),
        "code": f.code,
        "name": f.name,
        "path": rel,
        "tensor": f.tensor,
        "layer": f.layer,
        "severity": f.severity.value,
        "message": f.message,
    }


def build(report: Report, base_dir: str | os.PathLike[str]) -> dict[str, Any]:
    from . import __version__

    entries = [
        _entry(f, relative_path(fr.path, base_dir)) for fr in report.files for f in fr.findings
    ]
    entries.sort(key=lambda e: (e["path"], e["code"], e["tensor"] or "", e["layer"] or ""))
    return {_MARKER: VERSION, "tool_version": __version__, "findings": entries}


def write(report: Report, path: str | os.PathLike[str]) -> int:
    """Write the baseline of ``report`` to ``path``; return the number of findings recorded."""
    target = Path(path)
    data = build(report, target.resolve().parent)
    try:
        target.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"{path}: cannot write the baseline ({exc.strerror or exc})") from None
    return len(data["findings"])


@dataclass(frozen=True)
class Baseline:
    path: Path
    fingerprints: Counter[str] = field(default_factory=Counter)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # fingerprint -> entry

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent


def read(path: str | os.PathLike[str]) -> Baseline:
    """Load a baseline; BaselineError (one line) if it is missing or not one of ours."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(
            f"{path}: no such baseline file (create it with --write-baseline)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read the baseline ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}: not a baseline: invalid JSON ({exc})") from None
    if not isinstance(data, dict) or _MARKER not in data:
        raise BaselineError(
            f"{path}: not an initaudit baseline (no {_MARKER!r} key; create it "
            "with --write-baseline)"
        )
    if data[_MARKER] != VERSION:
        raise BaselineError(
            f"{path}: baseline version {data[_MARKER]!r} is not supported "
            f"(this initaudit reads version {VERSION})"
        )
    entries = data.get("findings")
    if not isinstance(entries, list):
        raise BaselineError(f"{path}: 'findings' must be a list")
    prints: Counter[str] = Counter()
    by_print: dict[str, dict[str, Any]] = {}
    for index, e in enumerate(entries):
        if (
            not isinstance(e, dict)
            or not isinstance(e.get("code"), str)
            or not isinstance(e.get("path"), str)
        ):
            raise BaselineError(
                f"{path}: findings[{index}]: needs at least 'code' and 'path' strings"
            )
        # recomputed rather than trusted: a hand-edited entry still matches on its fields
        key = fingerprint(e["code"], e["path"], e.get("tensor"), e.get("layer"))
        prints[key] += 1
        by_print[key] = e
    return Baseline(path=p, fingerprints=prints, entries=by_print)


def apply(report: Report, baseline: Baseline) -> BaselinedReport:
    """A copy of ``report`` with the findings the baseline accepts moved to ``suppressed``."""
    remaining = Counter(baseline.fingerprints)
    files: list[FileReport] = []
    absorbed = 0
    audited: set[str] = set()
    justification = f"accepted by the baseline {baseline.path}"
    for fr in report.files:
        rel = relative_path(fr.path, baseline.base_dir)
        audited.add(rel)
        kept = []
        accepted = list(fr.suppressed)
        for f in fr.findings:
            key = fingerprint(f.code, rel, f.tensor, f.layer)
            if remaining[key] > 0:
                remaining[key] -= 1
                absorbed += 1
                accepted.append(
                    Suppression(finding=f, kind="baseline", justification=justification)
                )
            else:
                kept.append(f)
        # replace(): every other field (coverage, state, signal...) survives the filtering
        files.append(replace(fr, findings=kept, suppressed=accepted))
    stale = [
        baseline.entries[key]
        for key, n in sorted(remaining.items())
        if n > 0 and baseline.entries.get(key, {}).get("path") in audited
    ]
    return BaselinedReport(
        files=files, baselined=absorbed, baseline_path=str(baseline.path), stale=stale
    )


def apply_ignores(fr: FileReport, ignores: Iterable[Any]) -> FileReport:
    """Move the findings a per-tensor ignore (engine.TensorIgnore) matches to ``suppressed``
    (kind ``external``, the ignore's reason as justification). Applied here rather than in the
    engine so that the reports can count and mark them instead of losing them."""
    ignores = tuple(ignores)
    if not ignores or not fr.findings:
        return fr
    kept: list[Finding] = []
    suppressed = list(fr.suppressed)
    for f in fr.findings:
        match = next((ig for ig in ignores if ig.applies(f, fr.path)), None)
        if match is None:
            kept.append(f)
        else:
            suppressed.append(
                Suppression(finding=f, kind="external", justification=match.reason, ignore=match)
            )
    return replace(fr, findings=kept, suppressed=suppressed)


def stale_ignores(report: Report, ignores: Iterable[Any]) -> list[Any]:
    """The per-tensor ignores that matched no finding of the run."""
    used = {id(s.ignore) for fr in report.files for s in fr.suppressed if s.ignore is not None}
    used_eq = [s.ignore for fr in report.files for s in fr.suppressed if s.ignore is not None]
    return [ig for ig in dict.fromkeys(ignores) if id(ig) not in used and ig not in used_eq]


__all__ = [
    "Baseline",
    "BaselineError",
    "BaselinedReport",
    "apply",
    "apply_ignores",
    "build",
    "fingerprint",
    "read",
    "relative_path",
    "stale_ignores",
    "write",
]
