"""What every command shares: the program name, the one-line error and warning, colours, the
report sink, and the usage error. Standard library only at import: ``initaudit --version`` imports
this module and :mod:`._entry`, not typer nor numpy."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Optional, TextIO

from .. import __version__

if TYPE_CHECKING:  # pragma: no cover
    from ..report import FileReport

PROG = "initaudit"
SUBCOMMANDS = ("check", "rules", "explain", "config", "inspect", "diff", "help")
DEBUG_ENV = "INITAUDIT_DEBUG"


class UsageError(Exception):
    """A mistake in the command line: one line on stderr, exit 2."""


def version_callback(value: bool) -> None:
    if value:
        import typer  # loaded already: typer is calling us

        print(f"{PROG} {__version__}")
        raise typer.Exit(0)


def error(message: str) -> None:
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def open_output(output: Optional[str]) -> TextIO | None:
    if output is None or output == "-":
        return None
    try:
        # opened before the audit so that a typo in the path fails before minutes of work
        return open(output, "w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise UsageError(f"{output}: cannot write the report ({exc.strerror or exc})") from None


def report_unreadable(result: FileReport) -> None:
    from ..report import Status

    if result.status is Status.ERROR:
        # the other files are still audited and reported; this line is the one to grep for
        error(f"{result.path}: {one_line(result.error or 'could not be read')}")


def use_color(stream: TextIO, no_color: bool) -> bool:
    if no_color or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())
