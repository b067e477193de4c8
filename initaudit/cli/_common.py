"""What every command shares: the program name, the one-line error and warning, colours, the
report sink, and the usage error. Standard library only at import: ``initaudit --version`` imports
this module and :mod:`._entry`, not typer nor numpy."""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING, Optional, TextIO

from .. import __version__

if TYPE_CHECKING:  # pragma: no cover
    from ..report import FileReport

PROG = "initaudit"
SUBCOMMANDS = ("check", "rules", "explain", "config", "inspect", "diff", "help")
DEBUG_ENV = "INITAUDIT_DEBUG"


# what pause_gc() did, for resume_gc() and end_gc() to undo
_gc_state = {"paused": False, "frozen": False}


def pause_gc() -> None:
    """Hold the cyclic garbage collector off while an audit starts up. The imports of typer,
    numpy and initaudit allocate enough containers to trigger ~60 collections, each scanning the
    young objects again, that find next to no garbage (~10 ms of a ~0.2 s start-up, measured
    with gc.callbacks). :func:`resume_gc` turns it back on when the files are audited."""
    if gc.isenabled():
        gc.disable()
        _gc_state["paused"] = True


def resume_gc() -> None:
    """Undo :func:`pause_gc` before the audit: what start-up made (modules, classes, tables)
    lives as long as the process, so it is frozen (gc.freeze) rather than left for the next
    collection to scan at once (with it the little cyclic garbage of imports and config parsing:
    check resumes before a remote listing, which makes more). A no-op when pause_gc did nothing
    (a caller's gc.disable()). forkpool's freeze/unfreeze around its forks unfreezes it too."""
    if _gc_state["paused"]:
        _gc_state["paused"] = False
        if gc.get_freeze_count() == 0:  # not a caller's own freeze: ours to undo in end_gc()
            gc.freeze()
            _gc_state["frozen"] = True
        gc.enable()


def end_gc(*, process_ends: bool) -> None:
    """``main`` returns: the collector as it was before. The frozen start-up objects become
    collectable again, unless the process ends next (the console script, ``python -m
    initaudit``): then they stay frozen so that the interpreter's final collection skips them
    (~45 M instructions, ~5% of a one-file audit, measured with valgrind --tool=cachegrind)."""
    resume_gc()
    if _gc_state["frozen"] and not process_ends:
        _gc_state["frozen"] = False
        gc.unfreeze()


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
