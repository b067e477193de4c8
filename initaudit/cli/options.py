"""The options several commands share, declared once, and the one place that turns their values
into settings (validated, keyed like the config file: :mod:`initaudit.config`).

Typer reads these annotations at run time: keep ``Optional[...]`` where it parses them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..report import Severity
from ._common import UsageError, version_callback

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from ..reporters import ReportFunction

# reusable option types: `check`, `config` and `inspect` share them
ConfigOpt = Annotated[
    Optional[str],
    typer.Option(
        "--config",
        metavar="FILE",
        show_default=False,
        help="Read the configuration from FILE (initaudit.toml, or a pyproject.toml with "
        "[tool.initaudit]) instead of searching from the working directory upward.",
    ),
]
SelectOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--select",
        metavar="RULES",
        show_default=False,
        help="Only these rules: comma-separated codes or names; a prefix like IA1 selects a "
        "family. Repeatable.",
    ),
]
ExtendSelectOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--extend-select",
        metavar="RULES",
        show_default=False,
        help="Rules added to the configured --select. Repeatable.",
    ),
]
IgnoreOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--ignore",
        metavar="RULES",
        show_default=False,
        help="Leave out these rules (codes, names or prefixes). Repeatable.",
    ),
]
ExtendIgnoreOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--extend-ignore",
        metavar="RULES",
        show_default=False,
        help="Rules left out in addition to the configured ignore. Repeatable.",
    ),
]
FailOnOpt = Annotated[
    Optional[str],
    typer.Option(
        "--fail-on",
        metavar="SEVERITY",
        show_default=False,
        help="Exit 1 when a finding is at or above this severity: error, warning or info "
        "(default: error).",
    ),
]
MinConfidenceOpt = Annotated[
    Optional[float],
    typer.Option(
        "--min-confidence",
        metavar="FLOAT",
        show_default=False,
        help="Drop findings whose confidence is below this (0 to 1; default: 0).",
    ),
]
ActivationOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--activation",
        metavar="PATTERN=ACT",
        show_default=False,
        help="The activation after the layers matching the glob PATTERN, for files without a "
        "graph (e.g. 'encoder.*.fc1=gelu'). Repeatable; the last match wins.",
    ),
]
IncludeOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--include",
        metavar="GLOB",
        show_default=False,
        help="In directories and globs, only files matching GLOB (path or file name). Repeatable.",
    ),
]
ExcludeOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--exclude",
        metavar="GLOB",
        show_default=False,
        help="In directories and globs, skip files and folders matching GLOB. Repeatable.",
    ),
]
JobsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--jobs",
        "-j",
        metavar="N",
        show_default=False,
        help="Audit files in N parallel processes (0 = one per CPU; default: 1). The output "
        "order does not depend on it.",
    ),
]
NoColorOpt = Annotated[
    bool,
    typer.Option(
        "--no-color", help="No colours (also when NO_COLOR is set or output is not a terminal)."
    ),
]

# `rules`, `explain` and `diff` say it shorter
PlainNoColorOpt = Annotated[bool, typer.Option("--no-color", help="No colours.")]
HumanOrJsonOpt = Annotated[
    str, typer.Option("--format", "-f", metavar="FORMAT", help="human or json.")
]
OutputOpt = Annotated[
    Optional[str],
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        show_default=False,
        help="Write to FILE instead of stdout.",
    ),
]
VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version",
        is_eager=True,
        callback=version_callback,
        help="Print the version and exit.",
    ),
]


def settings_for(
    path: Optional[str], config_file: Optional[str], overrides: dict[str, Any]
) -> Settings:
    from ..config import settings_for as nearest

    return nearest(path, config_file=config_file, overrides=overrides)


def overrides(
    *,
    fail_on: Optional[str] = None,
    select: Optional[list[str]] = None,
    extend_select: Optional[list[str]] = None,
    ignore: Optional[list[str]] = None,
    extend_ignore: Optional[list[str]] = None,
    min_confidence: Optional[float] = None,
    activation: Optional[list[str]] = None,
    include: Optional[list[str]] = None,
    exclude: Optional[list[str]] = None,
    jobs: Optional[int] = None,
    format: Optional[str] = None,
) -> dict[str, Any]:
    """Validate the command-line values (UsageError naming the option) and key them like the
    config file. Options not given are None: the file (or the default) decides. Each command
    passes the settings options it declares."""
    from ..activations import ActivationHint

    out: dict[str, object] = {}
    if fail_on is not None:
        try:
            out["fail-on"] = Severity.parse(fail_on)
        except ValueError as exc:
            raise UsageError(f"--fail-on: {exc}") from None
    if min_confidence is not None:
        if not 0.0 <= min_confidence <= 1.0:
            raise UsageError(f"--min-confidence must be between 0 and 1, not {min_confidence:g}")
        out["min-confidence"] = float(min_confidence)
    for key, values, option in (
        ("select", select, "--select"),
        ("ignore", ignore, "--ignore"),
        ("extend-select", extend_select, "--extend-select"),
        ("extend-ignore", extend_ignore, "--extend-ignore"),
    ):
        if values is not None:
            out[key] = selectors(values, option)
    if activation is not None:
        hints = []
        for text in activation:
            try:
                ActivationHint.parse(text)
            except ValueError as exc:
                raise UsageError(f"--activation: {exc}") from None
            hints.append(text)
        out["activation"] = tuple(hints)  # merged after the file's hints below
    if include is not None:
        out["include"] = tuple(include)
    if exclude is not None:
        out["exclude"] = tuple(exclude)
    if jobs is not None:
        if jobs < 0:
            raise UsageError(f"--jobs must be 0 (one per CPU) or more, not {jobs}")
        out["jobs"] = jobs
    if format is not None:
        name = format.strip().lower()
        reporter(name)  # UsageError for an unknown format
        out["format"] = name
    return out


def selectors(values: Optional[Iterable[str]], option: str) -> tuple[str, ...]:
    """Split comma-separated codes/names and check each names at least one rule."""
    from ..selector import SelectorError, parse

    try:
        return parse(list(values or ()), what=option)
    except SelectorError as exc:
        raise UsageError(str(exc)) from None


def reporter(name: str) -> ReportFunction:
    from ..reporters import get_reporter

    try:
        return get_reporter(name.strip().lower())
    except ValueError as exc:
        raise UsageError(f"--format: {exc}") from None
