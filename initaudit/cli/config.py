"""``initaudit config [PATH]``: the effective configuration and where each value comes from."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional, cast

import typer

from ._app import app
from ._common import UsageError, error, use_color
from .options import (
    ActivationOpt,
    ConfigOpt,
    ExcludeOpt,
    ExtendIgnoreOpt,
    ExtendSelectOpt,
    FailOnOpt,
    HumanOrJsonOpt,
    IgnoreOpt,
    IncludeOpt,
    JobsOpt,
    MinConfidenceOpt,
    NoColorOpt,
    SelectOpt,
    overrides,
    settings_for,
)


@app.command("config")
def config_command(
    path: Annotated[
        Optional[str],
        typer.Argument(
            metavar="[PATH]",
            show_default=False,
            help="Show the configuration that applies to this file or folder (the nearest "
            "initaudit.toml / pyproject.toml with [tool.initaudit] above it).",
        ),
    ] = None,
    config_file: ConfigOpt = None,
    format: HumanOrJsonOpt = "human",
    fail_on: FailOnOpt = None,
    select: SelectOpt = None,
    extend_select: ExtendSelectOpt = None,
    ignore: IgnoreOpt = None,
    extend_ignore: ExtendIgnoreOpt = None,
    min_confidence: MinConfidenceOpt = None,
    activation: ActivationOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    jobs: JobsOpt = None,
    no_color: NoColorOpt = False,
) -> None:
    """Print the effective configuration and where each value comes from (default, the
    config file, or the command line). Takes the audit's options to show their effect."""
    from ..config import ConfigError

    fmt = format.strip().lower()
    try:
        if fmt not in ("human", "json"):
            raise UsageError(
                f"--format: unknown format {format!r} for `config` (use human or json)"
            )
        overrides_ = overrides(
            fail_on=fail_on,
            select=select,
            extend_select=extend_select,
            ignore=ignore,
            extend_ignore=extend_ignore,
            min_confidence=min_confidence,
            activation=activation,
            include=include,
            exclude=exclude,
            jobs=jobs,
        )
        settings = settings_for(path, config_file, overrides_)
    except (UsageError, ConfigError) as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    data = settings.to_dict()
    if fmt == "json":
        import json

        print(json.dumps(data, indent=2))
        return
    from rich.table import Table
    from rich.text import Text

    from ..reporters.human import print_renderables

    where = data["config_file"]
    origin = f"{path} and its parent folders, then the working directory" if path else "here upward"
    title = Text(
        f"config file: {where}"
        if where
        else "config file: none found (looked for initaudit.toml and [tool.initaudit] in "
        f"pyproject.toml from {origin})",
        style="bold",
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("key", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    table.add_column("from", no_wrap=True, style="dim")
    for key, item in data["settings"].items():
        table.add_row(key, _config_value(key, item["value"]), item["source"])
    print_renderables(sys.stdout, use_color(sys.stdout, no_color), title, Text(""), table)


def _config_value(key: str, value: object) -> str:
    if key == "per-tensor-ignores":
        if not value:
            return "[]"
        lines = []
        for ig in cast("list[dict[str, Any]]", value):
            rules = ", ".join(ig["rules"]) or "every rule"
            path = f" in {ig['path']}" if ig["path"] else ""
            lines.append(f"{ig['pattern']}{path}: {rules} ({ig['reason']})")
        return "\n".join(lines)
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "[]"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {v}" for k, v in value.items()) if value else "{}"
    return str(value)
