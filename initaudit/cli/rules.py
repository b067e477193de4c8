"""``initaudit rules``: the rule catalogue (codes, names, default severities, summaries)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from ..report import Severity
from ._app import app
from ._common import PROG, error, use_color
from .options import HumanOrJsonOpt, PlainNoColorOpt

if TYPE_CHECKING:  # pragma: no cover
    from ..rules.base import Rule


@app.command("rules")
def rules_command(
    format: HumanOrJsonOpt = "human",
    no_color: PlainNoColorOpt = False,
) -> None:
    """List the rules: code, name, default severity and what each one checks."""
    rules = _rules()
    fmt = format.strip().lower()
    if fmt == "json":
        import json

        data = [
            {
                "code": r.code,
                "name": r.name,
                "severity": r.severity.value,
                "scope": r.scope.value,
                "summary": r.summary,
            }
            for r in rules
        ]
        print(json.dumps(data, indent=2))
        return
    if fmt != "human":
        error(f"--format: unknown format {format!r} for `rules` (use human or json)")
        raise typer.Exit(2)
    from rich.table import Table
    from rich.text import Text

    from ..reporters.human import print_renderables

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("code", no_wrap=True, style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("summary")
    styles = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
    for r in rules:
        table.add_row(r.code, r.name, Text(r.severity.value, style=styles[r.severity]), r.summary)
    hint = Text(
        f"\n`{PROG} explain NAME_OR_CODE` shows a rule's page; --select and --ignore take "
        "codes, names or code prefixes (IA1).",
        style="dim",
    )
    print_renderables(sys.stdout, use_color(sys.stdout, no_color), table, hint)


def _rules() -> list[Rule]:
    from ..rules import registry

    return list(registry().values())
