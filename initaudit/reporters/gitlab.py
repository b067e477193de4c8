"""GitLab Code Quality reporter: the JSON array GitLab shows in merge requests
(``artifacts: reports: codequality``), a subset of the Code Climate issue format. Sample::

    [
      {
        "description": "IA101 he-before-saturating: fc1.weight: He-scaled weights ... feed a sigmoid",
        "check_name": "IA101",
        "fingerprint": "0c4d2f1e7a9b3c55d2e8f01a6b7c9d3e",
        "severity": "critical",
        "location": {"path": "sample_models/mlp_he_sigmoid.onnx", "lines": {"begin": 1}}
      }
    ]

Severity: error -> ``critical``, warning -> ``major``, info -> ``minor``; an unreadable file is
a ``blocker`` (check ``initaudit/unreadable``), a partly audited one ``major``
(``initaudit/incomplete``). Checkpoints have no lines: every issue is on line 1. Fingerprints
are the baseline's (rule, path, tensor, layer; no volatile numbers), made unique within the
report, so GitLab tracks an issue across pipelines. Suppressed and baselined findings are left
out (GitLab has no suppression state); ``color``, ``verbose`` and ``quiet`` do not apply.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, TextIO

from ..report import Report, Severity, Status
from ._ci import one_line, repo_path, skipped_items, subject

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import AuditConfig

SEVERITIES = {Severity.ERROR: "critical", Severity.WARNING: "major", Severity.INFO: "minor"}


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    stream.write(json.dumps(build(result), indent=2, ensure_ascii=False) + "\n")


def build(result: Report) -> list[dict[str, Any]]:
    from ..baseline import fingerprint

    issues: list[dict[str, Any]] = []
    seen: dict[str, int] = {}

    def add(check: str, description: str, severity: str, path: str, key: str) -> None:
        n = seen.get(key, 0)
        seen[key] = n + 1
        unique = hashlib.sha256(f"{key}\0{n}".encode()).hexdigest()[:32]
        issues.append(
            {
                "description": one_line(description),
                "check_name": check,
                "fingerprint": unique,
                "severity": severity,
                "location": {"path": path, "lines": {"begin": 1}},
            }
        )

    for fr in result.files:
        path = repo_path(fr.path)
        if fr.status is Status.ERROR:
            add(
                "initaudit/unreadable",
                f"could not be read: {fr.error or 'unknown reason'}",
                "blocker",
                path,
                f"unreadable\0{path}",
            )
            continue
        for f in fr.findings:
            what = subject(f)
            add(
                f.code,
                f"{f.code} {f.name}: {what + ': ' if what else ''}{f.message}",
                SEVERITIES[f.severity],
                path,
                fingerprint(f.code, path, f.tensor, f.layer),
            )
        if fr.partial:
            skipped = skipped_items(fr)
            detail = (
                f"{len(skipped)} tensor(s) not analysed"
                if skipped
                else "part of the file was not analysed"
            )
            add(
                "initaudit/incomplete",
                f"audit incomplete: {detail}",
                "major",
                path,
                f"incomplete\0{path}",
            )
    return issues
