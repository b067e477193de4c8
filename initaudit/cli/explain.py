"""``initaudit explain NAME_OR_CODE``: one rule's documentation page, rendered."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._app import app
from ._common import PROG, error, use_color
from .options import PlainNoColorOpt


@app.command("explain")
def explain_command(
    rule: Annotated[
        str,
        typer.Argument(
            metavar="NAME_OR_CODE", help="A rule code (IA101) or name (he-before-saturating)."
        ),
    ],
    no_color: PlainNoColorOpt = False,
) -> None:
    """Explain a rule: what it checks, why it matters, how to fix it."""
    from ..rules import find_rule

    found = find_rule(rule)
    if found is None:
        error(f"unknown rule {rule!r} (run `{PROG} rules` to list them)")
        raise typer.Exit(2)
    from rich.markdown import Markdown
    from rich.text import Text

    from ..reporters.human import print_renderables
    from ..rules.docs import read_page

    page = read_page(found)
    title = Text(f"{found.code} {found.name}", style="bold")
    title.append(f"  (default severity: {found.severity.value})", style="dim")
    if page is None:
        body: list[object] = [
            Text(found.summary),
            Text("\n(no documentation page ships with this rule)", style="dim"),
        ]
    else:
        body = [Markdown(page)]
    print_renderables(sys.stdout, use_color(sys.stdout, no_color), title, Text(""), *body)
