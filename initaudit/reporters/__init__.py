"""Reporters: one module per output format, all with the same signature (bandit-style)::

    report(result: Report, stream: TextIO, *, config: AuditConfig, color: bool,
           verbose: bool = False, quiet: bool = False) -> None

A reporter only prints; it never changes the result nor decides the exit code. Each module's
docstring shows a sample of its output. Modules are imported on first use so that adding a
format (sarif, github, junit, markdown...) costs nothing to the others and ``--version`` stays
fast: register it in :data:`REPORTERS` with its module name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report
    from ..settings import AuditConfig

# format name -> module inside initaudit.reporters (imported lazily)
REPORTERS: dict[str, str] = {
    "human": "human",
    "json": "json_reporter",
    "sarif": "sarif",
    "github": "github",
    "junit": "junit",
    "markdown": "markdown",
    "html": "html",
    "gitlab": "gitlab",
    "csv": "csv_reporter",
}


class ReportFunction(Protocol):
    def __call__(
        self,
        result: Report,
        stream: TextIO,
        *,
        config: AuditConfig,
        color: bool,
        verbose: bool = False,
        quiet: bool = False,
    ) -> None: ...


def formats() -> list[str]:
    """The names accepted by ``--format``, in a stable order."""
    return list(REPORTERS)


def get_reporter(name: str) -> ReportFunction:
    """The ``report`` function of format ``name``; ValueError for an unknown format."""
    try:
        module_name = REPORTERS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r} (use one of: {', '.join(formats())})") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    report: ReportFunction = module.report  # each reporter module defines this signature
    return report
